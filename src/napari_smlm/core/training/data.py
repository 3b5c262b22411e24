"""Training data: simulated on the fly, or a user's labelled frames.

Both produce the same batch dict (see :meth:`Simulator.sample_batch`):
``frames`` (B, K, H, W) photons, padded centre-frame emitters ``x_px, y_px,
z_nm, photons`` (B, M) with ``mask``, and ``background`` (B, H, W) when known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..camera import Camera
from ..config import Config
from ..io.movie import open_movie
from ..io.tables import TableError, read_table
from ..simulation import Simulator, pad_per_frame

__all__ = ["SimulatedData", "LabelledFrames", "DatasetData", "collate", "build_data", "simulated_validation_set"]

EMITTER_KEYS = ("x_px", "y_px", "z_nm", "photons")


class SimulatedData:
    """Endless simulated batches; its generator state goes into checkpoints."""

    def __init__(self, cfg: Config, device: torch.device, seed: int):
        self.sim = Simulator(cfg.simulation, device, seed)
        self.batch_size = cfg.training.batch_size
        self.frame_window = cfg.model.frame_window

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.sim.sample_batch(self.batch_size, self.frame_window)

    def set_epoch(self, epoch: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"generator": self.sim.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.sim.generator.set_state(state["generator"].cpu() if self.sim.device.type == "cpu" else state["generator"])


def simulated_validation_set(cfg: Config, device: torch.device, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """A fixed validation set (fixed seed, independent of the training seed's stream)."""
    sim = Simulator(cfg.simulation, device, seed=cfg.training.seed + 1_000_003)
    density = cfg.training.validation_density_per_um2
    batches, left = [], cfg.training.validation_size
    while left > 0:
        n = min(batch_size, left)
        batches.append(sim.sample_batch(n, cfg.model.frame_window, tuple(density) if density else None))
        left -= n
    return batches


class _MovieSource:
    """A TIFF movie plus its emitter table (nm, 0-based frames)."""

    def __init__(self, movie_path: str, table_path: str, pixel_size_nm: float):
        self.movie = open_movie(movie_path)
        table = read_table(table_path, pixel_size_nm=pixel_size_nm)
        order = np.argsort(table["frame"], kind="stable")
        self.frames_of_rows = table["frame"][order]
        photons = table["photons"]
        if np.isnan(photons).any():
            raise TableError(f"{table_path}: training needs photons for every emitter ('intensity [photon]' column)")
        self.rows = {
            "x_px": table["x"][order] / pixel_size_nm,
            "y_px": table["y"][order] / pixel_size_nm,
            "z_nm": table["z"][order],
            "photons": photons[order],
        }

    def __len__(self) -> int:
        return len(self.movie)

    def window(self, index: int, k: int) -> np.ndarray:
        c = k // 2
        idx = np.clip(np.arange(index - c, index + c + 1), 0, len(self.movie) - 1)
        lo, hi = idx.min(), idx.max() + 1
        block = self.movie[lo:hi]
        return block[idx - lo].astype(np.float32)

    def emitters(self, index: int) -> dict[str, np.ndarray]:
        lo, hi = np.searchsorted(self.frames_of_rows, [index, index + 1])
        return {k: v[lo:hi] for k, v in self.rows.items()}

    def background(self, index: int) -> Optional[np.ndarray]:
        return None


class _HDF5Source:
    """One frame per HDF5 file: ``image`` [H, W], ``positions`` [N, 3] (x, y, z; nm unless
    the dataset's ``units`` attribute says ``px``), ``photons`` [N], optional ``background``."""

    def __init__(self, path: str, pixel_size_nm: float):
        import h5py

        self.path = path
        with h5py.File(path, "r") as f:
            for key in ("image", "positions", "photons"):
                if key not in f:
                    raise TableError(f"{path}: HDF5 training file lacks dataset {key!r}; found {list(f.keys())}")
            image = np.asarray(f["image"], np.float32)
            if image.ndim != 2:
                raise TableError(f"{path}: 'image' must be [H, W], got shape {image.shape}")
            pos = np.asarray(f["positions"], float).reshape(-1, 3)
            scale = 1.0 if f["positions"].attrs.get("units", "nm") == "px" else 1.0 / pixel_size_nm
            photons = np.asarray(f["photons"], float).reshape(-1)
            bg = np.asarray(f["background"], np.float32) if "background" in f else None
        if len(photons) != len(pos):
            raise TableError(f"{path}: 'positions' has {len(pos)} rows but 'photons' has {len(photons)}")
        self.image = image
        self.rows = {"x_px": pos[:, 0] * scale, "y_px": pos[:, 1] * scale, "z_nm": pos[:, 2], "photons": photons}
        self.bg = None if bg is None else np.broadcast_to(bg, image.shape).astype(np.float32)

    def __len__(self) -> int:
        return 1

    def window(self, index: int, k: int) -> np.ndarray:
        return np.repeat(self.image[None], k, axis=0)

    def emitters(self, index: int) -> dict[str, np.ndarray]:
        return self.rows

    def background(self, index: int) -> Optional[np.ndarray]:
        return self.bg


class LabelledFrames(Dataset):
    """Frame windows with the centre frame's emitters, from TIFF+table or HDF5 files.

    Augmentation (``augment``): random flips and (square frames) 90° rotations that
    move the emitter coordinates with the pixels, additive Gaussian noise
    (``noise`` photons r.m.s.) and brightness scaling (frames, photons and
    background together).
    """

    def __init__(self, cfg: Config, augment: Optional[bool] = None):
        d = cfg.data
        px = cfg.simulation.pixel_size_nm
        self.sources = []
        for i, path in enumerate(d.train):
            if Path(path).suffix.lower() in (".h5", ".hdf5") and not d.emitters:
                self.sources.append(_HDF5Source(path, px))
            else:
                if not d.emitters:
                    raise TableError(f"data.emitters: {path} is a movie; give its emitter table in data.emitters")
                self.sources.append(_MovieSource(path, d.emitters[i], px))
        self.index = [(s, i) for s, src in enumerate(self.sources) for i in range(len(src))]
        self.k = cfg.model.frame_window
        self.to_photons = Camera.from_config(cfg.simulation.camera).to_photons if d.units == "adu" else None
        self.augment = d.augment if augment is None else augment
        self.noise = d.augment_noise
        self.brightness = tuple(d.augment_brightness)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        s, i = self.index[item]
        src = self.sources[s]
        frames = torch.from_numpy(src.window(i, self.k))
        if self.to_photons is not None:
            frames = self.to_photons(frames)
        em = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in src.emitters(i).items()}
        bg = src.background(i)
        out = {"frames": frames, **em}
        if bg is not None:
            out["background"] = torch.from_numpy(np.array(bg))
        return augment(out, self.noise, self.brightness) if self.augment else out


def augment(item: dict[str, torch.Tensor], noise: float, brightness: tuple[float, float]) -> dict[str, torch.Tensor]:
    """Flip/rotate pixels and emitter coordinates together; noise; brightness."""
    frames = item["frames"]
    h, w = frames.shape[-2:]
    x, y = item["x_px"].clone(), item["y_px"].clone()
    maps = {k: item[k] for k in ("frames", "background") if k in item}
    if torch.rand(()) < 0.5:  # left-right
        maps = {k: v.flip(-1) for k, v in maps.items()}
        x = w - x
    if torch.rand(()) < 0.5:  # up-down
        maps = {k: v.flip(-2) for k, v in maps.items()}
        y = h - y
    if h == w and torch.rand(()) < 0.5:
        # torch.rot90 (k=1): out[i, j] = in[j, W-1-i], so a point (x, y) moves to (y, W - x).
        maps = {k: torch.rot90(v, 1, dims=(-2, -1)) for k, v in maps.items()}
        x, y = y, w - x
    out = {**item, **maps, "x_px": x, "y_px": y}
    lo, hi = brightness
    if hi > lo or lo != 1.0:
        factor = lo + (hi - lo) * float(torch.rand(()))
        out["frames"] = out["frames"] * factor
        out["photons"] = out["photons"] * factor
        if "background" in out:
            out["background"] = out["background"] * factor
    if noise > 0:
        out["frames"] = out["frames"] + noise * torch.randn_like(out["frames"])
    return out


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack frames; pad the variable-length emitter lists to (B, M) with a mask."""
    counts = torch.tensor([len(it["x_px"]) for it in items])
    frame_index = torch.repeat_interleave(torch.arange(len(items)), counts)
    values = {k: torch.cat([it[k] for it in items]) for k in EMITTER_KEYS}
    padded, mask = pad_per_frame(frame_index, len(items), values)
    batch = {"frames": torch.stack([it["frames"] for it in items]), "mask": mask, **padded}
    if all("background" in it for it in items):
        batch["background"] = torch.stack([it["background"] for it in items])
    return batch


class DatasetData:
    """Endless batches from :class:`LabelledFrames` through a ``DataLoader``."""

    def __init__(self, cfg: Config, device: torch.device, seed: int, rank: int = 0, world_size: int = 1):
        full = LabelledFrames(cfg)
        n = len(full)
        n_val = max(1, int(round(n * cfg.data.validation_fraction)))
        if n - n_val < 1:
            raise TableError(f"data.train: {n} frames are too few to hold out {n_val} for validation")
        # The held-out frames are the last ones: neighbouring frames share molecules,
        # so a random split would leak them into validation.
        self.train_set = Subset(full, range(0, n - n_val))
        self.val_set = Subset(LabelledFrames(cfg, augment=False), range(n - n_val, n))
        self.device = device
        self.sampler = None
        if world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            self.sampler = DistributedSampler(self.train_set, world_size, rank, shuffle=True, seed=seed)
        g = torch.Generator()
        g.manual_seed(seed)
        self.loader = DataLoader(
            self.train_set, batch_size=cfg.training.batch_size, shuffle=self.sampler is None,
            sampler=self.sampler, num_workers=cfg.training.workers, collate_fn=collate, drop_last=False,
            generator=g, persistent_workers=cfg.training.workers > 0,
        )
        self.epoch = 0
        self._it: Optional[Iterator] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self._it = None

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            batch = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            batch = next(self._it)
        return {k: v.to(self.device) for k, v in batch.items()}

    def validation_batches(self, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
        loader = DataLoader(self.val_set, batch_size=batch_size, shuffle=False, collate_fn=collate)
        return [{k: v.to(self.device) for k, v in b.items()} for b in loader]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_data(cfg: Config, device: torch.device, seed: int, rank: int = 0, world_size: int = 1):
    """Training data and the fixed validation batches for a config."""
    if cfg.data.train:
        data = DatasetData(cfg, device, seed, rank, world_size)
        return data, data.validation_batches()
    return SimulatedData(cfg, device, seed), simulated_validation_set(cfg, device)

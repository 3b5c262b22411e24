"""Chunked inference: a movie in, candidate localizations out, in bounded memory.

Frames are streamed in chunks; each frame is predicted from its K-frame window
(the first and last frames repeat the edge frame). Frames larger than a tile are
cut into tiles with a halo at least the network's receptive radius, with tile
origins on the network's stride grid, so the tiled result equals the untiled one.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import Camera
from ..config import CameraConfig, ScalingConfig, from_dict
from ..models import SMLMModel
from ..utils import cpu_has_bf16
from ..training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .postprocess import RAW_THRESHOLD, maps_to_candidates, non_maximum_suppression, select_rows

__all__ = [
    "LocalizationModel", "Infer", "InferenceCancelled", "resolve_model_path", "BUNDLED_MODELS", "available_memory_bytes",
    "free_cores",
]

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
# default: SigmaMUNet, the accurate one; fast: FastNet, ~8x cheaper per pixel (issue 13's
# fast preset; docs/bundled_model.md records both trainings).
BUNDLED_MODELS = {"default": MODELS_DIR / "default_2d.pt", "fast": MODELS_DIR / "fast_2d.pt"}


class InferenceCancelled(Exception):
    """Raised when the cancel callback asks to stop (between batches)."""


def resolve_model_path(model: Union[str, Path], what: str = "--model") -> Path:
    """A bundled model name (``default``, ``fast``) or a checkpoint path (``what`` names the
    option in errors)."""
    if str(model) in BUNDLED_MODELS:
        path = BUNDLED_MODELS[str(model)]
        if not path.is_file():
            raise CheckpointError(f"bundled model {model!r} is not installed ({path} missing)")
        return path
    path = Path(model)
    if not path.exists():
        known = ", ".join(sorted(BUNDLED_MODELS))
        raise CheckpointError(f"{what} {model}: neither a bundled model ({known}) nor an existing checkpoint file")
    return path


@dataclass
class LocalizationModel:
    """A network plus everything inference needs (from its checkpoint)."""

    model: SMLMModel
    frame_window: int
    scaling: ScalingConfig
    pixel_size_nm: float
    camera: Camera
    detection_threshold: float = 0.5
    source: str = ""
    info: dict = field(default_factory=dict)

    @classmethod
    def load(cls, model: Union[str, Path]) -> "LocalizationModel":
        """Load a checkpoint for inference. Everything in it is checked here, and
        errors name the file and the value (never an option the user did not give)."""
        path = resolve_model_path(model)
        state = load_checkpoint(path)
        inf = state["inference"]
        if not isinstance(inf, dict):
            raise CheckpointError(f"{path}: 'inference' is {type(inf).__name__}, expected a mapping")
        missing = [k for k in ("frame_window", "scaling", "pixel_size_nm", "camera") if k not in inf]
        if missing:
            raise CheckpointError(f"{path}: the checkpoint's inference settings lack {', '.join(missing)}; "
                                  f"the file is damaged or not written by napari-smlm")
        try:
            frame_window = _number(inf["frame_window"], "frame_window", int)
            if frame_window < 1 or frame_window % 2 == 0:
                raise ValueError(f"frame_window: expected a positive odd number of frames, got {frame_window}")
            pixel_size_nm = _number(inf["pixel_size_nm"], "pixel_size_nm", float)
            if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
                raise ValueError(f"pixel_size_nm: expected a positive number of nm, got {pixel_size_nm}")
            threshold = _number(inf.get("detection_threshold", 0.5), "detection_threshold", float)
            if not 0 < threshold <= 1:
                raise ValueError(f"detection_threshold: expected a probability in (0, 1], got {threshold}")
            scaling = from_dict(ScalingConfig, dict(inf["scaling"]), "scaling")
            camera = Camera.from_config(from_dict(CameraConfig, dict(inf["camera"]), "camera"))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: invalid inference setting {exc}") from None
        net = model_from_checkpoint(state, path)
        model_window = int(getattr(net, "init_kwargs", {}).get("frame_window", frame_window))
        if model_window != frame_window:
            raise CheckpointError(f"{path}: inference frame_window {frame_window} differs from the model's "
                                  f"{model_window}; the file is damaged")
        return cls(
            model=net.eval(),
            frame_window=frame_window,
            scaling=scaling,
            pixel_size_nm=pixel_size_nm,
            camera=camera,
            detection_threshold=threshold,
            source=str(path),
            info={"epoch": state.get("epoch"), "step": state.get("step"), "best_metric": state.get("best_metric"),
                  "z_range_nm": list(inf.get("z_range_nm") or [0.0, 0.0]),
                  "psf": dict(inf.get("psf") or {}).get("kind", "gaussian")},
        )

    @property
    def z_range_nm(self) -> tuple[float, float]:
        """The z range the model was trained on; (0, 0) for a 2D model."""
        lo, hi = (self.info.get("z_range_nm") or [0.0, 0.0])[:2]
        return float(lo), float(hi)

    def describe(self) -> str:
        lo, hi = self.z_range_nm
        dims = f"3D ({self.info.get('psf')} PSF, z {lo:.0f}..{hi:.0f} nm)" if hi > lo else "2D"
        return (f"{self.source} ({self.model.architecture}, {dims}, {self.frame_window}-frame window, "
                f"trained at {self.pixel_size_nm:g} nm pixels)")

    @property
    def halo(self) -> int:
        s = self.model.stride
        return int(math.ceil(self.model.receptive_radius / s) * s)

    @property
    def min_frame_size(self) -> int:
        return self.model.stride


def _number(value, name: str, kind: type):
    """A number from a checkpoint (a tensor, int or float), or a ValueError naming it."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return kind(value)


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on the device (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def free_cores(sample_s: float = 0.1) -> int:
    """CPU cores this process may use that other work is not using now (at least 1).

    The machine's busy time over ``sample_s`` (``/proc/stat``) less this process's own
    (so an earlier run in the same napari session does not count) gives the cores in
    use elsewhere. Why: on 2 cores with one busy elsewhere, two torch threads took
    198 s where Picasso took 11.5 s; one thread does not fight for the busy core.
    """
    import time

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1

    def machine():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
        return sum(v), v[3] + v[4]  # all, idle + iowait (clock ticks)

    try:
        total0, idle0 = machine()
        own0 = sum(os.times()[:2])
        time.sleep(sample_s)
        total1, idle1 = machine()
        own1 = sum(os.times()[:2])
    except (OSError, ValueError, IndexError):
        return cores
    tick = os.sysconf("SC_CLK_TCK")
    busy_elsewhere = ((total1 - total0) - (idle1 - idle0)) / tick - (own1 - own0)
    return max(1, min(cores, int(cores - busy_elsewhere / sample_s + 0.5)))


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``;
    nothing where there is no glibc).

    Why: inference allocates and frees tens of MB per batch in varying sizes, which
    glibc's heap keeps: the resident memory of the default model crept up with the
    movie (`napari-smlm localize`, 1,000 frames of 256x256: 475 -> 555 MB, peak 580 MB).
    Called once per chunk of ~32 frames it held at ~480 MB (peak 505 MB), but each call
    costs ~40 ms (the pages are faulted in again): the fast model lost 1-1.5 s of its
    10 s, hence at most every ``TRIM_EVERY_S`` (after every batch it cost the default
    model a quarter of its time)."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None
TRIM_EVERY_S = 5.0


# Empty-region skipping (issue 13: "a cell rarely fills the field"): the network sees only
# the bounding box of what a chunk of frames holds above background (active_region),
# grown by a margin. Why not the network's receptive radius as the margin (72 px for the
# default, a bound): the default model's outputs 32 px inside a crop differ from the
# whole frame's by at most 1e-3 in probability and 1e-3 px in position (measured in fp32;
# bfloat16 alone moves probabilities by ~0.02), and 72 px would leave nothing to skip on
# a 256x256 movie. A box covering most of the frame is not worth cropping.
ACTIVE_SIGMA = 8.0
ACTIVE_BIN = 4
ACTIVE_MARGIN_PX = 32
ACTIVE_MIN_FRAMES = 8
ACTIVE_MIN_EVENTS = 100  # frame-bin pairs; a molecule makes 1-4 (the 2x2-bin sums overlap)
ACTIVE_MAX_FRACTION = 0.8


def active_region(block: torch.Tensor, margin: int, stride: int = 1) -> Optional[tuple[int, int, int, int]]:
    """Rows and columns ``(r0, r1, c0, c1)`` of a chunk of frames (F, H, W, photons) that
    hold what rises above background, grown by ``margin`` and put on the ``stride`` grid;
    None: use the whole frame.

    A molecule the network can find may be too dim for any threshold that noise never
    crosses, so a box is trusted only where bright molecules map the structure: at least
    ACTIVE_MIN_EVENTS of them in the chunk, all inside it (a cell), and it is None
    otherwise — on a uniform field of molecules the box is the frame, on a dim movie too
    few rise. Measured on 4x4-pixel bins (a box with a 32-px margin needs no finer grid,
    and it is 16 times less work: ~12 ms per 34 frames of 256x256 on one core): an event
    is a frame's 2x2-bin sum (8x8 px, which holds nearly all of a molecule's photons
    wherever it sits) above its median over the chunk by ACTIVE_SIGMA times the shot noise
    of that median (photons, with an EMCCD's excess factor 2; on pure noise, 34 frames of
    256x256: at most 7.7 on EMCCDs of 0.5-200 photons/px, and up to 10.6 on an sCMOS below
    5 photons/px, whose read noise this leaves out: such events only widen the box). A bin
    whose median stands out of its surroundings (a fiducial bead, on in every frame) is in
    the box as well.
    """
    f, h, w = block.shape
    if f < ACTIVE_MIN_FRAMES or (2 * margin + 1) ** 2 > ACTIVE_MAX_FRACTION * h * w:
        return None  # (nothing to gain: even one active pixel's box would be most of the frame)
    ph, pw = (-h) % ACTIVE_BIN, (-w) % ACTIVE_BIN
    x = F.pad(block.unsqueeze(1), (0, pw, 0, ph), mode="replicate")[:, 0] if ph or pw else block
    hb, wb = x.shape[1] // ACTIVE_BIN, x.shape[2] // ACTIVE_BIN
    x = x.reshape(f, hb, ACTIVE_BIN, wb, ACTIVE_BIN).sum(dim=(2, 4))
    x = 4 * F.avg_pool2d(F.pad(x.unsqueeze(1), (0, 1, 0, 1), mode="replicate"), 2, stride=1)[:, 0]
    median = x.median(dim=0).values
    noise = torch.sqrt(2.0 * median.clamp_min(0) + 4.0 * ACTIVE_BIN**2)  # (+ 1 photon^2 per pixel)
    events = (x - median) > ACTIVE_SIGMA * noise
    if int(events.sum()) < ACTIVE_MIN_EVENTS:
        return None
    active = events.any(dim=0)
    m = median[None, None]
    spots = (m - F.avg_pool2d(m, 5, stride=1, padding=2, count_include_pad=False))[0, 0]
    v = spots.flatten()[:: max(1, spots.numel() // 50_000)]
    spread = float(1.4826 * (v - v.median()).abs().median())
    if math.isfinite(spread) and spread > 0:
        active |= spots > ACTIVE_SIGMA * spread
    rows, cols = active.any(dim=1).nonzero(), active.any(dim=0).nonzero()
    # bin i of the 2x2 sums covers pixels 4i .. 4i + 7
    r0 = max(0, ACTIVE_BIN * int(rows[0]) - margin) // stride * stride
    c0 = max(0, ACTIVE_BIN * int(cols[0]) - margin) // stride * stride
    r1 = min(h, ACTIVE_BIN * (int(rows[-1]) + 2) + margin)
    c1 = min(w, ACTIVE_BIN * (int(cols[-1]) + 2) + margin)
    if (r1 - r0) * (c1 - c0) > ACTIVE_MAX_FRACTION * h * w:
        return None
    return r0, r1, c0, c1


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower() or isinstance(exc, MemoryError)


class Infer:
    """Run a :class:`LocalizationModel` over a movie.

    Parameters
    ----------
    model : the loaded model.
    device : ``auto`` | ``cpu`` | ``cuda``.
    batch_size : windows per forward pass, or ``auto`` (largest that fits
        ``max_memory_gb``, halved on out-of-memory and retried).
    max_memory_gb : memory budget for activations; default: half the free memory.
    tile_size : largest frame side processed in one piece (tiles with halo above it).
    precision : ``auto`` (float16 autocast on CUDA; on a CPU bfloat16 where it has the
        instructions, else float32), ``fp32``, ``bf16``
        (autocast to bfloat16: on CPUs with AVX-512 BF16 or AMX, and on CUDA) or ``fp16``
        (CUDA). Reduced precision moves probabilities by ~0.02: its effect on accuracy is
        measured by ``benchmarks/bundled_accuracy.py --precision``.
    threads : CPU threads for the network; ``None``: the cores not busy with other work
        (two threads fighting for one core are much slower than one).
    skip_empty : run the network only on the part of each chunk of frames that holds
        anything above background (:func:`active_region`); False: always whole frames.
    """

    def __init__(self, model: LocalizationModel, device: str = "auto", batch_size: Union[int, str] = "auto",
                 max_memory_gb: Optional[float] = None, tile_size: Optional[int] = 512, precision: str = "auto",
                 threads: Optional[int] = None, skip_empty: bool = True):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"--device: expected auto, cpu or cuda, got {device!r}")
        self.device = torch.device(device)
        self.lm = model
        self.model = model.model.to(self.device).eval()
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"--batch-size: expected a positive integer or 'auto', got {batch_size!r}")
        self.batch_size = batch_size
        self.max_memory_bytes = None if max_memory_gb is None else int(max_memory_gb * 2**30)
        if self.max_memory_bytes is not None and self.max_memory_bytes <= 0:
            raise ValueError(f"--max-memory-gb: expected a positive number, got {max_memory_gb}")
        s = self.model.stride
        self.tile_size = None if tile_size is None else max(s, (int(tile_size) // s) * s)
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"--precision: expected auto, fp32, bf16 or fp16, got {precision!r}")
        if precision == "auto":  # bf16 on CPUs that have it: 1.6-2x faster, accuracy as fp32 (benchmarks/precision.py)
            precision = "fp16" if self.device.type == "cuda" else ("bf16" if cpu_has_bf16() else "fp32")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("--precision fp16: float16 runs on CUDA only; on a CPU use bf16 or fp32")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_bf16():
            raise ValueError("--precision bf16: this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX); use fp32")
        self.precision = precision
        self.amp = precision != "fp32"
        if self.device.type == "cpu":
            self.threads = int(threads) if threads else free_cores()
            if self.threads < 1:
                raise ValueError(f"--threads: expected a positive number, got {threads}")
            torch.set_num_threads(self.threads)
        # oneDNN convolutions on CPU are ~1.5x faster in channels-last layout (measured).
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.skip_empty = bool(skip_empty)
        # run(): the heads other than p only where post-processing reads them (False:
        # everywhere; the same table, for measuring what it saves)
        self.sparse_heads = True
        self.skip_margin = min(model.halo, ACTIVE_MARGIN_PX)

    # ------------------------------------------------------------------ sizing
    def bytes_per_window(self, h: int, w: int) -> int:
        """Estimated activation memory of one window (generous: float32, live maps of
        the widest full-resolution layers, the window itself and the output)."""
        kw = self.model.init_kwargs
        feats = max([int(kw.get(key, 0)) for key in ("initial_features", "inter_features", "base_channels")] + [32])
        feats = max(feats, 4 * int(kw.get("embed_dim", 0)))  # transformer MLP width
        k = self.lm.frame_window
        cells = self.model.output_scale ** 2  # finer output grids (all scales ~ 4/3 of the finest)
        per_pixel = 4 * (k * feats * 4 + feats * 8 + k + 2 * len(self.model.output_channels) * cells)
        return int(per_pixel * h * w * (2 if self.amp is False else 1))

    def auto_batch_size(self, h: int, w: int) -> int:
        budget = self.max_memory_bytes or available_memory_bytes(self.device) // 2
        # On CPU, batches past ~16 frames of 64x64 only add cache misses (measured,
        # default model: 67 frames/s at 4, 78 at 16, ~20 at 128); on GPU, bigger is faster.
        # At least 2 windows: a batch of one 3-frame window runs the per-frame part of a
        # DoubleMUnet on 3 frames for 1 output (measured at 256x256: 2.8 frames/s at 1,
        # 3.2 at 4 windows); 2 windows of 256x256 against 4 cost the default model ~4 %
        # more time and ~150 MB less memory (300 frames: 31.3 / 32.0 s and 520 / 549 MB
        # peak RSS, against 30.8 / 30.3 s and 703 / 679 MB).
        cap = 1024 if self.device.type == "cuda" else max(2, (16 * 64 * 64) // max(1, h * w))
        return int(max(1, min(cap, budget // max(1, self.bytes_per_window(h, w)))))

    # ------------------------------------------------------------------ network
    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _tiles(self, h: int, w: int) -> list[tuple[slice, slice, slice, slice]]:
        """(input rows, input cols, output rows within the input tile, output cols) per tile."""
        t = self.tile_size
        if t is None or (h <= t and w <= t):
            return [(slice(0, h), slice(0, w), slice(0, h), slice(0, w))]
        halo = self.lm.halo
        out = []
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                iy0, ix0 = max(0, y0 - halo), max(0, x0 - halo)
                iy1, ix1 = min(h, y1 + halo), min(w, x1 + halo)
                out.append((slice(iy0, iy1), slice(ix0, ix1), slice(y0 - iy0, y1 - iy0), slice(x0 - ix0, x1 - ix0)))
        return out

    def predict_maps(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) photons -> (B, C, H, W) network output (tiled when large)."""
        b, k, h, w = windows.shape
        return self.predict_block(windows.reshape(b * k, h, w), torch.arange(b * k).reshape(b, k))

    @torch.inference_mode()
    def predict_block(self, block: torch.Tensor, index: torch.Tensor, caches: Optional[dict] = None,
                      keep_above: Optional[float] = None) -> torch.Tensor:
        """Frames (F, H, W) photons and windows ``index`` (B, K) into them ->
        (B, C, H, W) network output, tiled when the frames are large.

        ``caches``: a dict kept across calls on the same ``block`` (per-frame features
        computed once); ``keep_above``: channels other than ``p`` are only needed where
        the probability exceeds it (see :meth:`SMLMModel.forward_block`)."""
        sc = self.lm.scaling
        h, w = block.shape[-2:]
        b = index.shape[0]
        frames_needed = torch.unique(index)
        block = block[frames_needed]
        index = torch.searchsorted(frames_needed, index)
        tiles = self._tiles(h, w)
        f = self.model.output_scale  # output cells per camera pixel
        out = None
        for i, (rows, cols, orow, ocol) in enumerate(tiles):
            x = ((block[:, rows, cols] - sc.input_offset) / sc.input_scale).to(self.device, non_blocking=True)
            cache = None if caches is None else caches.setdefault(i, {})
            with self._autocast():
                y = self.model.forward_block(x, index.to(self.device), cache=cache, frame_ids=frames_needed,
                                             keep_above=keep_above).float()
            if len(tiles) == 1:
                return y
            if out is None:
                out = torch.empty((b, y.shape[1], h * f, w * f), device=y.device)
            r0, c0 = rows.start + orow.start, cols.start + ocol.start
            out[:, :, r0 * f:(r0 + orow.stop - orow.start) * f, c0 * f:(c0 + ocol.stop - ocol.start) * f] = \
                y[:, :, orow.start * f:orow.stop * f, ocol.start * f:ocol.stop * f]
        return out

    def _empty_table(self, h: int, w: int) -> dict[str, np.ndarray]:
        return maps_to_candidates(torch.zeros(0, len(self.model.output_channels), h, w), self.model.output_channels,
                                  self.lm.scaling, self.lm.pixel_size_nm)

    # ------------------------------------------------------------------ movie
    def run(
        self,
        movie: Sequence,
        camera: Optional[Camera] = None,
        frame_range: Optional[tuple[int, int]] = None,
        progress: Optional[Callable[[int, int], None]] = None,
        cancel: Optional[Callable[[], bool]] = None,
        min_prob: float = 0.1,
        timings: Optional[dict] = None,
        nms_radius_nm: Optional[float] = None,
        sink: Optional[Callable[[dict], None]] = None,
    ) -> dict[str, np.ndarray]:
        """Localize every frame of ``movie`` ((T, H, W), indexable by slices; ADU
        unless ``camera`` is None, in which case it is already photons).

        Returns the candidate table (see :func:`maps_to_candidates`), frames 0-based
        in the movie's numbering. ``progress(done, total)`` is called after every
        batch; ``cancel()`` returning True stops between batches. With ``sink``, each
        batch's piece of the table goes to ``sink(piece)`` as it is made, in frame
        order, and an empty table is returned (memory does not grow with the movie).
        """
        import time

        timings = timings if timings is not None else {}
        for key in ("read", "network", "postprocess", "pixels", "pixels_run"):
            timings.setdefault(key, 0.0)
        n_total = len(movie)
        start, stop = frame_range if frame_range is not None else (0, n_total)
        if not (0 <= start < stop <= n_total):
            raise ValueError(f"frame range {start}..{stop} is outside the movie's 0..{n_total} frames")
        h, w = movie.shape[-2:] if hasattr(movie, "shape") else np.asarray(movie[0:1]).shape[-2:]
        k = self.lm.frame_window
        c = k // 2
        batch = self.batch_size if self.batch_size != "auto" else self.auto_batch_size(min(h, self.tile_size or h), min(w, self.tile_size or w))
        if self.tile_size is not None and (h > self.tile_size or w > self.tile_size):
            # auto sizing was per tile; one batch of windows holds whole frames in host memory
            batch = max(1, min(batch, (self.max_memory_bytes or available_memory_bytes(torch.device("cpu")) // 4) // (4 * k * h * w)))
            if self.batch_size == "auto" and self.device.type == "cpu":
                # A tiled window is already several tiles of work, and its output maps are
                # whole frames: one window a batch (24 frames of 1024x1024, default model:
                # 32.1 s and 1.27 GB against 37.1 s and 1.54 GB with 2; fast model, 2048x2048:
                # 1.58 against 2.09 GB, same time; the same table).
                batch = 1
        chunk = max(batch, 32)
        # Post-processing reads the channels other than p only above its raw threshold
        # (min_prob 0 asks for every pixel).
        keep_above = RAW_THRESHOLD if self.sparse_heads and self.model.output_scale == 1 and min_prob > 0 else None
        tables = []
        done = 0
        t0 = start
        last_trim = time.perf_counter()
        while t0 < stop:
            t1 = min(t0 + chunk, stop)
            tic = time.perf_counter()
            lo, hi = max(0, t0 - c), min(n_total, t1 + c)
            block = torch.from_numpy(np.asarray(movie[lo:hi], dtype=np.float32))
            if block.ndim != 3 or block.shape[0] != hi - lo:
                raise ValueError(f"movie returned frames of shape {tuple(block.shape)} for frames {lo}..{hi}")
            if not torch.isfinite(block).all():
                bad = lo + int(torch.nonzero(~torch.isfinite(block))[0, 0])
                raise ValueError(f"movie frame {bad + 1} holds NaN or infinite pixels (frames counted from 1)")
            if camera is not None:
                block = camera.to_photons(block)
            # indices of each window's frames inside the block, edges repeated
            idx = torch.arange(t0, t1).unsqueeze(1) + torch.arange(-c, c + 1).unsqueeze(0)
            idx = idx.clamp(0, n_total - 1) - lo
            region = active_region(block, self.skip_margin, self.model.stride) if self.skip_empty else None
            caches: dict = {}  # per-frame features of this chunk's frames, by tile
            r0, r1, c0, c1 = region if region is not None else (0, h, 0, w)
            timings["pixels"] += (t1 - t0) * h * w
            timings["pixels_run"] += (t1 - t0) * (r1 - r0) * (c1 - c0)
            timings["read"] += time.perf_counter() - tic
            b0 = 0
            while b0 < t1 - t0:
                if cancel is not None and cancel():
                    raise InferenceCancelled(f"cancelled after {done} of {stop - start} frames")
                b1 = min(b0 + batch, t1 - t0)
                tic = time.perf_counter()
                try:
                    maps = self.predict_block(block[:, r0:r1, c0:c1] if region is not None else block, idx[b0:b1],
                                              caches, keep_above)
                except (RuntimeError, MemoryError) as exc:
                    if not _is_oom(exc) or batch == 1:
                        raise
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    batch = max(1, batch // 2)  # back off and retry this batch
                    continue
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                tic2 = time.perf_counter()
                timings["network"] += tic2 - tic
                table = maps_to_candidates(maps, self.model.output_channels, self.lm.scaling, self.lm.pixel_size_nm,
                                           frame_offset=t0 + b0, min_prob=min_prob, scale=self.model.output_scale)
                table["x"] += c0 * self.lm.pixel_size_nm
                table["y"] += r0 * self.lm.pixel_size_nm
                if nms_radius_nm:
                    table = select_rows(table, non_maximum_suppression(table, nms_radius_nm))
                timings["postprocess"] += time.perf_counter() - tic2
                if sink is not None:
                    sink(table)
                else:
                    tables.append(table)
                done += b1 - b0
                b0 = b1
                if progress is not None:
                    progress(done, stop - start)
            t0 = t1
            if self.device.type == "cpu" and time.perf_counter() - last_trim > TRIM_EVERY_S:
                trim_heap()
                last_trim = time.perf_counter()
        timings["batch_size"] = batch
        if not tables:
            return self._empty_table(h, w)
        # One column at a time, each batch's piece freed once joined: the peak is the
        # table plus one column, not two tables (millions of rows in a long movie).
        out = {}
        for key in list(tables[0]):
            out[key] = np.concatenate([t.pop(key) for t in tables])
        return out

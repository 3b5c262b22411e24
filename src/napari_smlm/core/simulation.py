"""Vectorised SMLM simulation in torch (CPU or CUDA).

Emitters switch on at uniformly distributed times, stay on for an exponentially
distributed time (mean ``mean_on_frames``) and give ``flux × overlap`` photons in
each frame they overlap. Frames are rendered by the PSF, background is added and
the camera turns expected photons into noisy ADU. The network is trained on
``camera.to_photons(ADU)``, exactly what it will see at inference.

Units inside: positions in camera pixels (top-left corner of the frame at 0,
pixel centres at i + 0.5, see DESIGN.md), z in nm, photons and background in
photons (per pixel for background). Tables for users are in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from .camera import Camera
from .config import SimulationConfig
from .psf import build_psf

__all__ = ["EmitterTable", "Simulator", "pad_per_frame"]


@dataclass
class EmitterTable:
    """Flat table of emitter-frame entries (one row per emitter per frame it is on).

    ``seq`` is the sequence (movie or training window) a row belongs to, ``frame``
    the frame inside that sequence, ``id`` the emitter's identity across frames.
    """

    seq: torch.Tensor
    frame: torch.Tensor
    id: torch.Tensor
    x_px: torch.Tensor
    y_px: torch.Tensor
    z_nm: torch.Tensor
    photons: torch.Tensor
    sigma_px: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.seq.numel())

    def select(self, mask: torch.Tensor) -> "EmitterTable":
        return EmitterTable(
            **{k: (v[mask] if v is not None else None) for k, v in self.__dict__.items()}
        )


def pad_per_frame(
    frame_index: torch.Tensor, n_frames: int, values: dict[str, torch.Tensor], min_slots: int = 1
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Scatter flat rows into per-frame padded tensors.

    ``frame_index`` (N,) is each row's frame in ``[0, n_frames)``; every value (N,)
    becomes ``(n_frames, M)`` with M the largest number of rows in one frame.
    Returns the padded values and a boolean mask ``(n_frames, M)``.
    """
    device = frame_index.device
    order = torch.argsort(frame_index, stable=True)
    fi = frame_index[order]
    counts = torch.bincount(fi, minlength=n_frames)
    m = max(int(counts.max().item()) if counts.numel() and fi.numel() else 0, min_slots)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(fi.numel(), device=device) - starts[fi]
    out = {}
    for name, v in values.items():
        padded = torch.zeros((n_frames, m), dtype=v.dtype, device=device)
        padded[fi, slot] = v[order]
        out[name] = padded
    mask = torch.zeros((n_frames, m), dtype=torch.bool, device=device)
    mask[fi, slot] = True
    return out, mask


CHUNK_PIXELS = 256 * 256 * 256  # pixels of one chunk of a simulated movie (256 frames of 256x256)
BAND_ROWS = 256  # a taller frame is rendered in bands of this many rows
BAND_MARGIN_PX = 64  # emitters this far outside a band still light it (8 σ of a PSF 8 px wide)


class Simulator:
    """Draws emitters, renders frames and applies camera noise.

    Parameters
    ----------
    cfg : SimulationConfig
    device : torch device for all tensors.
    seed : seed of the simulator's own ``torch.Generator`` (its state is saved in
        checkpoints so that a resumed training draws the data it would have drawn).
    """

    def __init__(self, cfg: SimulationConfig, device: torch.device | str = "cpu", seed: int = 0):
        self.cfg = cfg
        self.device = torch.device(device)
        self.height, self.width = int(cfg.frame_size[0]), int(cfg.frame_size[1])
        self.pixel_size_nm = float(cfg.pixel_size_nm)
        self.psf = build_psf(cfg.psf, self.pixel_size_nm)
        z_lo, z_hi = cfg.emitters.z_range_nm
        known = getattr(self.psf, "z_range_nm", None)
        if known is not None and (z_lo < known[0] - 1e-6 or z_hi > known[1] + 1e-6):
            raise ValueError(
                f"simulation.emitters.z_range_nm: [{z_lo:g}, {z_hi:g}] reaches beyond the PSF's calibrated range "
                f"[{known[0]:.0f}, {known[1]:.0f}] nm; narrow it (train --psf chooses it for you)")
        self.camera = Camera.from_config(cfg.camera)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))

    # ------------------------------------------------------------------ random helpers
    def _uniform(self, shape, lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.device)
        return lo + (hi - lo) * u

    @property
    def area_um2(self) -> float:
        return self.height * self.width * (self.pixel_size_nm / 1000.0) ** 2

    # ------------------------------------------------------------------ emitters
    def sample_emitters(
        self, n_seq: int, n_frames: int, density_per_um2: Optional[tuple[float, float]] = None
    ) -> EmitterTable:
        """Emitters with blinking over ``n_seq`` independent sequences of ``n_frames``."""
        em = self.cfg.emitters
        lo, hi = density_per_um2 if density_per_um2 is not None else em.density_per_um2
        tau = float(em.mean_on_frames)
        lead = 3.0 * tau  # start the process early so frame 0 is in steady state
        density = self._uniform((n_seq,), lo, hi)
        # An emitter with mean on-time tau is visible in about (tau + 1) frames, so
        # this rate gives `density` visible emitters per frame on average.
        rate = density * self.area_um2 / (tau + 1.0)
        counts = torch.poisson(rate * (n_frames + lead), generator=self.generator).long()
        n = int(counts.sum().item())
        seq = torch.repeat_interleave(torch.arange(n_seq, device=self.device), counts)
        t0 = self._uniform((n,), -lead, float(n_frames))
        on = -tau * torch.log1p(-torch.rand((n,), generator=self.generator, device=self.device))
        t1 = t0 + on
        x, y = self._positions(seq, n_seq)
        z = self._uniform((n,), float(em.z_range_nm[0]), float(em.z_range_nm[1]))
        p_lo, p_hi = em.photons
        if em.photon_distribution == "uniform":
            flux = self._uniform((n,), p_lo, p_hi)
        else:  # log-normal with the range as its central ~95 %
            mu = 0.5 * (math.log(p_lo) + math.log(p_hi))
            s = max((math.log(p_hi) - math.log(p_lo)) / 4.0, 1e-6)
            flux = torch.exp(mu + s * torch.randn((n,), generator=self.generator, device=self.device))
        psf_params = self.psf.sample_parameters((n,), self.generator, self.device)

        # Expand each emitter over the frames it may overlap, keep the real overlaps.
        span = int(math.ceil(float(on.max().item()))) + 2 if n else 1
        first = torch.floor(t0).long()
        frames = first.unsqueeze(1) + torch.arange(span, device=self.device)  # (n, span)
        fl = frames.float()
        overlap = (torch.minimum(t1.unsqueeze(1), fl + 1) - torch.maximum(t0.unsqueeze(1), fl)).clamp(0, 1)
        keep = (overlap > 0) & (frames >= 0) & (frames < n_frames)
        emitter, _ = keep.nonzero(as_tuple=True)
        ids = torch.arange(n, device=self.device)
        table = EmitterTable(
            seq=seq[emitter],
            frame=frames[keep],
            id=ids[emitter],
            x_px=x[emitter],
            y_px=y[emitter],
            z_nm=z[emitter],
            photons=(flux.unsqueeze(1) * overlap)[keep],
            sigma_px=psf_params["sigma_px"][emitter] if "sigma_px" in psf_params else None,
        )
        return table

    def _positions(self, seq: torch.Tensor, n_seq: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Emitter positions (pixels): uniform, or on per-sequence random structures."""
        em = self.cfg.emitters
        n = seq.numel()
        w, h = float(self.width), float(self.height)
        if em.structure == "uniform":
            return self._uniform((n,), 0.0, w), self._uniform((n,), 0.0, h)
        k = em.n_structures
        which = torch.randint(0, k, (n,), generator=self.generator, device=self.device)
        jitter = 10.0 / self.pixel_size_nm  # 10 nm: label size
        if em.structure == "filaments":
            ends = torch.stack([self._uniform((n_seq, k, 2), 0.0, w), self._uniform((n_seq, k, 2), 0.0, h)], -1)
            t = self._uniform((n,), 0.0, 1.0)
            a, b = ends[seq, which, 0], ends[seq, which, 1]
            p = a + t.unsqueeze(1) * (b - a)
        else:  # rings of 150-400 nm radius
            centres = torch.stack([self._uniform((n_seq, k), 0.0, w), self._uniform((n_seq, k), 0.0, h)], -1)
            radii = self._uniform((n_seq, k), 150.0, 400.0) / self.pixel_size_nm
            angle = self._uniform((n,), 0.0, 2 * math.pi)
            r = radii[seq, which]
            p = centres[seq, which] + torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
        p = p + jitter * torch.randn(p.shape, generator=self.generator, device=self.device)
        return p[:, 0].clamp(0, w - 1e-3), p[:, 1].clamp(0, h - 1e-3)

    def sample_background(self, n_seq: int) -> torch.Tensor:
        """(n_seq, H, W) expected background photons per pixel, constant over a sequence."""
        em = self.cfg.emitters
        level = self._uniform((n_seq, 1, 1), *em.background)
        if em.background_gradient <= 0:
            return level.expand(n_seq, self.height, self.width).contiguous()
        angle = self._uniform((n_seq, 1, 1), 0.0, 2 * math.pi)
        strength = self._uniform((n_seq, 1, 1), 0.0, em.background_gradient)
        yy = (torch.arange(self.height, device=self.device).view(1, -1, 1) + 0.5) / self.height - 0.5
        xx = (torch.arange(self.width, device=self.device).view(1, 1, -1) + 0.5) / self.width - 0.5
        ramp = 2 * (torch.cos(angle) * xx + torch.sin(angle) * yy)  # in [-sqrt2, sqrt2]
        return level * (1 + strength * ramp.clamp(-1, 1))

    # ------------------------------------------------------------------ rendering
    def render(self, table: EmitterTable, n_seq: int, n_frames: int, shape: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Noise-free emitter photons, (n_seq, n_frames, H, W) (``shape``: (H, W), the frame's by default)."""
        h, w = shape if shape is not None else (self.height, self.width)
        flat = table.seq * n_frames + table.frame
        values = {"x": table.x_px, "y": table.y_px, "z": table.z_nm, "photons": table.photons}
        if table.sigma_px is not None:
            values["sigma"] = table.sigma_px
        padded, _ = pad_per_frame(flat, n_seq * n_frames, values)
        img = self.psf.render(
            padded["x"], padded["y"], padded["z"], padded["photons"], (h, w), sigma_px=padded.get("sigma"),
        )
        return img.view(n_seq, n_frames, h, w)

    def render_frames(self, table: EmitterTable, n_frames: int) -> torch.Tensor:
        """Noise-free photons of one sequence's frames, (n_frames, H, W). Frames taller
        than ``BAND_ROWS`` are rendered a band of rows at a time, from the emitters within
        ``BAND_MARGIN_PX`` of the band: the separable render holds emitters × (H + W)
        values per frame (4 frames of 2048×2048 at 0.3 /µm²: 1.5 GB and 3.2 s)."""
        if self.height <= BAND_ROWS:
            return self.render(table, 1, n_frames)[0]
        margin = max(BAND_MARGIN_PX, getattr(self.psf, "roi", 0) // 2 + 1)
        out = torch.empty(n_frames, self.height, self.width)
        for r0 in range(0, self.height, BAND_ROWS):
            r1 = min(r0 + BAND_ROWS, self.height)
            band = table.select((table.y_px >= r0 - margin) & (table.y_px < r1 + margin))
            band.y_px = band.y_px - r0
            out[:, r0:r1] = self.render(band, 1, n_frames, shape=(r1 - r0, self.width))[0]
        return out

    def sample_batch(
        self,
        batch_size: int,
        frame_window: int,
        density_per_um2: Optional[tuple[float, float]] = None,
    ) -> dict[str, torch.Tensor]:
        """One training batch.

        Returns a dict with ``frames`` (B, K, H, W) in photons (camera noise applied
        and inverted), ``background`` (B, H, W) expected background photons of the
        centre frame, and the centre frame's emitters as padded (B, M) tensors
        ``x_px, y_px, z_nm, photons`` with a boolean ``mask``.
        """
        table = self.sample_emitters(batch_size, frame_window, density_per_um2)
        bg = self.sample_background(batch_size)
        expected = self.render(table, batch_size, frame_window) + bg.unsqueeze(1)
        frames, scale, offset = self._camera_photons(expected)
        centre = table.select(table.frame == frame_window // 2)
        photons = centre.photons
        if scale is not None:  # the targets in the photons the model is shown
            photons = photons / scale[centre.seq]
            bg = ((bg + offset.view(-1, 1, 1)) / scale.view(-1, 1, 1)).clamp_min(0)
        padded, mask = pad_per_frame(
            centre.seq,
            batch_size,
            {"x_px": centre.x_px, "y_px": centre.y_px, "z_nm": centre.z_nm, "photons": photons},
        )
        return {"frames": frames, "background": bg, "mask": mask, **padded}

    def _camera_photons(self, expected: torch.Tensor):
        """Camera noise applied and inverted: (frames in photons, scale, offset), where a
        sequence's frames are (true photons + offset) / scale under ``camera_jitter``
        (scale and offset are None without it)."""
        jit = self.cfg.camera_jitter
        frames = self.camera.to_photons(self.camera.forward(expected, self.generator))
        if not (jit.gain or jit.baseline_adu or jit.scmos_fraction):
            return frames, None, None
        n = expected.shape[0]
        photons_per_adu = torch.full((n,), self.camera.e_per_adu / (self.camera.em_gain * self.camera.qe),
                                     device=self.device)
        if jit.scmos_fraction:
            scmos = Camera(baseline=100.0, e_per_adu=0.5, em_gain=1.0, qe=0.9, read_noise_e=1.5, kind="scmos")
            use = torch.rand(n, generator=self.generator, device=self.device) < jit.scmos_fraction
            frames = torch.where(use.view(-1, 1, 1, 1), scmos.to_photons(scmos.forward(expected, self.generator)), frames)
            photons_per_adu = torch.where(use, torch.full_like(photons_per_adu, 0.5 / 0.9), photons_per_adu)
        scale = self._uniform((n,), 1.0 - jit.gain, 1.0 + jit.gain)
        offset = -self._uniform((n,), -jit.baseline_adu, jit.baseline_adu) * photons_per_adu
        return (frames + offset.view(-1, 1, 1, 1)) / scale.view(-1, 1, 1, 1), scale, offset

    def simulate_movie(
        self, n_frames: int, chunk_frames: int = 256
    ) -> tuple[Iterator[torch.Tensor], EmitterTable, torch.Tensor]:
        """A continuous movie: (iterator over ADU chunks (T, H, W), ground truth, background).

        Emitters are drawn for the whole movie first (so blinking crosses chunk
        borders); frames are rendered chunk by chunk to bound memory: at most
        ``chunk_frames`` frames and ``CHUNK_PIXELS`` pixels a chunk (256 frames of
        2048×2048 had needed more than 22 GB).
        """
        chunk_frames = max(1, min(chunk_frames, CHUNK_PIXELS // (self.height * self.width)))
        table = self.sample_emitters(1, n_frames)
        bg = self.sample_background(1)[0]

        def chunks() -> Iterator[torch.Tensor]:
            for start in range(0, n_frames, chunk_frames):
                stop = min(start + chunk_frames, n_frames)
                part = table.select((table.frame >= start) & (table.frame < stop))
                part.frame = part.frame - start
                expected = self.render_frames(part, stop - start) + bg
                yield self.camera.forward(expected, self.generator)

        return chunks(), table, bg

"""Localize a movie: the one function the CLI and the napari widget both call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .camera import Camera, camera_for_movie, describe_estimate
from .config import load_camera_config
from .inference.postprocess import filter_table
from .inference.runner import Infer, LocalizationModel
from .io.metadata import read_movie_metadata
from .io.movie import MovieError, open_movie

__all__ = ["LocalizeResult", "localize", "load_camera", "check_movie", "MIN_FRAME_SIZE"]

MIN_FRAME_SIZE = 8  # px; smaller frames hold no usable PSF


@dataclass
class LocalizeResult:
    """All candidates (after NMS) with their probabilities, so a new threshold is a
    re-filter, not a re-run."""

    candidates: dict[str, np.ndarray]
    threshold: float
    pixel_size_nm: float
    movie_shape: tuple[int, int, int]
    camera: Optional[Camera]
    camera_report: Optional[dict] = None
    timings: dict = field(default_factory=dict)
    model_source: str = ""

    @property
    def network_share(self) -> Optional[float]:
        """The share of the pixels the network ran on, where empty regions were skipped
        (None: it ran on every pixel)."""
        total, run = self.timings.get("pixels", 0), self.timings.get("pixels_run", 0)
        return run / total if total and run < total else None

    def table(self, threshold: Optional[float] = None, min_photons: Optional[float] = None,
              max_uncertainty_nm: Optional[float] = None) -> dict[str, np.ndarray]:
        return filter_table(self.candidates, self.threshold if threshold is None else threshold, min_photons, max_uncertainty_nm)


def load_camera(path: Union[str, Path]) -> Camera:
    """A camera YAML (see :func:`~napari_smlm.core.config.load_camera_config`) as a Camera."""
    return Camera.from_config(load_camera_config(path))


def check_movie(movie, name: str = "movie") -> tuple[int, int, int]:
    """Shape checks before long work: (T, H, W), not empty, not too small."""
    shape = tuple(int(s) for s in getattr(movie, "shape", ()))
    if len(shape) == 2:
        raise MovieError(f"{name}: a single frame must be given as a (1, Y, X) stack here")
    if len(shape) != 3:
        raise MovieError(f"{name}: expected a stack (T, Y, X), got shape {shape}")
    if shape[0] == 0:
        raise MovieError(f"{name}: the movie has no frames")
    if min(shape[1:]) < MIN_FRAME_SIZE:
        raise MovieError(f"{name}: frames of {shape[1]}x{shape[2]} px are smaller than the minimum {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE}")
    return shape  # type: ignore[return-value]


def localize(
    movie,
    model: Union[str, Path, LocalizationModel] = "default",
    camera: Union[Camera, str, Path, None] = "estimate",
    pixel_size_nm: Optional[float] = None,
    threshold: Optional[float] = None,
    device: str = "auto",
    batch_size: Union[int, str] = "auto",
    max_memory_gb: Optional[float] = None,
    frame_range: Optional[tuple[int, int]] = None,
    nms_radius_nm: Optional[float] = None,
    tile_size: Optional[int] = 512,
    progress: Optional[Callable[[int, int], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
    log: Callable[[str], None] = lambda s: None,
    estimate_kwargs: Optional[dict] = None,
    metadata: Optional[dict] = None,
    precision: str = "auto",
    threads: Optional[int] = None,
    skip_empty: bool = True,
    sink=None,
) -> LocalizeResult:
    """Localize molecules in ``movie`` (a path or a (T, Y, X) array in ADU).

    ``camera``: a :class:`Camera`, a camera YAML path, ``"estimate"`` (from the
    movie; the estimate is logged) or None (the movie is already in photons).
    ``pixel_size_nm`` defaults to the file's metadata, else the model's; ``metadata``
    (what :func:`~napari_smlm.core.io.metadata.read_movie_metadata` returns, read here
    for a path) may state the camera or part of it. Every input is checked before the
    network runs; see DESIGN.md for the output table.

    ``sink`` (a :class:`~napari_smlm.core.io.tables.TableWriter`, or anything with its
    ``begin(pixel_size_nm, movie_shape)`` and ``append(table)``) streams the table:
    each batch's localizations above ``threshold`` go to it as they are made, the
    result holds no candidates (re-thresholding needs a new run) and memory does not
    grow with the movie. The rows are those ``result.table()`` would hold.
    """
    name = str(movie) if isinstance(movie, (str, Path)) else str(getattr(movie, "path", "movie"))
    metadata = dict(metadata or {})
    if isinstance(movie, (str, Path)):
        metadata = {**read_movie_metadata(movie), **metadata}
        movie = open_movie(movie)
    shape = check_movie(movie, name)
    lm = model if isinstance(model, LocalizationModel) else LocalizationModel.load(model)
    if pixel_size_nm is None and metadata.get("pixel_size_nm"):
        pixel_size_nm = metadata["pixel_size_nm"]
        log(f"pixel size {pixel_size_nm:g} nm from the file's {metadata.get('source', '')} metadata (--pixel-size overrides)")
    px = float(pixel_size_nm) if pixel_size_nm is not None else lm.pixel_size_nm
    if pixel_size_nm is None:  # a silent default would scale every position in nm wrongly
        log(f"pixel size {px:g} nm: the model's, as the movie does not say its own; give --pixel-size if the "
            f"camera pixel in the sample differs (positions in nm scale with it)")
    if px <= 0:
        raise ValueError(f"--pixel-size: expected a positive number of nm, got {px}")
    if abs(px / lm.pixel_size_nm - 1) > 0.2:
        log(f"warning: pixel size {px:g} nm differs from the model's training pixel size {lm.pixel_size_nm:g} nm; "
            f"the PSF width in pixels may be outside what the model learned")
    threshold = lm.detection_threshold if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise ValueError(f"--threshold: expected a probability in (0, 1], got {threshold}")

    # Built first: it checks device, batch size and memory budget before long work.
    infer = Infer(lm, device=device, batch_size=batch_size, max_memory_gb=max_memory_gb, tile_size=tile_size,
                  precision=precision, threads=threads, skip_empty=skip_empty)
    report = None
    if isinstance(camera, str) and camera == "estimate":
        camera, report = camera_for_movie(movie, metadata, **(estimate_kwargs or {}))
        if report["method"] == "file metadata":
            log(f"camera from the file's metadata: {describe_estimate(report)}")
        else:
            log(f"camera estimated from the movie's background noise: {describe_estimate(report)}; "
                f"give --camera-kind, --baseline or the whole camera to override")
    elif isinstance(camera, (str, Path)):
        camera = load_camera(camera)

    sample = np.asarray(movie[0:min(shape[0], 16)], dtype=np.float32)
    if not np.isfinite(sample).all():
        bad = int(np.argwhere(~np.isfinite(sample))[0][0])
        raise MovieError(f"{name}: frame {bad + 1} holds NaN or infinite pixels")  # counted from 1
    if camera is not None:
        photons = camera.to_photons(__import__("torch").from_numpy(sample)).numpy()
        if np.median(photons) < 0:
            raise ValueError(
                f"camera: with baseline {camera.baseline:g} ADU, most pixels become negative photons "
                f"(the movie's median is {np.median(sample):.1f} ADU); check the baseline / camera"
            )

    timings: dict = {}
    t0 = time.perf_counter()
    radius = 0.5 * px if nms_radius_nm is None else float(nms_radius_nm)
    lo, hi = lm.z_range_nm

    def finish(cand: dict) -> dict:
        if hi <= lo and "z" in cand:
            # A 2D model's z head only ever saw z = 0: what it outputs is noise (a few nm),
            # which made 2D results look 3D (coloured by z). Report the focal plane, and no
            # axial uncertainty.
            cand["z"] = np.zeros_like(cand["z"])
            if "sigma_z" in cand:
                cand["sigma_z"] = np.full_like(cand["sigma_z"], np.nan)
        if px != lm.pixel_size_nm:
            for key in ("x", "y", "sigma_x", "sigma_y"):
                if key in cand:
                    cand[key] = cand[key] * (px / lm.pixel_size_nm)
        return cand

    def stream(piece: dict) -> None:
        tic = time.perf_counter()
        sink.append(filter_table(finish(piece), threshold))
        timings["write"] += time.perf_counter() - tic

    if sink is not None:
        sink.begin(px, shape)
        timings["write"] = 0.0
    cand = infer.run(movie, camera=camera, frame_range=frame_range, progress=progress, cancel=cancel,
                     min_prob=min(0.1, threshold), timings=timings, sink=stream if sink is not None else None,
                     nms_radius_nm=radius * lm.pixel_size_nm / px)  # positions are on the model's grid until finish()
    cand = finish(cand)  # with a sink: the empty table
    timings["total"] = time.perf_counter() - t0
    return LocalizeResult(cand, threshold, px, shape, camera, report, timings, lm.source)

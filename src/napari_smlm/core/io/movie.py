"""Reading and writing TIFF movies lazily (memory-mapped where the file allows)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

import numpy as np
import tifffile

from ..utils import atomic_write

__all__ = ["MovieError", "Movie", "open_movie", "write_movie"]


class MovieError(ValueError):
    """A movie file is missing or has a shape or type we cannot localize in."""


class Movie:
    """A (T, H, W) stack read on demand: ``movie[a:b]`` returns frames a..b-1."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._files: list[Path] | None = None
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
            if not files:
                raise MovieError(f"{self.path}: folder holds no .tif/.tiff files")
            self._files = files
            first = tifffile.imread(files[0])
            if first.ndim != 2:
                raise MovieError(f"{files[0]}: a folder of frames needs single-frame (Y, X) files, got shape {first.shape}")
            self._check(first.shape, first.dtype, files[0])
            self.shape = (len(files), *first.shape[-2:])
            self.dtype = first.dtype
            return
        if not self.path.is_file():
            raise MovieError(f"{self.path}: movie file not found")
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                shape, dtype, axes = tuple(series.shape), series.dtype, series.axes
        except (tifffile.TiffFileError, ValueError, IndexError) as exc:
            raise MovieError(f"{self.path}: not a readable TIFF ({exc})") from None
        # Interleaved samples (…YXS) are colour images; planar samples (SYX, which
        # older tifffile wrote for 3- or 4-frame stacks) are read as frames.
        self._check(shape, dtype, self.path, rgb=axes.endswith("S"))
        self.shape = (1, *shape) if len(shape) == 2 else shape
        self.dtype = dtype
        try:
            self._data = tifffile.memmap(self.path, mode="r")
            if self._data.ndim == 2:
                self._data = self._data[None]
        except (ValueError, tifffile.TiffFileError):
            self._data = None  # compressed or tiled: read page by page

    @staticmethod
    def _check(shape, dtype, path, rgb: bool = False) -> None:
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise MovieError(f"{path}: expected numeric pixel data, got dtype {dtype}")
        if rgb or len(shape) not in (2, 3):
            raise MovieError(
                f"{path}: expected a single frame (Y, X) or a stack (T, Y, X), got shape {tuple(shape)}"
                + (" (RGB)" if rgb else "")
            )

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice):
            index = slice(int(index), int(index) + 1)
        start, stop, _ = index.indices(len(self))
        if self._files is not None:
            return np.stack([tifffile.imread(f) for f in self._files[start:stop]])
        if self._data is not None:
            return np.asarray(self._data[start:stop])
        with tifffile.TiffFile(self.path) as tif:
            return np.stack([tif.pages[i].asarray() for i in range(start, stop)])


def open_movie(path: Union[str, Path]) -> Movie:
    return Movie(path)


def write_movie(chunks: Iterable[np.ndarray], path: Union[str, Path], shape: tuple[int, int, int], dtype=np.uint16) -> None:
    """Write (T, H, W) frames, given as an iterable of (t, H, W) chunks, as one
    multi-page BigTIFF series, atomically; only one chunk is in memory at a time."""

    def pages():
        n = 0
        for chunk in chunks:
            chunk = np.asarray(chunk)
            for frame in chunk.reshape(-1, *chunk.shape[-2:]):
                n += 1
                yield frame.astype(dtype)
        if n != shape[0]:
            raise ValueError(f"{path}: expected {shape[0]} frames, got {n}")

    def write(tmp: str) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
            tw.write(pages(), shape=tuple(shape), dtype=dtype, photometric="minisblack")

    atomic_write(path, write)

"""Reading and writing TIFF movies lazily (memory-mapped where the file allows).

Every way a TIFF can hold a stack is read as one (T, Y, X) movie: one series of
pages, ImageJ hyperstacks, and files written frame by frame (one single-page
series per frame). A truncated file is an error that names the file and its last
complete frame, unless ``allow_truncated`` asks for the complete frames.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import tifffile

from ..utils import atomic_write

__all__ = ["MovieError", "Movie", "open_movie", "write_movie"]


class MovieError(ValueError):
    """A movie file is missing or has a shape or type we cannot localize in."""


@contextlib.contextmanager
def _tifffile_warnings():
    """Collect tifffile's log warnings (a cut page chain, corrupted ImageJ metadata)
    instead of letting them reach the terminal: we turn them into one clear error."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log = logging.getLogger("tifffile")
    handler, propagate = Collect(level=logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Movie:
    """A (T, H, W) stack read on demand: ``movie[a:b]`` returns frames a..b-1.

    ``allow_truncated``: a truncated file gives its complete frames (``truncated``
    then says how many the file declared) instead of an error.

    A file with channels (ImageJ or OME axes with C besides the frames: TCYX, CTYX,
    ZCYX ...) is one channel's movie: ``channel`` (0-based) chooses it, and a file of
    more than one channel without it is refused, naming them. ``channels`` is the
    file's number of channels (1 for a plain stack).
    """

    def __init__(self, path: Union[str, Path], allow_truncated: bool = False, channel: Optional[int] = None):
        self.path = Path(path)
        self.channel = channel
        self.channels = 1
        self._files: list[Path] | None = None
        self._pages: list[int] | None = None  # frame -> page index, when frames are pages
        self._page_offsets: list[int] | None = None  # their data offsets, when memory-mappable
        self._byteorder = "<"
        self._data = None
        self.truncated: Optional[str] = None  # what was cut, when allow_truncated kept the rest
        if self.path.is_dir():
            self._open_folder()
            return
        if not self.path.is_file():
            raise MovieError(f"{self.path}: movie file not found")
        try:
            self._open_file(allow_truncated)
        except MovieError:
            raise
        except (tifffile.TiffFileError, ValueError, IndexError, OSError, KeyError) as exc:
            raise MovieError(f"{self.path}: not a readable TIFF ({_first_line(exc)})") from None

    # ------------------------------------------------------------------ opening
    def _open_folder(self) -> None:
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
        if not files:
            raise MovieError(f"{self.path}: folder holds no .tif/.tiff files")
        # Every frame's header is read first (cheap): an odd one is named now, not
        # after the network has run over the frames before it.
        shapes = []
        for f in files:
            try:
                with tifffile.TiffFile(f) as tif:
                    page = tif.pages[0]
                    shapes.append((tuple(tif.series[0].shape), page.dtype, len(tif.pages)))
            except (tifffile.TiffFileError, ValueError, IndexError, OSError) as exc:
                raise MovieError(f"{f}: not a readable TIFF ({_first_line(exc)})") from None
        shape, dtype, _ = shapes[0]
        if len(shape) != 2:
            raise MovieError(f"{files[0]}: a folder of frames needs single-frame (Y, X) files, got shape {shape}")
        self._check(shape, dtype, files[0])
        for f, (s, d, _) in zip(files, shapes):
            if s != shape or d != dtype:
                raise MovieError(
                    f"{f}: frame of shape {s} and type {d} differs from the folder's first frame "
                    f"{files[0].name} ({shape}, {dtype}); a folder movie needs frames of one shape and type"
                )
        self._files = files
        self.shape = (len(files), *shape)
        self.dtype = dtype

    def _open_file(self, allow_truncated: bool) -> None:
        size = self.path.stat().st_size
        with _tifffile_warnings() as warnings, tifffile.TiffFile(self.path) as tif:
            self._byteorder = tif.byteorder
            all_series = tif.series
            series = all_series[0]
            shape, dtype, axes = tuple(series.shape), series.dtype, series.axes
            declared = None
            if tif.is_imagej and tif.imagej_metadata:
                declared = int(tif.imagej_metadata.get("images", 0)) or None
            elif tif.is_shaped and tif.shaped_metadata and len(tif.shaped_metadata) == 1:
                declared_shape = tuple(tif.shaped_metadata[0].get("shape", ()))
                if len(declared_shape) == 3 and declared_shape[1:] == tuple(shape[-2:]):
                    declared = int(declared_shape[0])
            frame_shape = shape[-2:]
            one_frame_series = len(all_series) > 1 and all(
                len(s.shape) == 2 and s.shape == shape and s.dtype == dtype and len(s.pages) == 1 for s in all_series
            )
            if one_frame_series:
                # Written frame by frame (TiffWriter.write per frame): one series per page.
                pages = [s.pages[0].index for s in all_series]
                ends = [self._page_end(tif.pages[i]) for i in pages]
                self._check(shape, dtype, self.path)
                complete = sum(1 for _ in _leading(ends, size))
                chain_cut = any("page offset" in w or "corrupt" in w for w in warnings)
                cut = complete < len(pages) or chain_cut
                total = None if chain_cut else len(pages)
                self._pages = pages[:complete]
                self._page_offsets = self._memmappable(tif, self._pages)
                self.shape = (complete, *frame_shape)
                self.dtype = dtype
                if cut:
                    self._truncated(complete, total, allow_truncated)
                return
            if len(shape) > 3 and not axes.endswith("S"):
                self._open_channel(tif, series, size, warnings, allow_truncated)
                return
            # Otherwise several series of different shapes (an OME-TIFF with several
            # positions, a thumbnail ...): the first series is the movie.
            # Interleaved samples (…YXS) are colour images; planar samples (SYX, which
            # older tifffile wrote for 3- or 4-frame stacks) are read as frames.
            self._check(shape, dtype, self.path, rgb=axes.endswith("S"))
            frames = 1 if len(shape) == 2 else shape[0]
            frame_bytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
            offset = getattr(series, "dataoffset", None)
            if declared is not None and declared > frames and len(shape) == 2:
                frames = declared  # tifffile fell back to one frame: the ImageJ data was cut
            if offset is not None:
                complete = max(0, min(frames, (size - offset) // frame_bytes))
            else:
                # Frames stored as separate pages (compressed, tiled, or not contiguous).
                ends = [self._page_end(p) for p in tif.pages]
                complete = min(frames, sum(1 for _ in _leading(ends, size)))
                self._pages = list(range(complete))
                self._page_offsets = self._memmappable(tif, self._pages)
            chain_cut = any("page offset" in w or "corrupt" in w for w in warnings)
            cut = complete < frames or chain_cut
            self.shape = (complete, *frame_shape) if cut else ((1, *shape) if len(shape) == 2 else shape)
            self.dtype = dtype
            if cut:
                self._truncated(complete, None if chain_cut and declared is None else frames, allow_truncated)
                if offset is not None:
                    self._data = np.memmap(self.path, dtype=np.dtype(dtype).newbyteorder(tif.byteorder), mode="r",
                                           offset=offset, shape=self.shape)
                return
        if self._pages is None:
            try:
                self._data = tifffile.memmap(self.path, mode="r")
                if self._data.ndim == 2:
                    self._data = self._data[None]
            except (ValueError, tifffile.TiffFileError):
                self._data = None  # compressed or tiled: read page by page
            if self._data is None:
                self._pages = list(range(self.shape[0]))

    def _open_channel(self, tif, series, size: int, warnings: list, allow_truncated: bool) -> None:
        """One channel of a series with more axes than (T, Y, X): its frames' pages.
        Pages follow the series' leading axes in order, so frame t of channel c is the
        page at their flat index; where the data is contiguous, at its offset."""
        shape, axes, dtype = tuple(series.shape), series.axes, series.dtype
        lead, lead_axes = shape[:-2], axes[:-2]
        varying = [i for i, n in enumerate(lead) if n > 1]
        c = lead_axes.index("C") if "C" in lead_axes else None
        frames_axes = [i for i in varying if i != c]
        described = f"axes {axes}, shape {shape}"
        if len(frames_axes) > 1:
            raise MovieError(f"{self.path}: expected a single frame (Y, X) or a stack (T, Y, X), got shape {shape} "
                             f"(axes {axes}: more than one axis besides Y and X varies; channels need a C axis)")
        self._check(shape[-2:], dtype, self.path)
        n_frames = lead[frames_axes[0]] if frames_axes else 1
        self.channels = lead[c] if c is not None else 1
        if self.channels > 1 and self.channel is None:
            raise MovieError(f"{self.path}: holds {self.channels} channels ({described}: {n_frames} frames of "
                             f"{shape[-2]}x{shape[-1]} each); choose one (localize: --channel 1 to --channel {self.channels}; "
                             f"elsewhere save the channel as a TIFF of its own)")
        if self.channel is not None and not 0 <= self.channel < self.channels:
            raise MovieError(f"{self.path}: has no channel {self.channel + 1}: it holds "
                             f"{self.channels} channel{'s' if self.channels > 1 else ''} ({described})")
        index = [np.zeros(n_frames, np.int64) for _ in lead]
        if frames_axes:
            index[frames_axes[0]] = np.arange(n_frames)
        if c is not None:
            index[c] = np.full(n_frames, self.channel or 0)
        pages = np.ravel_multi_index(tuple(index), lead).tolist()
        frame_bytes = int(np.prod(shape[-2:])) * np.dtype(dtype).itemsize
        offset = getattr(series, "dataoffset", None)
        if offset is not None:
            offsets = [int(offset) + p * frame_bytes for p in pages]
            complete = sum(1 for _ in _leading([o + frame_bytes for o in offsets], size))
            self._pages, self._page_offsets = pages[:complete], offsets[:complete]
        else:
            in_file = [series.pages[p].index for p in pages]
            ends = [self._page_end(tif.pages[i]) for i in in_file]
            complete = sum(1 for _ in _leading(ends, size))
            self._pages = in_file[:complete]
            self._page_offsets = self._memmappable(tif, self._pages)
        self.shape, self.dtype = (complete, *shape[-2:]), dtype
        chain_cut = any("page offset" in w or "corrupt" in w for w in warnings)
        if complete < n_frames or chain_cut:
            self._truncated(complete, None if chain_cut else n_frames, allow_truncated)
        elif offset is not None:  # a view of the channel in a memory map of the whole series (napari's layer)
            series_map = np.memmap(self.path, dtype=np.dtype(dtype).newbyteorder(tif.byteorder), mode="r",
                                   offset=int(offset), shape=shape)
            pick = [slice(None) if i in frames_axes else (self.channel or 0) if i == c else 0 for i in range(len(lead))]
            view = series_map[tuple(pick)].reshape(self.shape)
            if view.flags.c_contiguous:  # one block (CTYX): a map of its own, read by file reads in __getitem__
                view = np.memmap(self.path, dtype=view.dtype, mode="r", offset=offsets[0], shape=self.shape)
            self._data = view

    @staticmethod
    def _memmappable(tif, pages: list[int]) -> Optional[list[int]]:
        """Data offsets of the pages when every one is stored uncompressed in one
        piece (read by memory map, not by parsing the file again per chunk)."""
        offsets = []
        for i in pages:
            page = tif.pages[i]
            if not page.is_memmappable:
                return None
            offsets.append(int(page.dataoffsets[0]))
        return offsets

    @staticmethod
    def _page_end(page) -> int:
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets:
            return 0
        return max(int(o) + int(c) for o, c in zip(offsets, counts))

    def _truncated(self, complete: int, total: Optional[int], allow: bool) -> None:
        declared = f" of the {total} frames it declares" if total else ""
        what = f"{self.path}: truncated file: the last readable frame is {complete}{declared}"
        if complete == 0:
            raise MovieError(f"{self.path}: truncated file: not even the first frame is complete")
        if not allow:
            raise MovieError(f"{what}; give --allow-truncated to localize frames 1..{complete}")
        self.truncated = f"{what}; localizing frames 1..{complete} only"

    @staticmethod
    def _check(shape, dtype, path, rgb: bool = False) -> None:
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise MovieError(f"{path}: expected numeric pixel data, got dtype {dtype}")
        if rgb or len(shape) not in (2, 3):
            raise MovieError(
                f"{path}: expected a single frame (Y, X) or a stack (T, Y, X), got shape {tuple(shape)}"
                + (" (RGB)" if rgb else "")
            )

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice):
            index = slice(int(index), int(index) + 1)
        start, stop, _ = index.indices(len(self))
        if self._files is not None:
            frames = []
            for f in self._files[start:stop]:
                try:
                    frames.append(tifffile.imread(f))
                except (tifffile.TiffFileError, ValueError, IndexError, OSError) as exc:
                    raise MovieError(f"{f}: cannot read this frame ({_first_line(exc)})") from None
            return np.stack(frames) if frames else np.zeros((0, *self.shape[1:]), self.dtype)
        if self._data is not None:
            if isinstance(self._data, np.memmap) and self._data.flags.c_contiguous:
                # Read, not map: the pages of a memory map stay in this process's resident
                # memory until the kernel wants them back, so streaming a 20,000-frame
                # 256x256 movie (2.6 GB) through a map grows the RSS by the whole movie.
                per_frame = int(np.prod(self.shape[1:]))
                with open(self.path, "rb") as fh:
                    fh.seek(int(self._data.offset) + start * per_frame * self._data.dtype.itemsize)
                    out = np.fromfile(fh, dtype=self._data.dtype, count=(stop - start) * per_frame)
                if out.size != (stop - start) * per_frame:
                    raise MovieError(f"{self.path}: cannot read frames {start + 1}..{stop} (the file ended early)")
                return out.reshape(stop - start, *self.shape[1:])
            return np.asarray(self._data[start:stop])
        if self._page_offsets is not None:
            raw = np.memmap(self.path, dtype=np.uint8, mode="r")
            dtype = np.dtype(self.dtype).newbyteorder(self._byteorder)
            n = int(np.prod(self.shape[1:])) * dtype.itemsize
            out = np.empty((stop - start, *self.shape[1:]), self.dtype)
            for j, i in enumerate(range(start, stop)):
                o = self._page_offsets[i]
                out[j] = raw[o:o + n].view(dtype).reshape(self.shape[1:])
            return out
        try:
            with _tifffile_warnings(), tifffile.TiffFile(self.path) as tif:
                frames = [tif.pages[self._pages[i]].asarray() for i in range(start, stop)]
        except (tifffile.TiffFileError, ValueError, IndexError, OSError) as exc:
            raise MovieError(f"{self.path}: cannot read frames {start + 1}..{stop} ({_first_line(exc)})") from None
        return np.stack(frames) if frames else np.zeros((0, *self.shape[1:]), self.dtype)


def _leading(ends: list[int], size: int):
    """The leading pages whose data lies inside the file."""
    for end in ends:
        if end > size or end == 0:
            return
        yield end


def open_movie(path: Union[str, Path], allow_truncated: bool = False, channel: Optional[int] = None) -> Movie:
    return Movie(path, allow_truncated=allow_truncated, channel=channel)


def write_movie(chunks: Iterable[np.ndarray], path: Union[str, Path], shape: tuple[int, int, int], dtype=np.uint16,
                pixel_size_nm: Optional[float] = None) -> None:
    """Write (T, H, W) frames, given as an iterable of (t, H, W) chunks, as one
    multi-page BigTIFF series, atomically; only one chunk is in memory at a time.
    ``pixel_size_nm`` goes into the file's description, where
    :func:`~.metadata.read_movie_metadata` finds it ("napari-smlm" metadata)."""

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
            meta = {"napari_smlm": {"pixel_size_nm": float(pixel_size_nm)}} if pixel_size_nm else {}
            tw.write(pages(), shape=tuple(shape), dtype=dtype, photometric="minisblack", metadata=meta)

    atomic_write(path, write)

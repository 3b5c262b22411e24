"""Localization and emitter tables: ThunderSTORM-style CSV, SMLM-challenge CSV,
Picasso HDF5.

In memory a table is a ``dict`` of 1-D numpy arrays with the canonical columns
``frame`` (0-based), ``x, y, z`` (nm), ``photons``, ``bg`` (photons per pixel),
``prob`` and, where known, ``sigma_x, sigma_y, sigma_z`` (nm) and
``sigma_photons``; merged tables add ``n_frames`` (the CSV's ``detections`` column,
ThunderSTORM's name for it). Frames are 1-based in CSV files (as ThunderSTORM).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..utils import CommitOnSuccess, atomic_write

__all__ = [
    "TableError", "write_localizations_csv", "write_picasso_hdf5", "write_table", "read_table", "empty_table",
    "check_picasso_sidecar", "TableWriter",
]

CSV_COLUMNS = [
    ("id", None),
    ("frame", "frame"),
    ("x [nm]", "x"),
    ("y [nm]", "y"),
    ("z [nm]", "z"),
    ("intensity [photon]", "photons"),
    ("offset [photon]", "bg"),
    ("uncertainty_xy [nm]", None),
    ("uncertainty_z [nm]", "sigma_z"),
    ("prob", "prob"),
]
EXTRA_CSV_COLUMNS = [("sigma_x [nm]", "sigma_x"), ("sigma_y [nm]", "sigma_y"), ("sigma_photons [photon]", "sigma_photons"),
                     ("detections", "n_frames")]  # merged tables: localizations merged into the row (ThunderSTORM's name)

# Header aliases understood on reading, after normalising a header (lower case, quotes
# dropped, brackets and separators as "_": "x [nm]", "x (nm)", "X_nm" -> "x_nm") -> column.
_ALIASES = {
    "frame": "frame", "frames": "frame", "frame_number": "frame", "frame_nr": "frame", "frame_id": "frame",
    "intensity_photon": "photons", "photons": "photons", "photon": "photons", "n_photons": "photons",
    "intensity": "photons", "phot": "photons",
    "offset_photon": "bg", "bg": "bg", "bg_photon": "bg", "background": "bg", "background_photon": "bg",
    "bkgstd_photon": None,
    "uncertainty_xy_nm": "uncertainty_xy", "uncertainty_nm": "uncertainty_xy",
    "uncertainty_z_nm": "sigma_z", "prob": "prob", "probability": "prob",
    "sigma_x_nm": "sigma_x", "sigma_y_nm": "sigma_y", "sigma_photons_photon": "sigma_photons",
    "detections": "n_frames", "n_frames": "n_frames",
}
# Coordinates: every usual spelling, with the factor to nm (None: pixels, needs the pixel size).
_COORD_UNITS = {"nm": 1.0, "nano": 1.0, "nanometer": 1.0, "nanometers": 1.0, "nanometre": 1.0, "nanometres": 1.0,
                "": 1.0, "um": 1000.0, "µm": 1000.0, "micron": 1000.0, "microns": 1000.0,
                "px": None, "pix": None, "pixel": None, "pixels": None}
for _axis in ("x", "y", "z"):
    for _unit in _COORD_UNITS:
        for _name in (f"{_axis}_{_unit}", f"{_axis}{_unit}", f"pos_{_axis}_{_unit}", f"position_{_axis}_{_unit}"):
            _ALIASES.setdefault(_name.rstrip("_"), f"{_axis}:{_unit}")


def _normalise_header(name: str) -> str:
    import re

    name = name.strip().strip('"').strip("'").strip().lower()
    return re.sub(r"[\s_\-\[\]\(\)]+", "_", name).strip("_")


class TableError(ValueError):
    """A table file is missing, unreadable or lacks a required column."""


def empty_table() -> dict[str, np.ndarray]:
    return {"frame": np.zeros(0, np.int64), **{k: np.zeros(0) for k in ("x", "y", "z", "photons", "bg", "prob")}}


def _csv_columns(table: dict[str, np.ndarray]) -> list[tuple[str, Callable[[dict, int], np.ndarray]]]:
    """The CSV's columns for a table with ``table``'s keys: (header, rows of a piece
    -> column), ``first_id`` numbering the piece's rows."""
    nan = np.full(1, np.nan)
    sources = []
    for header, key in CSV_COLUMNS:
        if header == "id":
            sources.append((header, lambda t, first_id: np.arange(first_id, first_id + len(t["frame"]))))
        elif header == "frame":
            sources.append((header, lambda t, first_id: np.asarray(t["frame"], np.int64) + 1))
        elif header == "uncertainty_xy [nm]" and "sigma_x" in table:
            sources.append((header, lambda t, first_id: np.sqrt(0.5 * (np.asarray(t["sigma_x"], float) ** 2
                                                                       + np.asarray(t["sigma_y"], float) ** 2))))
        elif header == "uncertainty_xy [nm]" or key not in table:
            sources.append((header, lambda t, first_id: np.broadcast_to(nan, (len(t["frame"]),))))
        else:
            sources.append((header, lambda t, first_id, key=key: np.asarray(t[key], float)))
    sources += [(header, lambda t, first_id, key=key: np.asarray(t[key], float))
                for header, key in EXTRA_CSV_COLUMNS if key in table]
    return sources


_INTEGER_COLUMNS = ("id", "frame", "detections")


def _write_csv_rows(fh, sources, table: dict[str, np.ndarray], first_id: int) -> None:
    # One C-level % per row, as numpy.savetxt does (4x faster than the csv module's value
    # per value), but on Python numbers from the columns' tolist() and joined into one
    # write per block: savetxt formats a tuple of numpy scalars per row and writes each
    # row apart (100,000 rows of 13 columns: 0.54 s against 0.35 s, the same bytes; on the
    # GPU the CSV is much of localization's wall time, docs/benchmarks/gpu.md). No header
    # holds a comma or a quote, so nothing needs CSV quoting. Written in blocks of rows so
    # that a table of millions of rows is never copied whole.
    line = ",".join("%d" if h in _INTEGER_COLUMNS else "%.6g" for h, _ in sources) + "\n"
    n = len(table["frame"])
    for a in range(0, n, 100_000):
        piece = {k: v[a:a + 100_000] for k, v in table.items()}
        cols = [get(piece, first_id + a) for _, get in sources]
        lists = [np.asarray(c).astype(np.int64).tolist() if h in _INTEGER_COLUMNS
                 else np.where(np.isfinite(c), c, np.nan).astype(np.float64).tolist()
                 for (h, _), c in zip(sources, cols)]
        fh.write("".join([line % values for values in zip(*lists)]))


def write_localizations_csv(table: dict[str, np.ndarray], path: Union[str, Path]) -> None:
    """Write the contract's ThunderSTORM-style CSV atomically (frames 1-based)."""
    sources = _csv_columns(table)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(",".join(h for h, _ in sources) + "\n")
            _write_csv_rows(fh, sources, table, 1)

    atomic_write(path, write)


def _read_csv(path: Path, pixel_size_nm: Optional[float] = None, first_frame: int = 1,
              columns: Optional[dict] = None) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise TableError(f"{path}: not a text file; expected a CSV table") from None
    if not header:
        raise TableError(f"{path}: empty file, expected a CSV header")
    names = [_normalise_header(h) for h in header]
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=float, encoding="utf-8-sig")
    except ValueError as exc:
        raise TableError(f"{path}: could not parse numbers ({exc})") from None
    if data.size == 0:
        data = np.zeros((0, len(names)))
    if data.shape[1] != len(names):
        raise TableError(f"{path}: header has {len(names)} columns but rows have {data.shape[1]}")
    table: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    for i, name in enumerate(names):
        key = _ALIASES.get(name)
        if not key:
            continue
        if ":" in key:
            key, unit = key.split(":")
            factor = _COORD_UNITS[unit]
            if factor is None:
                if pixel_size_nm is None:
                    raise TableError(f"{path}: column {header[i].strip()!r} is in camera pixels; give the pixel size in nm")
                factor = pixel_size_nm
            values = data[:, i] * factor
        else:
            values = data[:, i]
        if key in table:
            continue  # the first of two spellings wins (e.g. "x [nm]" before "x")
        table[key] = values
        used[key] = header[i].strip().strip('"')
    missing = [k for k in ("frame", "x", "y") if k not in table]
    if missing:
        raise TableError(
            f"{path}: missing column(s) {missing}; expected a ThunderSTORM-style header "
            f"('frame', 'x [nm]', 'y [nm]', ...), x_nm / y_nm, or SMLM-challenge ('frame', 'xnano', 'ynano', ...); "
            f"found {header}"
        )
    frames = table["frame"]
    if len(frames):
        if not np.isfinite(frames).all() or (frames != np.round(frames)).any():
            row = int(np.argmax(~np.isfinite(frames) | (frames != np.round(frames))))
            raise TableError(f"{path}: row {row + 1}: frame {float(frames[row]):g} is not a whole number")
        if frames.min() < first_frame:
            row = int(np.argmin(frames))
            raise TableError(
                f"{path}: row {row + 1}: frame {int(frames[row])}, but frames in a CSV table are numbered from "
                f"{first_frame}" + (" (as ThunderSTORM); if this table counts from 0, say so (evaluate: --gt-first-frame 0)"
                                    if first_frame == 1 else "")
            )
    if "z" in table and len(table["z"]) and np.isnan(table["z"]).all():
        del table["z"]  # a 2D table's empty z column (our own writer leaves it NaN): z = 0 below
    for key in ("x", "y", "z"):
        if key in table and len(table[key]) and not np.isfinite(table[key]).all():
            bad = ~np.isfinite(table[key])
            raise TableError(f"{path}: {int(bad.sum())} row(s) have a NaN or infinite {key} "
                             f"(first: row {int(np.argmax(bad)) + 1}); remove them or fix the file")
    table["frame"] = frames.astype(np.int64) - first_frame  # 0-based in memory
    if "uncertainty_xy" in table:
        u = table.pop("uncertainty_xy")
        table.setdefault("sigma_x", u)
        table.setdefault("sigma_y", u)
    n = len(table["frame"])
    table.setdefault("z", np.zeros(n))
    table.setdefault("photons", np.full(n, np.nan))
    table.setdefault("bg", np.full(n, np.nan))
    table.setdefault("prob", np.ones(n))
    if columns is not None:
        columns.update(used)
    return table


def _picasso_pixel_size(path: Path) -> Optional[float]:
    """Pixel size from the Picasso ``.yaml`` sidecar, where one is recorded."""
    import yaml

    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    try:
        for doc in yaml.safe_load_all(sidecar.read_text()):
            if isinstance(doc, dict):
                for key in ("Pixelsize", "Pixel Size", "pixelsize"):
                    if key in doc:
                        return float(doc[key])
    except (yaml.YAMLError, ValueError, TypeError):
        return None
    return None


def _read_training_layout(f, path: Path, pixel_size_nm: Optional[float]) -> dict[str, np.ndarray]:
    """HDF5 training layout: ``positions`` [N, 3] (nm, or px with attribute units=px),
    ``photons`` [N], optional ``frame`` [N] (default 0) and ``background``."""
    pos = np.asarray(f["positions"], float).reshape(-1, 3)
    n = len(pos)
    if f["positions"].attrs.get("units", "nm") == "px":
        if pixel_size_nm is None:
            raise TableError(f"{path}: positions are in pixels; give the pixel size in nm")
        pos = pos.copy()
        pos[:, :2] = (pos[:, :2]) * pixel_size_nm
    bg = np.asarray(f["background"], float) if "background" in f else None
    return {
        "frame": np.asarray(f["frame"], np.int64).reshape(-1) if "frame" in f else np.zeros(n, np.int64),
        "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
        "photons": np.asarray(f["photons"], float).reshape(-1) if "photons" in f else np.full(n, np.nan),
        "bg": np.full(n, float(np.mean(bg)) if bg is not None else np.nan),
        "prob": np.ones(n),
    }


def _read_picasso(path: Path, pixel_size_nm: Optional[float]) -> dict[str, np.ndarray]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TableError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "locs" not in f and "positions" in f:
            return _read_training_layout(f, path, pixel_size_nm)
        if "locs" not in f:
            raise TableError(
                f"{path}: HDF5 file has neither 'locs' (Picasso) nor 'positions' (training layout); found {list(f.keys())}"
            )
        locs = f["locs"][...]
    if pixel_size_nm is None:
        pixel_size_nm = _picasso_pixel_size(path)
    if pixel_size_nm is None:
        raise TableError(f"{path}: Picasso files store camera pixels; give the pixel size in nm")
    names = locs.dtype.names
    n = len(locs)
    get = lambda k, default: np.asarray(locs[k], float) if k in names else default  # noqa: E731
    # Picasso puts pixel centres at integers: x_nm = (x_px + 0.5) * pixel_size.
    table = {
        "frame": np.asarray(locs["frame"], np.int64),
        "x": (get("x", None) + 0.5) * pixel_size_nm,
        "y": (get("y", None) + 0.5) * pixel_size_nm,
        "z": get("z", np.zeros(n)),
        "photons": get("photons", np.full(n, np.nan)),
        "bg": get("bg", np.full(n, np.nan)),
        "prob": get("prob", np.ones(n)),
    }
    if "lpx" in names:
        table["sigma_x"] = get("lpx", None) * pixel_size_nm
        table["sigma_y"] = get("lpy", None) * pixel_size_nm
    return table


PICASSO_DTYPE = [
    ("frame", "u4"), ("x", "f4"), ("y", "f4"), ("photons", "f4"), ("bg", "f4"),
    ("lpx", "f4"), ("lpy", "f4"), ("z", "f4"), ("prob", "f4"),
]


def _picasso_locs(table: dict[str, np.ndarray], pixel_size_nm: float) -> np.ndarray:
    n = len(table["frame"])
    locs = np.zeros(n, dtype=PICASSO_DTYPE)
    locs["frame"] = np.asarray(table["frame"], np.int64)
    locs["x"] = np.asarray(table["x"], float) / pixel_size_nm - 0.5
    locs["y"] = np.asarray(table["y"], float) / pixel_size_nm - 0.5
    locs["photons"] = table.get("photons", np.full(n, np.nan))
    locs["bg"] = table.get("bg", np.full(n, np.nan))
    # Picasso's lpx/lpy are localization precisions in camera pixels.
    lp = np.full(n, 0.1)
    locs["lpx"] = np.asarray(table["sigma_x"]) / pixel_size_nm if "sigma_x" in table else lp
    locs["lpy"] = np.asarray(table["sigma_y"]) / pixel_size_nm if "sigma_y" in table else lp
    locs["z"] = table.get("z", np.zeros(n))
    locs["prob"] = table.get("prob", np.ones(n))
    return locs


def _picasso_info(path: Path, pixel_size_nm: float, shape: tuple[int, int, int], extra_info: Optional[dict]) -> list:
    t, h, w = shape
    return [
        {"Byte Order": "<", "Data Type": "uint16", "File": str(path.with_suffix(".tif").name),
         "Frames": int(t), "Height": int(h), "Width": int(w)},
        {"Generated by": "napari-smlm", "Pixelsize": float(pixel_size_nm), **(extra_info or {})},
    ]


def _extent(locs: np.ndarray) -> tuple[int, int, int]:
    """(frames, height, width) a table spans, for a sidecar without the movie's shape."""
    if not len(locs):
        return 1, 1, 1
    return int(locs["frame"].max()) + 1, int(np.ceil(locs["y"].max() + 1)), int(np.ceil(locs["x"].max() + 1))


def write_picasso_hdf5(
    table: dict[str, np.ndarray], path: Union[str, Path], pixel_size_nm: float,
    movie_shape: Optional[tuple[int, int, int]] = None, extra_info: Optional[dict] = None,
) -> None:
    """Picasso's format: dataset ``locs`` (x, y in camera pixels with pixel centres
    at integers, 0-based frames) and the ``.yaml`` sidecar Picasso Render needs.
    Both files are written as one atomic group: a failure leaves neither half new."""
    with TableWriter(path, pixel_size_nm, movie_shape, extra_info) as writer:
        writer.append(table)


def check_picasso_sidecar(path: Union[str, Path]) -> None:
    """Refuse to write ``X.h5`` when ``X.yaml`` exists and is not a sidecar we wrote
    (a camera YAML, a config): we never overwrite a file we did not write."""
    import yaml

    sidecar = Path(path).with_suffix(".yaml")
    if not sidecar.exists():
        return
    ours = False
    try:
        ours = any(isinstance(doc, dict) and doc.get("Generated by") == "napari-smlm"
                   for doc in yaml.safe_load_all(sidecar.read_text(encoding="utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        ours = False
    if not ours:
        raise TableError(
            f"{path}: its Picasso sidecar {sidecar} would replace an existing file that napari-smlm did not write; "
            f"choose another output name or move {sidecar.name}"
        )


def write_table(table: dict[str, np.ndarray], path: Union[str, Path], pixel_size_nm: Optional[float] = None,
                movie_shape: Optional[tuple[int, int, int]] = None) -> None:
    """Write a table by extension: ``.csv`` (ThunderSTORM style) or ``.h5``/``.hdf5`` (Picasso)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write_localizations_csv(table, path)
    elif suffix in (".h5", ".hdf5"):
        if pixel_size_nm is None:
            raise TableError(f"{path}: Picasso files store camera pixels; the pixel size is needed")
        write_picasso_hdf5(table, path, pixel_size_nm, movie_shape)
    else:
        raise TableError(f"{path}: unknown output format {suffix!r}; expected .csv, .h5 or .hdf5")


class TableWriter(CommitOnSuccess):
    """A localization table written in pieces as they come, so that a long movie's
    table is never whole in memory (``napari-smlm localize`` streams its output).

    By the extension of ``path``, as :func:`write_table`. Pieces go to temporary files
    beside ``path`` (and, for Picasso, its ``.yaml`` sidecar); :meth:`commit` renames
    them into place together, :meth:`abort` removes them — and leaving a ``with``
    block on an exception (an error, a cancel, Ctrl-C) aborts: a file under the final
    name is always whole, an old one unchanged until the new one is. Picasso files
    need the pixel size before the first piece (given here or to :meth:`begin`);
    ``extra_info`` joins their sidecar's second document.
    """

    FLUSH_ROWS = 65536

    def __init__(self, path: Union[str, Path], pixel_size_nm: Optional[float] = None,
                 movie_shape: Optional[tuple[int, int, int]] = None, extra_info: Optional[dict] = None):
        from ..utils import StagedFiles, _is_special, check_writable

        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in (".csv", ".h5", ".hdf5"):
            raise TableError(f"{path}: unknown output format {self.kind!r}; expected .csv, .h5 or .hdf5")
        check_writable(self.path, "output")
        if self.kind != ".csv":
            check_picasso_sidecar(self.path)
        self.pixel_size_nm, self.movie_shape, self.extra_info = pixel_size_nm, movie_shape, extra_info
        self.rows = 0  # written so far
        self._pending: list = []
        self._pending_rows = 0
        self._extent = np.zeros(3)  # what the rows span, for a sidecar without the movie's shape
        self._columns = None
        self._fh = self._h5 = None
        files = [self.path] if self.kind == ".csv" else [self.path, self.path.with_suffix(".yaml")]
        # a device or pipe (a FIFO named x.csv) is written through, as by write_table
        self._through = {f for f in files if _is_special(f)}
        self._staged = StagedFiles([f for f in files if f not in self._through])

    def _file(self, path: Path) -> str:
        return str(path) if path in self._through else self._staged[path]

    def begin(self, pixel_size_nm: float, movie_shape: Optional[tuple[int, int, int]] = None) -> None:
        """The pixel size (and movie shape) once known, before the first piece."""
        self.pixel_size_nm = float(pixel_size_nm)
        if movie_shape is not None:
            self.movie_shape = tuple(int(v) for v in movie_shape)

    def _fail(self, exc: Exception) -> OSError:
        from ..utils import WriteError, _describe

        return WriteError(f"{self.path}: cannot write ({_describe(exc)}); the previous file, if any, is unchanged")

    def append(self, table: dict[str, np.ndarray]) -> None:
        """Write the rows of ``table`` (the canonical columns; x, y in nm). Small pieces
        are gathered up to ``FLUSH_ROWS`` rows first: a batch's few hundred rows
        written one by one cost a call each (1.5 → 1.9 s for 600,000 rows, measured)."""
        self._pending.append(table)
        self._pending_rows += len(table["frame"])
        if self._pending_rows >= self.FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        table = pending[0] if len(pending) == 1 else {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        try:
            if self.kind == ".csv":
                if self._fh is None:
                    self._columns = _csv_columns(table)
                    self._fh = open(self._file(self.path), "w", newline="")
                    self._fh.write(",".join(h for h, _ in self._columns) + "\n")
                _write_csv_rows(self._fh, self._columns, table, self.rows + 1)
            else:
                import h5py

                if self.pixel_size_nm is None:
                    raise TableError(f"{self.path}: Picasso files store camera pixels; the pixel size is needed")
                locs = _picasso_locs(table, self.pixel_size_nm)
                if self._h5 is None:
                    self._h5 = h5py.File(self._file(self.path), "w")
                    self._h5.create_dataset("locs", shape=(0,), maxshape=(None,), dtype=PICASSO_DTYPE,
                                            chunks=(65536,))
                dataset = self._h5["locs"]
                dataset.resize((self.rows + len(locs),))
                dataset[self.rows:] = locs
                self._extent = np.maximum(self._extent, _extent(locs))
        except (TableError, KeyError):
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        self.rows += len(table["frame"])

    def commit(self) -> None:
        """Close the files and put them in place (a table with no rows has its header)."""
        try:
            self._flush()
            if self.rows == 0 and self._fh is None and self._h5 is None:
                self.append(empty_table())
                self._flush()
            if self._fh is not None:
                self._fh.close()
            if self._h5 is not None:
                import yaml

                self._h5.close()
                shape = self.movie_shape if self.movie_shape is not None else tuple(int(v) for v in self._extent)
                Path(self._file(self.path.with_suffix(".yaml"))).write_text(
                    yaml.safe_dump_all(_picasso_info(self.path, self.pixel_size_nm, shape, self.extra_info), sort_keys=False))
        except (TableError, KeyError):
            self.abort()
            raise
        except Exception as exc:
            self.abort()
            raise self._fail(exc) from exc
        self._staged.commit()

    def abort(self) -> None:
        for handle in (self._fh, self._h5):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # the files are being thrown away; closing is best effort
                    pass
        self._fh = self._h5 = None
        self._staged.abort()


def read_table(path: Union[str, Path], pixel_size_nm: Optional[float] = None, first_frame: int = 1,
               columns: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Read a localization / emitter table (CSV or Picasso HDF5) into the canonical dict.

    ``first_frame``: the number of the first frame in a CSV table (1, as
    ThunderSTORM; 0 for tables that count from 0). ``columns``, when given, is filled
    with the header each canonical column was read from (CSV), to tell the user.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, pixel_size_nm, first_frame, columns)
    if suffix in (".h5", ".hdf5"):
        return _read_picasso(path, pixel_size_nm)
    raise TableError(f"{path}: unknown table format {suffix!r}; expected .csv, .h5 or .hdf5")

"""Localization and emitter tables: ThunderSTORM-style CSV, SMLM-challenge CSV,
Picasso HDF5.

In memory a table is a ``dict`` of 1-D numpy arrays with the canonical columns
``frame`` (0-based), ``x, y, z`` (nm), ``photons``, ``bg`` (photons per pixel),
``prob`` and, where known, ``sigma_x, sigma_y, sigma_z`` (nm) and
``sigma_photons``. Frames are 1-based in CSV files (as ThunderSTORM).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..utils import atomic_write

__all__ = ["TableError", "write_localizations_csv", "write_picasso_hdf5", "write_table", "read_table", "empty_table"]

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
EXTRA_CSV_COLUMNS = [("sigma_x [nm]", "sigma_x"), ("sigma_y [nm]", "sigma_y"), ("sigma_photons [photon]", "sigma_photons")]

# Header aliases understood on reading (lower-case, quotes stripped) -> canonical column.
_ALIASES = {
    "frame": "frame", "x [nm]": "x", "y [nm]": "y", "z [nm]": "z",
    "intensity [photon]": "photons", "offset [photon]": "bg", "bkgstd [photon]": None,
    "uncertainty_xy [nm]": "uncertainty_xy", "uncertainty [nm]": "uncertainty_xy",
    "uncertainty_z [nm]": "sigma_z", "prob": "prob",
    "sigma_x [nm]": "sigma_x", "sigma_y [nm]": "sigma_y", "sigma_photons [photon]": "sigma_photons",
    # SMLM challenge 2016 ground truth
    "xnano": "x", "ynano": "y", "znano": "z", "intensity": "photons",
}


class TableError(ValueError):
    """A table file is missing, unreadable or lacks a required column."""


def empty_table() -> dict[str, np.ndarray]:
    return {"frame": np.zeros(0, np.int64), **{k: np.zeros(0) for k in ("x", "y", "z", "photons", "bg", "prob")}}


def write_localizations_csv(table: dict[str, np.ndarray], path: Union[str, Path]) -> None:
    """Write the contract's ThunderSTORM-style CSV atomically (frames 1-based)."""
    n = len(table["frame"])
    cols = {}
    for header, key in CSV_COLUMNS:
        if header == "id":
            cols[header] = np.arange(1, n + 1)
        elif header == "frame":
            cols[header] = np.asarray(table["frame"], np.int64) + 1
        elif header == "uncertainty_xy [nm]":
            if "sigma_x" in table:
                cols[header] = np.sqrt(0.5 * (np.asarray(table["sigma_x"]) ** 2 + np.asarray(table["sigma_y"]) ** 2))
            else:
                cols[header] = np.full(n, np.nan)
        else:
            cols[header] = np.asarray(table.get(key, np.full(n, np.nan)), float)
    for header, key in EXTRA_CSV_COLUMNS:
        if key in table:
            cols[header] = np.asarray(table[key], float)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(list(cols))
            ints = {"id", "frame"}
            rows = zip(*[
                (map(str, v) if h in ints else (f"{x:.6g}" if np.isfinite(x) else "nan" for x in v))
                for h, v in cols.items()
            ])
            w.writerows(rows)

    atomic_write(path, write)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise TableError(f"{path}: empty file, expected a CSV header")
    names = [h.strip().strip('"').lower() for h in header]
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=float)
    except ValueError as exc:
        raise TableError(f"{path}: could not parse numbers ({exc})") from None
    if data.size == 0:
        data = np.zeros((0, len(names)))
    if data.shape[1] != len(names):
        raise TableError(f"{path}: header has {len(names)} columns but rows have {data.shape[1]}")
    table: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        key = _ALIASES.get(name)
        if key:
            table[key] = data[:, i]
    missing = [k for k in ("frame", "x", "y") if k not in table]
    if missing:
        raise TableError(
            f"{path}: missing column(s) {missing}; expected a ThunderSTORM-style header "
            f"('frame', 'x [nm]', 'y [nm]', ...) or SMLM-challenge ('frame', 'xnano', 'ynano', ...); found {header}"
        )
    table["frame"] = table["frame"].astype(np.int64) - 1  # 1-based in files
    if "uncertainty_xy" in table:
        u = table.pop("uncertainty_xy")
        table.setdefault("sigma_x", u)
        table.setdefault("sigma_y", u)
    n = len(table["frame"])
    table.setdefault("z", np.zeros(n))
    table.setdefault("photons", np.full(n, np.nan))
    table.setdefault("bg", np.full(n, np.nan))
    table.setdefault("prob", np.ones(n))
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


def write_picasso_hdf5(
    table: dict[str, np.ndarray], path: Union[str, Path], pixel_size_nm: float,
    movie_shape: Optional[tuple[int, int, int]] = None, extra_info: Optional[dict] = None,
) -> None:
    """Picasso's format: dataset ``locs`` (x, y in camera pixels with pixel centres
    at integers, 0-based frames) and the ``.yaml`` sidecar Picasso Render needs.
    Both files are written atomically (the sidecar first)."""
    import h5py
    import yaml

    path = Path(path)
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
    t, h, w = movie_shape if movie_shape is not None else (
        int(locs["frame"].max()) + 1 if n else 1,
        int(np.ceil(locs["y"].max() + 1)) if n else 1,
        int(np.ceil(locs["x"].max() + 1)) if n else 1,
    )
    info = [
        {"Byte Order": "<", "Data Type": "uint16", "File": str(path.with_suffix(".tif").name),
         "Frames": int(t), "Height": int(h), "Width": int(w)},
        {"Generated by": "napari-smlm", "Pixelsize": float(pixel_size_nm), **(extra_info or {})},
    ]
    atomic_write(path.with_suffix(".yaml"), lambda tmp: Path(tmp).write_text(yaml.safe_dump_all(info, sort_keys=False)))

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("locs", data=locs)

    atomic_write(path, write)


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


def read_table(path: Union[str, Path], pixel_size_nm: Optional[float] = None) -> dict[str, np.ndarray]:
    """Read a localization / emitter table (CSV or Picasso HDF5) into the canonical dict."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in (".h5", ".hdf5"):
        return _read_picasso(path, pixel_size_nm)
    raise TableError(f"{path}: unknown table format {suffix!r}; expected .csv, .h5 or .hdf5")

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

__all__ = ["TableError", "write_localizations_csv", "read_table", "empty_table"]

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


def _read_picasso(path: Path, pixel_size_nm: Optional[float]) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        if "locs" not in f:
            raise TableError(f"{path}: HDF5 file has no 'locs' dataset (Picasso format); found {list(f.keys())}")
        locs = f["locs"][...]
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

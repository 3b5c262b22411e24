"""Drift-corrected copies of localization files, every column kept, and drift tables.

A corrected file is the input file with only its position columns changed: a CSV keeps
its header, its columns and their units (a column in µm or camera pixels is corrected in
µm or pixels); a Picasso HDF5 keeps every field of ``locs`` (and its ``.yaml`` sidecar,
with one entry added). The drift trajectory is written beside it as ``<stem>_drift.csv``
(``frame`` from 1, ``x [nm]``, ``y [nm]``[, ``z [nm]``]). All files of one correction are
written as one atomic group: a failure leaves none of them new.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..io.tables import TableError, _picasso_pixel_size, check_picasso_sidecar, read_table
from ..utils import atomic_write_group
from .drift import drift_at

__all__ = ["drift_path", "write_corrected", "read_drift", "drift_to_csv_rows"]

PathLike = Union[str, Path]


def drift_path(out: PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + "_drift.csv")


def write_corrected(src: PathLike, out: PathLike, drift: dict, pixel_size_nm: Optional[float] = None,
                    undo: bool = False, info: Optional[dict] = None) -> list[Path]:
    """Write ``src`` with ``drift`` subtracted (added back with ``undo``) to ``out`` and
    the trajectory to :func:`drift_path` (``out``); returns the paths written."""
    src, out = Path(src), Path(out)
    if src.suffix.lower() != out.suffix.lower() and not {src.suffix.lower(), out.suffix.lower()} <= {".h5", ".hdf5"}:
        raise TableError(f"--out {out}: the corrected table keeps the input's format ({src.suffix}); name it *{src.suffix}")
    if out.resolve() == src.resolve():
        raise TableError(f"--out {out}: is the input file; write the corrected table to a new file")
    sign = -1.0 if not undo else 1.0
    writes = {drift_path(out): lambda tmp: _write_drift_csv(tmp, drift)}
    if src.suffix.lower() == ".csv":
        writes[out] = _csv_writer(src, drift, sign, pixel_size_nm)
    else:
        px = pixel_size_nm or _picasso_pixel_size(src)
        if px is None:
            raise TableError(f"{src}: Picasso files store camera pixels; give the pixel size in nm (--pixel-size)")
        check_picasso_sidecar(out)
        writes.update(_hdf5_writers(src, out, drift, sign, px, info or {}))
    atomic_write_group(writes)
    return list(writes)


def drift_to_csv_rows(drift: dict) -> tuple[list[str], np.ndarray]:
    keys = [k for k in ("x", "y", "z") if k in drift]
    header = ["frame"] + [f"{k} [nm]" for k in keys]
    rows = np.column_stack([np.asarray(drift["frame"]) + 1] + [np.asarray(drift[k], float) for k in keys])
    return header, rows


def _write_drift_csv(path: str, drift: dict) -> None:
    header, rows = drift_to_csv_rows(drift)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([[str(int(r[0]))] + [f"{v:.4f}" for v in r[1:]] for r in rows])


def read_drift(path: PathLike) -> dict:
    """A drift table written by :func:`write_corrected` (frames from 1 in the file)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
        header = [h.strip() for h in rows[0]]
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], float).reshape(-1, len(header))
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: not a drift table ({exc})") from None
    if not {"frame", "x [nm]", "y [nm]"} <= set(header) or len(data) == 0:
        raise TableError(f"{path}: a drift table needs the columns frame, x [nm], y [nm] and rows; found {header}")
    col = {h: data[:, i] for i, h in enumerate(header)}
    out = {"frame": col["frame"].astype(int) - 1, "x": col["x [nm]"], "y": col["y [nm]"]}
    if "z [nm]" in col:
        out["z"] = col["z [nm]"]
    return out


def _csv_writer(src: Path, drift: dict, sign: float, pixel_size_nm: Optional[float]):
    """The CSV with its x/y/z columns corrected in their own units. The canonical
    reader says which header holds each axis; the unit (nm, µm, pixels, with or
    without an offset) is recovered by a linear fit of the raw column to nm."""
    columns: dict = {}
    table = read_table(src, pixel_size_nm=pixel_size_nm, columns=columns)
    with open(src, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    body = rows[1:]
    frames = np.asarray(table["frame"]).astype(int)
    stripped = [h.strip().strip('"') for h in header]
    for key in ("x", "y", "z"):
        name = columns.get(key)
        if key not in drift or name is None or name not in stripped:
            continue
        col = stripped.index(name)
        raw = np.array([float(r[col]) for r in body])
        nm = np.asarray(table[key], float)
        slope = _slope(raw, nm)
        new = raw + sign * drift_at(drift, frames, key) * slope
        for r, v in zip(body, new):
            r[col] = f"{v:.6g}"

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(body)
    return write


def _slope(raw: np.ndarray, nm: np.ndarray) -> float:
    """Raw units per nm of a column (1 for nm, 0.001 for µm, 1/pixel for pixels)."""
    ok = np.isfinite(raw) & np.isfinite(nm)
    if ok.sum() >= 2 and np.ptp(nm[ok]) > 0:
        return float(np.polyfit(nm[ok], raw[ok], 1)[0])
    return float(raw[ok][0] / nm[ok][0]) if ok.any() and nm[ok][0] else 1.0


def _hdf5_writers(src: Path, out: Path, drift: dict, sign: float, px: float, info: dict) -> dict:
    import h5py
    import yaml

    with h5py.File(src, "r") as f:
        if "locs" not in f:
            raise TableError(f"{src}: no 'locs' dataset: drift correction keeps Picasso files only")
        locs = f["locs"][...]
    frames = np.asarray(locs["frame"]).astype(int)
    for key, scale in (("x", 1.0 / px), ("y", 1.0 / px), ("z", 1.0)):  # Picasso: x, y in pixels, z in nm
        if key in drift and key in locs.dtype.names:
            locs[key] = locs[key] + sign * drift_at(drift, frames, key) * scale
    sidecar = src.with_suffix(".yaml")
    docs = list(yaml.safe_load_all(sidecar.read_text())) if sidecar.is_file() else [{"Frames": int(frames.max()) + 1}]
    docs.append({"Generated by": "napari-smlm drift", "Pixelsize": float(px), **info})

    def write_h5(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("locs", data=locs)

    return {out.with_suffix(".yaml"): lambda tmp: Path(tmp).write_text(yaml.safe_dump_all(docs, sort_keys=False)),
            out: write_h5}

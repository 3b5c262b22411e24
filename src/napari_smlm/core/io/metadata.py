"""Camera settings and pixel size from a TIFF's own metadata.

Microscope software writes some of what localization needs into the file: OME-XML
(``Pixels/@PhysicalSizeX``, ``Detector/@Type``, ``DetectorSettings/@Gain`` and
``@Offset``), Micro-Manager (``PixelSizeUm``, the camera adapter's EM gain), ImageJ
(a calibrated pixel width) and a ``napari_smlm`` entry in tifffile's JSON description (the
whole camera; ``simulate`` does not write it yet). Whatever is
found is returned with where it came from; the rest of the camera is estimated from
the movie (:func:`napari_smlm.core.camera.estimate_camera`).
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional, Union

__all__ = ["read_movie_metadata"]

_UNIT_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3, "\\u00b5m": 1e3, "mm": 1e6, "m": 1e9}


def read_movie_metadata(path: Union[str, Path], channel: Optional[int] = None) -> dict:
    """What the file says about its camera and pixel size.

    Keys, each only when the file states it: ``kind`` ('emccd' or 'scmos'),
    ``em_gain``, ``baseline`` (ADU), ``e_per_adu``, ``qe``, ``read_noise_e``,
    ``pixel_size_nm``, and ``source`` (the kinds of metadata they came from, for the
    user). Unreadable or absent metadata gives ``{}``: it is a hint, never an error.
    ``channel`` (0-based): in an OME file with channels, that channel's detector and
    its settings (each channel may have a camera of its own); else the first's.
    """
    import tifffile

    path = Path(path)
    if path.is_dir() or path.suffix.lower() not in (".tif", ".tiff"):
        return {}
    found: dict = {}
    sources: list[str] = []
    quiet = logging.getLogger("tifffile")  # it logs what it cannot parse in foreign metadata
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            for name, reader in (("napari-smlm", _ours), ("OME-XML", _ome), ("Micro-Manager", _micromanager),
                                 ("ImageJ", _imagej)):
                try:
                    values = reader(tif, page, channel) if reader is _ome else reader(tif, page)
                except Exception:  # noqa: BLE001 - foreign metadata of every quality: a hint, never an error
                    values = {}
                values = {k: v for k, v in values.items() if k not in found and v is not None}
                if values:
                    found.update(values)
                    sources.append(name)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the movie reader, not here
        return {}
    finally:
        quiet.setLevel(level)
    if sources:
        found["source"] = ", ".join(sources)
    return found


def _ours(tif, page) -> dict:
    meta = tif.shaped_metadata[0] if getattr(tif, "shaped_metadata", None) else None
    ours = (meta or {}).get("napari_smlm") or {}
    out = dict(ours.get("camera") or {})
    if ours.get("pixel_size_nm"):
        out["pixel_size_nm"] = float(ours["pixel_size_nm"])
    return {k: out[k] for k in ("kind", "em_gain", "baseline", "e_per_adu", "qe", "read_noise_e", "pixel_size_nm") if k in out}


def _ome(tif, page, channel: Optional[int] = None) -> dict:
    xml = tif.ome_metadata if tif.is_ome else None
    if not xml:
        return {}
    root = ET.fromstring(xml)

    def find(tag):
        return [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == tag]

    out: dict = {}
    pixels = find("Pixels")
    if pixels and pixels[0].get("PhysicalSizeX"):
        unit = pixels[0].get("PhysicalSizeXUnit", "µm")
        if unit.lower() in _UNIT_NM:
            out["pixel_size_nm"] = float(pixels[0].get("PhysicalSizeX")) * _UNIT_NM[unit.lower()]
    detectors = find("Detector")
    settings = find("DetectorSettings")
    channels = [c for c in (pixels[0] if pixels else ()) if c.tag.rsplit("}", 1)[-1] == "Channel"]
    if channel is not None and channel < len(channels):  # that channel's camera, where it names one
        own = [e for e in channels[channel] if e.tag.rsplit("}", 1)[-1] == "DetectorSettings"]
        settings = own or settings
        named = [d for d in detectors if own and d.get("ID") == own[0].get("ID")]
        detectors = named or detectors
    kind = (detectors[0].get("Type") or "").upper() if detectors else ""
    if kind == "EMCCD":
        out["kind"] = "emccd"
    elif kind in ("CMOS", "CCD"):
        out["kind"] = "scmos"
    if settings:
        s = settings[0]
        if s.get("Gain") and out.get("kind") == "emccd":  # OME's Gain: the EM gain of an EMCCD
            out["em_gain"] = float(s.get("Gain"))
        if s.get("Offset"):
            out["baseline"] = float(s.get("Offset"))
    return out


def _micromanager(tif, page) -> dict:
    meta = {}
    if getattr(tif, "is_micromanager", False) and tif.micromanager_metadata:
        summary = tif.micromanager_metadata.get("Summary") or {}
        meta.update(summary if isinstance(summary, dict) else {})
    tag = page.tags.get(51123)  # MicroManagerMetadata: per-frame JSON
    if tag is not None:
        value = tag.value
        meta.update(json.loads(value) if isinstance(value, (str, bytes)) else dict(value))
    if not meta:
        return {}
    out: dict = {}
    if meta.get("PixelSizeUm"):
        px = float(meta["PixelSizeUm"]) * 1e3
        if px > 0:
            out["pixel_size_nm"] = px
    for key, value in meta.items():
        # camera adapters name it "<Camera>-EMGain" (Andor: "<Camera>-Gain" with an EM amplifier)
        if re.search(r"(^|-)EM ?Gain$", str(key), re.IGNORECASE):
            try:
                out["em_gain"] = float(value)
                out["kind"] = "emccd"
            except (TypeError, ValueError):
                pass
    return out


def _imagej(tif, page) -> dict:
    meta = tif.imagej_metadata if tif.is_imagej else None
    if not meta:
        return {}
    unit = str(meta.get("unit", "")).lower()
    res = page.tags.get("XResolution")
    if unit not in _UNIT_NM or res is None:
        return {}
    num, den = res.value
    if not num or not den:
        return {}
    return {"pixel_size_nm": den / num * _UNIT_NM[unit]}  # XResolution is pixels per unit

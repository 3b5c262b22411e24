"""napari reader (movies, localization tables) and writer (Points layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_PIXEL_NM = 100.0


def get_reader(path):
    """Return a reader for .tif/.tiff movies and .csv/.h5/.hdf5 localization tables
    we recognise, or None (napari then tries other readers)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _read_movie
    if suffix in (".csv", ".h5", ".hdf5"):
        from .core.io import read_table
        from .core.io.tables import TableError

        try:
            read_table(path, pixel_size_nm=DEFAULT_PIXEL_NM)
        except (TableError, OSError, ValueError):
            return None
        return _read_locs
    return None


def _read_movie(path):
    """The movie as an image layer; what its file states about the camera and pixel
    size rides along in the layer's metadata (``camera_metadata``) for the widgets."""
    from .core.io import open_movie
    from .core.io.metadata import read_movie_metadata

    from .core.io.movie import MovieError

    try:
        movies = [open_movie(path)]
    except MovieError:  # a file with channels: one layer each (napari's way with channels)
        first = open_movie(path, channel=0)
        if first.channels == 1:  # refused for another reason: that one
            raise
        movies = [first] + [open_movie(path, channel=c) for c in range(1, first.channels)]
    layers = []
    for movie in movies:
        data = movie._data if getattr(movie, "_data", None) is not None else movie[:]  # memory-mapped where possible
        meta = {"source_path": str(path), "camera_metadata": read_movie_metadata(path, channel=movie.channel)}
        name = Path(path).stem
        if movie.channels > 1:
            meta["channel"] = movie.channel
            name = f"{name} channel {movie.channel + 1}"
        labels = {"axis_labels": ("frame", "y", "x")} if data.ndim == 3 else {}  # the slider says "frame"
        layers.append((data, {"name": name, "colormap": "gray", "metadata": meta, **labels}, "image"))
    return layers


def _read_locs(path):
    from ._layers import color_kwargs, table_to_points, z_varies
    from .core.io import read_table
    from .core.io.tables import _picasso_pixel_size

    p = Path(path)
    px = (_picasso_pixel_size(p) if p.suffix.lower() != ".csv" else None) or DEFAULT_PIXEL_NM
    table = read_table(p, pixel_size_nm=px)
    data, features = table_to_points(table, px)
    # 3D localizations open coloured by z (as Localize shows them), 2D ones by probability.
    if z_varies(features):
        colour = color_kwargs(features, "z")
    else:
        colour = {"face_color": "prob" if "prob" in features else "white", "face_colormap": "viridis"}
    return [(data, {"name": p.stem, "features": features, "size": 1.2, **colour, "border_width": 0,
                    "out_of_slice_display": False,
                    "metadata": {"pixel_size_nm": px, "napari_smlm": "localizations"}}, "points")]


def write_points(path: str, data, meta: dict) -> list[str]:
    """Write a Points layer to .csv (ThunderSTORM style) or .h5 (Picasso), keeping
    every feature column; only the points shown (threshold sliders) are written."""
    from ._layers import points_to_table
    from .core.io import write_table

    data = np.asarray(data)
    shown = np.asarray(meta.get("shown", np.ones(len(data), bool)), bool)
    features = meta.get("features")
    if features is not None and hasattr(features, "to_dict"):
        features = {k: np.asarray(v) for k, v in features.items()}
    features = {k: np.asarray(v)[shown] for k, v in (features or {}).items()}
    px = float((meta.get("metadata") or {}).get("pixel_size_nm", DEFAULT_PIXEL_NM))
    table = points_to_table(data[shown], features, px)
    write_table(table, path, pixel_size_nm=px)
    return [path]

"""File formats: movies (TIFF) and localization / emitter tables."""

from .movie import Movie, MovieError, open_movie, write_movie
from .tables import TableError, empty_table, read_table, write_localizations_csv, write_picasso_hdf5, write_table

__all__ = [
    "Movie", "MovieError", "open_movie", "write_movie", "TableError", "empty_table", "read_table",
    "write_localizations_csv", "write_picasso_hdf5", "write_table",
]

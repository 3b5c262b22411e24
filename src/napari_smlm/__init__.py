"""napari-smlm: deep-learning single-molecule localization microscopy in napari."""

__version__ = "0.1.0"

"""Inference: chunked runner over movies and post-processing of network maps."""

from .postprocess import filter_table, maps_to_candidates, non_maximum_suppression, select_rows, spatial_integration
from .runner import BUNDLED_MODELS, Infer, InferenceCancelled, LocalizationModel, resolve_model_path

__all__ = [
    "filter_table", "maps_to_candidates", "non_maximum_suppression", "select_rows", "spatial_integration",
    "BUNDLED_MODELS", "Infer", "InferenceCancelled", "LocalizationModel", "resolve_model_path",
]

"""Inference: post-processing of network maps into localizations."""

from .postprocess import maps_to_candidates, spatial_integration

__all__ = ["maps_to_candidates", "spatial_integration"]

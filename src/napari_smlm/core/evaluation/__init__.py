"""Evaluation of localizations against ground truth."""

from .matching import MatchResult, match, match_frame, metrics_from_match

__all__ = ["MatchResult", "match", "match_frame", "metrics_from_match"]

"""Evaluation of localizations against ground truth."""

from .matching import MatchResult, match, match_frame, metrics_from_match
from .metrics import efficiency, evaluate, precision_recall_curve, save_plots

__all__ = ["MatchResult", "match", "match_frame", "metrics_from_match", "efficiency", "evaluate", "precision_recall_curve", "save_plots"]

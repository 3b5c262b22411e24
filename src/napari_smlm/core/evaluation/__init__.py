"""Evaluation of localizations against ground truth."""

from .matching import MatchResult, match, match_frame, metrics_from_match
from .metrics import EvaluationError, check_comparable, efficiency, evaluate, precision_recall_curve, save_plots

__all__ = [
    "MatchResult", "match", "match_frame", "metrics_from_match", "efficiency", "evaluate", "precision_recall_curve",
    "save_plots", "EvaluationError", "check_comparable",
]

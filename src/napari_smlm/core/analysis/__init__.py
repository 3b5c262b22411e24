"""After localization: drift correction, merging of repeated localizations, resolution."""

from .drift import METHODS, apply_drift, drift_aim, drift_at, drift_fiducials, drift_rcc, estimate_drift

__all__ = ["METHODS", "apply_drift", "drift_aim", "drift_at", "drift_fiducials", "drift_rcc", "estimate_drift"]

"""napari dock widgets (thin: they call napari_smlm.core)."""

from .calibrate import CalibrateWidget
from .drift import DriftWidget
from .evaluate import EvaluateWidget
from .localize import LocalizeWidget
from .render import RenderWidget
from .simulate import SimulateWidget
from .train import TrainWidget

__all__ = ["CalibrateWidget", "DriftWidget", "EvaluateWidget", "LocalizeWidget", "RenderWidget", "SimulateWidget", "TrainWidget"]

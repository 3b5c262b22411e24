"""napari-smlm core: simulation, models, losses, training, inference, evaluation.

Nothing in here imports Qt or napari, so it runs headless: in the CLI, in tests
and under ``torchrun``.
"""

from .camera import Camera
from .config import Config, ConfigError, load_config

__all__ = ["Camera", "Config", "ConfigError", "load_config"]

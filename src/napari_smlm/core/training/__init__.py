"""Training: Trainer, callbacks, checkpoints, data, optimizer/scheduler factories."""

from .callbacks import Callback, PrintProgress
from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from .trainer import Trainer, TrainingError, existing_run, resolve_device, scale_input

__all__ = [
    "Callback", "PrintProgress", "CheckpointError", "load_checkpoint", "model_from_checkpoint", "save_checkpoint",
    "Trainer", "TrainingError", "existing_run", "resolve_device", "scale_input",
]

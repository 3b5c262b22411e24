"""Checkpoints: one ``.pt`` of tensors and plain containers, written atomically,
loaded with ``torch.load(weights_only=True)`` (no code from the file is executed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch

from ..utils import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write"]

CHECKPOINT_FORMAT = 1
_REQUIRED = ("format_version", "architecture", "model_kwargs", "state_dict", "epoch", "step", "inference")


class CheckpointError(ValueError):
    """A file is not a napari-smlm checkpoint, or not one that fits the request."""


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> None:
    state = {"format_version": CHECKPOINT_FORMAT, **state}
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Union[str, Path], architecture: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint on CPU.

    Raises :class:`CheckpointError` with the file name when the file is missing,
    is not a torch file, holds anything but tensors and plain containers, is not a
    napari-smlm checkpoint, or (when ``architecture`` is given) holds another
    architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files (IndexError for text, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a napari-smlm checkpoint (cannot be read safely: {first})") from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        have = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a napari-smlm checkpoint (expected keys {list(_REQUIRED)}, found {have})")
    if state["format_version"] > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is newer than this napari-smlm "
            f"understands ({CHECKPOINT_FORMAT}); update napari-smlm"
        )
    if architecture is not None and state["architecture"] != architecture:
        raise CheckpointError(
            f"{path}: checkpoint holds architecture {state['architecture']!r}, but the config asks for {architecture!r}"
        )
    return state


def model_from_checkpoint(state: dict[str, Any]):
    """Rebuild the model of a loaded checkpoint with its weights."""
    from ..models import build_model

    model = build_model(state["architecture"], **state["model_kwargs"])
    model.load_state_dict(state["state_dict"])
    return model

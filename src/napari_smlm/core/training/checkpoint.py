"""Checkpoints: one ``.pt`` of tensors and plain containers, written atomically,
loaded with ``torch.load(weights_only=True)`` (no code from the file is executed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch

from ..utils import atomic_write, atomic_write_group

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "atomic_write", "check_finite_weights",
    "model_from_checkpoint", "load_weights",
]

CHECKPOINT_FORMAT = 1
_REQUIRED = ("format_version", "architecture", "model_kwargs", "state_dict", "epoch", "step", "inference")


class CheckpointError(ValueError):
    """A file is not a napari-smlm checkpoint, or not one that fits the request."""


def save_checkpoint(state: dict[str, Any], path: Union[str, Path], *more_paths: Union[str, Path]) -> None:
    """Write ``state`` to ``path`` (and to ``more_paths``) atomically, as one group:
    a failure (a full disk) leaves every one of them as it was."""
    state = {"format_version": CHECKPOINT_FORMAT, **state}
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    atomic_write_group({p: (lambda tmp: torch.save(state, tmp)) for p in (path, *more_paths)})


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
        raise CheckpointError(f"{path}: not a napari-smlm checkpoint ({_load_failure(exc)})") from None
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


def _load_failure(exc: BaseException) -> str:
    """Why torch.load refused a file, in our words. PyTorch's own message for
    ``weights_only`` suggests loading with ``weights_only=False``, which would run
    code from the file: that advice must never reach a user."""
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text or "GLOBAL" in text:
        import re

        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"cannot be read safely: it holds Python objects{what} besides tensors and plain containers; "
                f"such files are never "
                f"loaded, and nothing in it was run")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return f"cannot be read as a PyTorch file: {first}"


def check_finite_weights(state: dict[str, Any], path: Union[str, Path]) -> None:
    """NaN or infinite weights give empty tables, not errors: refuse them on loading."""
    bad = [k for k, v in state["state_dict"].items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"{path}: the weights hold NaN or infinite values ({bad[0]}{more}); "
                              f"the training that wrote it diverged; use an earlier checkpoint (best.pt)")


def model_from_checkpoint(state: dict[str, Any], path: Union[str, Path] = "checkpoint"):
    """Rebuild the model of a loaded checkpoint with its weights; a mismatch is
    summarised (missing, unexpected and mis-shaped tensors) in one line."""
    from ..models import build_model

    try:
        model = build_model(state["architecture"], **dict(state["model_kwargs"]))
    except (ValueError, TypeError, KeyError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: cannot rebuild architecture {state['architecture']!r} with "
                              f"{dict(state['model_kwargs'])} ({why})") from None
    load_weights(model, state, path)
    return model


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: Union[str, Path] = "checkpoint") -> None:
    """Put a checkpoint's weights into ``model``: finite, and every tensor where the
    model expects it (a mismatch is summarised in one line, not PyTorch's page)."""
    sd = state["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: state_dict is {type(sd).__name__}, expected a mapping of tensors")
    check_finite_weights(state, path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} (model: {tuple(own[k].shape)})" for k in own
              if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise CheckpointError(f"{path}: the weights do not fit architecture {state['architecture']!r}: "
                              f"{'; '.join(parts)} tensors; the file is damaged or from another version")
    model.load_state_dict(sd)

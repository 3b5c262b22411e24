"""Make an inference-only copy of a checkpoint (for bundling in the package).

    python -m napari_smlm.core.inference.bundle RUN/best.pt src/napari_smlm/models/default_2d.pt

Drops optimizer, scheduler, scaler and RNG state (a few MB less); keeps the
weights, the architecture, everything inference needs, the config and the
metric history (how it was trained). The result is still a checkpoint of the
documented format, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import sys

import torch

from ..training.checkpoint import load_checkpoint, save_checkpoint


def bundle(src: str, dst: str) -> dict:
    state = load_checkpoint(src)
    slim = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng", "loss_state")}
    slim["state_dict"] = {k: v.detach().clone().contiguous() for k, v in state["state_dict"].items()}
    slim.pop("format_version", None)
    save_checkpoint(slim, dst)
    return slim


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m napari_smlm.core.inference.bundle SRC.pt DST.pt")
    s = bundle(sys.argv[1], sys.argv[2])
    n = sum(v.numel() for v in s["state_dict"].values())
    print(f"wrote {sys.argv[2]}: {s['architecture']}, {n:,} parameters, epoch {s['epoch']}, step {s['step']}, "
          f"best {s.get('monitor', 'metric')} {s.get('best_metric', float('nan')):.4g}; torch {torch.__version__}")

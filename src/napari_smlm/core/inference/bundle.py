"""Make an inference-only copy of a checkpoint (for bundling in the package).

    python -m napari_smlm.core.inference.bundle RUN/best.pt src/napari_smlm/models/default_2d.pt [--tune-threshold]

Drops optimizer, scheduler, scaler and RNG state (a few MB less); keeps the
weights, the architecture, everything inference needs, the config and the
metric history (how it was trained). The result is still a checkpoint of the
documented format, loadable with ``weights_only=True``.

``--tune-threshold`` sets the detection threshold stored for inference from the
training config's own fixed simulated validation set (not from any benchmark movie):
the highest threshold within one standard error of the best Jaccard averaged over
density classes (see ``tune_threshold``).
"""

from __future__ import annotations

import sys

import torch

from ..training.checkpoint import load_checkpoint, save_checkpoint


# Validation windows are scored in these classes of their true density (molecules/µm²), and
# the classes' Jaccards averaged: pooled, the dense windows hold most of the molecules and
# the threshold would be tuned for them, while most users' fields are sparse, where every
# false positive shows.
DENSITY_CLASSES = (0.0, 0.5, 1.0, float("inf"))


def tune_threshold(state: dict, thresholds=None) -> tuple[float, list[tuple[float, float, float]]]:
    """The detection threshold for inference, from the config's fixed validation set.

    Each threshold gets the mean Jaccard over the density classes (``DENSITY_CLASSES``)
    and its standard error (binomial, per class). Returned: the highest threshold whose
    score is within one standard error of the best one's (the one-standard-error rule:
    where the validation set cannot tell thresholds apart, fewer false positives), and
    ``(threshold, score, standard error)`` for every threshold tried.
    """
    import numpy as np

    from ..config import Config, from_dict
    from ..evaluation import match, metrics_from_match
    from ..training.checkpoint import model_from_checkpoint
    from ..training.data import simulated_validation_set
    from ..training.trainer import TUNED_THRESHOLDS, scale_input
    from .postprocess import filter_table, maps_to_candidates

    cfg = from_dict(Config, state["config"])
    model = model_from_checkpoint(state).eval()
    px = cfg.simulation.pixel_size_nm
    preds, gts, density, offset = [], [], [], 0
    with torch.no_grad():
        for batch in simulated_validation_set(cfg, torch.device("cpu")):
            out = model(scale_input(batch["frames"], cfg.model.scaling))
            preds.append(maps_to_candidates(out, model.output_channels, cfg.model.scaling, px, frame_offset=offset,
                                            min_prob=0.05, scale=model.output_scale))
            m = batch["mask"].numpy()
            h, w = batch["frames"].shape[-2:]
            density.append(m.sum(1) / (h * w * px * px / 1e6))
            gts.append({"frame": np.nonzero(m)[0] + offset, "x": batch["x_px"].numpy()[m] * px,
                        "y": batch["y_px"].numpy()[m] * px, "z": batch["z_nm"].numpy()[m]})
            offset += len(m)
    pred = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
    gt = {k: np.concatenate([g[k] for g in gts]) for k in gts[0]}
    density = np.concatenate(density)
    classes = [np.nonzero((density >= lo) & (density < hi))[0] for lo, hi in zip(DENSITY_CLASSES[:-1], DENSITY_CLASSES[1:])]
    classes = [c for c in classes if c.size]
    scores = []
    for t in thresholds if thresholds is not None else TUNED_THRESHOLDS:
        sel = filter_table(pred, float(t))
        js, var = [], 0.0
        for windows in classes:
            s = {k: v[np.isin(sel["frame"], windows)] for k, v in sel.items()}
            g = {k: v[np.isin(gt["frame"], windows)] for k, v in gt.items()}
            mm = metrics_from_match(s, g, match(s, g, cfg.training.match_tolerance_nm))
            n = max(mm["tp"] + mm["fp"] + mm["fn"], 1)
            js.append(mm["jaccard"])
            var += mm["jaccard"] * (1.0 - mm["jaccard"]) / n
        scores.append((float(t), float(np.mean(js)), float(np.sqrt(var) / len(classes))))
    best = max(scores, key=lambda s: s[1])
    chosen = max(t for t, j, _ in scores if j >= best[1] - best[2])
    return chosen, scores


def bundle(src: str, dst: str, tune: bool = False) -> dict:
    state = load_checkpoint(src)
    slim = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng", "loss_state")}
    slim["state_dict"] = {k: v.detach().clone().contiguous() for k, v in state["state_dict"].items()}
    slim.pop("format_version", None)
    if tune:
        best, scores = tune_threshold(state)
        print("threshold  validation Jaccard (mean over density classes) ± standard error\n"
              + "\n".join(f"{t:9.2f}  {j:.4f} ± {se:.4f}" for t, j, se in scores))
        slim["inference"] = {**slim["inference"], "detection_threshold": best}
        print(f"detection threshold set to {best:g}")
    save_checkpoint(slim, dst)
    return slim


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tune-threshold"]
    if len(args) != 2:
        sys.exit("usage: python -m napari_smlm.core.inference.bundle SRC.pt DST.pt [--tune-threshold]")
    s = bundle(args[0], args[1], tune="--tune-threshold" in sys.argv)
    n = sum(v.numel() for v in s["state_dict"].values())
    print(f"wrote {sys.argv[2]}: {s['architecture']}, {n:,} parameters, epoch {s['epoch']}, step {s['step']}, "
          f"best {s.get('monitor', 'metric')} {s.get('best_metric', float('nan')):.4g}, "
          f"detection threshold {s['inference']['detection_threshold']:g}; torch {torch.__version__}")

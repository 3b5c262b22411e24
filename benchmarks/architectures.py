"""Every architecture with the same training budget, scored on the same movies.

    python benchmarks/architectures.py [--steps 2000] [--batch 16] [--out docs/benchmarks/architectures]

Budget: each model trains ``--steps`` optimizer steps of ``--batch`` simulated
3-frame 32x32 windows (same simulation settings, same seed), AdamW, on this
machine's device. Test movies (fixed seeds): 64x64 pixels of 100 nm, EMCCD,
sigma 130 nm, 1,000-5,000 photons, background 50, at 0.1, 0.5, 2 and 4 /um^2.
Reports Jaccard, lateral RMSE, efficiency, parameters and inference frames/s,
as a Markdown table, JSON and a PNG plot of Jaccard vs density.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from napari_smlm.core.config import Config, from_dict, load_config, to_dict
from napari_smlm.core.evaluation import evaluate
from napari_smlm.core.inference import LocalizationModel
from napari_smlm.core.inference.bundle import tune_threshold
from napari_smlm.core.localize import localize
from napari_smlm.core.training import Trainer, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["simulation.frame_size=[32,32]", "simulation.psf.sigma_nm=[110,150]",
          "simulation.emitters.density_per_um2=[0.0,4.0]", "simulation.emitters.photons=[800,6000]",
          "simulation.emitters.background=[30,70]", "training.validation_size=64", "output.tensorboard=false",
          "training.validation_density_per_um2=[0.5,2.0]"]
ARCHS = {
    "sigma_munet": ["model.architecture=sigma_munet", "model.kwargs={depth_shared: 2, depth_union: 2, initial_features: 24, inter_features: 24}",
                    "loss.terms=[{name: ppxyzb, until_epoch: 2, kwargs: {pos_weight: 2}}, {name: gaussian_mm, start_epoch: 2}]"],
    "double_munet": ["model.architecture=double_munet", "model.kwargs={depth_shared: 2, depth_union: 2, initial_features: 24, inter_features: 24}",
                     "loss.terms=[{name: ppxyzb, kwargs: {pos_weight: 2}}]"],
    "simple_smlm_net": ["model.architecture=simple_smlm_net", "model.frame_window=3", "model.kwargs={depth: 2, initial_features: 32}",
                        "loss.terms=[{name: ppxyzb, kwargs: {pos_weight: 2}}]"],
    "multiscale_var": ["model.architecture=multiscale_var", "model.kwargs={scales: [2, 4, 8], base_channels: 32, embed_dim: 64, num_heads: 4, num_layers: 2}",
                       "loss.terms=[{name: multiscale, kwargs: {warmup_epochs: 3}}]"],
    "multiscale_var+vq": ["model.architecture=multiscale_var", "model.kwargs={scales: [2, 4, 8], base_channels: 32, embed_dim: 64, num_heads: 4, num_layers: 2, use_vq: true}",
                          "loss.terms=[{name: multiscale, kwargs: {warmup_epochs: 3}}]"],
    # issue 15: SigmaMUNet's trunk and heads + a 2x finer next-scale head conditioned on the
    # camera-grid prediction, the Gaussian-mixture loss on both grids
    "multiscale_munet": ["model.architecture=multiscale_munet",
                         "model.kwargs={depth_shared: 2, depth_union: 2, initial_features: 24, inter_features: 24, fine_scale: 2, fine_features: 32}",
                         "loss.terms=[{name: ppxyzb, until_epoch: 2, kwargs: {pos_weight: 2}}, {name: gaussian_mm, start_epoch: 2}]"],
    "fusion_unet": ["model.architecture=fusion_unet", "model.kwargs={depth: 2, initial_features: 24, fusion: attention}",
                    "loss.terms=[{name: ppxyzb, until_epoch: 2, kwargs: {pos_weight: 2, detection: focal}}, {name: gaussian_mm, start_epoch: 2}]"],
}
DENSITIES = (0.1, 0.5, 2.0, 4.0)


def time_steps(cfg, n: int) -> float:
    """Optimizer steps/s of ``cfg`` alone on this machine (after 3 warm-up steps)."""
    from benchmarks_common import train_steps_per_second  # noqa: E402  (same folder)

    return train_steps_per_second(Trainer(cfg, write_files=False), n, warmup=3)


def main() -> None:
    global DENSITIES  # --densities replaces the default set for the tables and plots below
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200, help="test frames per density")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--densities", default=",".join(f"{d:g}" for d in DENSITIES),
                    help="test densities /um^2 (seeds by position: 200, 201, ...)")
    ap.add_argument("--time-steps", type=int, default=0, help="also time this many training steps per model alone "
                    "(steps/s; otherwise steps / training seconds, validation included)")
    ap.add_argument("--reuse", action="store_true", help="evaluate finished runs of the same config in --out instead of retraining")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "architectures"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from benchmarks_common import test_movie  # noqa: E402  (same folder)

    epochs = 10
    steps = max(1, args.steps // epochs)
    DENSITIES = tuple(float(d) for d in args.densities.split(","))
    movies = {d: test_movie(d, args.frames, seed=200 + i) for i, d in enumerate(DENSITIES)}
    rows = []
    print(f"budget: {epochs * steps} steps x {args.batch} windows of 3x32x32 per model; {args.frames} test frames per density\n")
    print("| model | parameters | train s | " + " | ".join(f"Jaccard {d:g}" for d in DENSITIES) + " | RMSE 0.5 nm | eff. 0.5 % | frames/s |")
    print("|---|---|---|" + "---|" * len(DENSITIES) + "---|---|---|")
    for name in args.archs.split(","):
        cfg = load_config(ROOT / "configs" / "smoke.yaml", [*COMMON, *ARCHS[name], f"training.epochs={epochs}",
                                                              f"training.steps_per_epoch={steps}", f"training.batch_size={args.batch}",
                                                              f"output.run_dir={out / 'runs' / name}"])
        run = out / "runs" / name
        done = load_checkpoint(run / "last.pt") if args.reuse and (run / "last.pt").is_file() else None
        if done is not None and done["step"] == epochs * steps and to_dict(from_dict(Config, done["config"])) == to_dict(cfg):
            # a finished run of this very config: evaluate it again (e.g. after a
            # post-processing change) instead of training it again
            train_s = sum(float(h["seconds"]) for h in done["history"])
            step = int(done["step"])
        else:
            t0 = time.time()
            trainer = Trainer(cfg)
            trainer.fit()
            trainer.close()
            train_s, step = time.time() - t0, trainer.step
        # The model after the whole budget (last.pt, same steps for all), at the
        # detection threshold that is best on its own validation set (not the test movies).
        lm = LocalizationModel.load(run / "last.pt")
        threshold, _ = tune_threshold(load_checkpoint(run / "last.pt"))
        row = {"model": name, "parameters": sum(p.numel() for p in lm.model.parameters()), "train_s": train_s, "steps": step, "threshold": threshold,
               "steps_per_s": time_steps(cfg, args.time_steps) if args.time_steps else step / train_s}
        for d, (movie, gt, cam) in movies.items():
            t1 = time.time()
            res = localize(movie, model=lm, camera=cam, pixel_size_nm=100.0, threshold=threshold)
            fps = len(movie) / (time.time() - t1)
            m, _ = evaluate(res.table(), gt, 250.0)
            row[f"jaccard_{d:g}"], row[f"rmse_{d:g}"], row[f"eff_{d:g}"], row[f"fps_{d:g}"] = m["jaccard"], m["rmse_lat"], m["efficiency_lat"], fps
        rows.append(row)
        print(f"| {name} | {row['parameters']:,} | {train_s:.0f} | " + " | ".join(f"{row[f'jaccard_{d:g}']:.3f}" for d in DENSITIES)
              + f" | {row['rmse_0.5']:.1f} | {row['eff_0.5']:.1f} | {row['fps_0.1']:.0f} |", flush=True)
    stamp = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
             "device": "cuda" if torch.cuda.is_available() else "cpu", "steps": epochs * steps, "batch": args.batch,
             "test_frames": args.frames}
    (out / "results.json").write_text(json.dumps({**stamp, "rows": rows}, indent=2))
    dens = " | ".join(f"{d:g}" for d in DENSITIES)
    lines = [f"# Architectures side by side ({stamp['date']}, {stamp['device']}, {stamp['threads']} threads, torch {stamp['torch']})", "",
             f"Command: `python benchmarks/architectures.py {' '.join(sys.argv[1:])}` (with `--reuse`, finished runs in "
             "`--out` are evaluated again rather than retrained; their training seconds are those recorded).", "",
             f"Budget, the same for every model: {epochs * steps} optimizer steps of {args.batch} simulated 3-frame 32x32 windows "
             f"({epochs * steps * args.batch:,} windows), AdamW lr 1e-3 with cosine decay over 10 epochs. "
             f"Each model as it is after the budget (`last.pt`), at the detection threshold `bundle --tune-threshold` picks on its own validation set (0.1-0.9; since 2026-11-30 the highest within one standard error of the best density-balanced Jaccard). "
             f"Test: {args.frames} frames of 64x64 per density (fixed seeds), 250 nm tolerance.", ""]
    for key, title, fmt in (("jaccard", "Jaccard", "{:.3f}"), ("rmse", "lateral RMSE nm", "{:.1f}"), ("eff", "lateral efficiency %", "{:.1f}")):
        lines += [f"## {title} by density (/µm²)", "", f"| model | {dens} |", "|---|" + "---|" * len(DENSITIES)]
        lines += [f"| {r['model']} | " + " | ".join(fmt.format(r[f'{key}_{d:g}']) for d in DENSITIES) + " |" for r in rows]
        lines.append("")
    lines += ["## Size and speed", "", "| model | parameters | threshold | training s (recorded) | training steps/s | inference frames/s (64x64) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['parameters']:,} | {r['threshold']:g} | {r['train_s']:.0f} | {r['steps_per_s']:.2f} | {r['fps_0.1']:.0f} |"
              for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for row in rows:
        axes[0].plot(DENSITIES, [row[f"jaccard_{d:g}"] for d in DENSITIES], "o-", label=row["model"])
        axes[1].plot(DENSITIES, [row[f"rmse_{d:g}"] for d in DENSITIES], "o-", label=row["model"])
    for ax, label in zip(axes, ("Jaccard", "lateral RMSE [nm]")):
        ax.set_xlabel("density [/µm²]")
        ax.set_ylabel(label)
        ax.set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_density.png", dpi=110)
    print(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    main()

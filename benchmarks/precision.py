"""Reduced precision on the CPU: accuracy and speed of bf16 against fp32, same movies, same run.

    python benchmarks/precision.py [--frames 400] [--densities 0.1,0.5,2] [--size 256]

Movies: benchmarks_common.test_movie (64x64 px of 100 nm, EMCCD, 1,000-5,000 photons,
background 50) at each density; each localized with the bundled model at fp32 and at
bf16 (autocast), scored against the truth (250 nm). Then the network's speed on frames
of ``--size`` px (a single movie, time of localize() after a warm-up run), at both
precisions, threads as the runner chooses them (the cores other work leaves free;
printed). Target (issue 13): Jaccard and RMSE within 0.01 and 1 nm of fp32.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_smlm.core.evaluation import evaluate
from napari_smlm.core.inference import LocalizationModel
from napari_smlm.core.inference.runner import free_cores
from napari_smlm.core.localize import localize
from benchmarks_common import test_movie  # same folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--densities", default="0.1,0.5,2")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--speed-frames", type=int, default=40)
    args = ap.parse_args()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("this CPU has no bfloat16 instructions: nothing to compare")
        return
    lm = LocalizationModel.load("default")
    print(f"# bf16 against fp32 on the CPU — {time.strftime('%Y-%m-%d')}, free cores now: {free_cores()}\n")
    print("| density /µm² | frames | Jaccard fp32 | Jaccard bf16 | RMSE fp32 nm | RMSE bf16 nm | ΔJaccard | ΔRMSE nm |")
    print("|---|---|---|---|---|---|---|---|")
    for i, d in enumerate(float(v) for v in args.densities.split(",")):
        movie, gt, cam = test_movie(d, args.frames, seed=400 + i)
        row = {}
        for prec in ("fp32", "bf16"):
            res = localize(movie, model=lm, camera=cam, pixel_size_nm=100.0, precision=prec)
            row[prec] = evaluate(res.table(), gt, 250.0, np.inf)[0]
        a, b = row["fp32"], row["bf16"]
        print(f"| {d:g} | {args.frames} | {a['jaccard']:.4f} | {b['jaccard']:.4f} | {a['rmse_lat']:.2f} | {b['rmse_lat']:.2f} | "
              f"{b['jaccard'] - a['jaccard']:+.4f} | {b['rmse_lat'] - a['rmse_lat']:+.2f} |", flush=True)
    movie, _, cam = test_movie(0.5, args.speed_frames, seed=500, size=args.size)
    print(f"\n| precision | frames of {args.size}x{args.size} | threads | seconds | frames/s |")
    print("|---|---|---|---|---|")
    for prec in ("fp32", "bf16", "fp32", "bf16"):
        localize(movie[:8], model=lm, camera=cam, pixel_size_nm=100.0, precision=prec)  # warm-up
        t0 = time.perf_counter()
        localize(movie, model=lm, camera=cam, pixel_size_nm=100.0, precision=prec)
        secs = time.perf_counter() - t0
        print(f"| {prec} | {len(movie)} | {torch.get_num_threads()} | {secs:.1f} | {len(movie) / secs:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""GPU speed check (one short run, well under 8 minutes on an H100-class card).

    python benchmarks/gpu.py [--out gpu_results.json]

Measures, on CUDA: end-to-end localization frames/s (simulated movie in memory ->
camera conversion -> network with AMP and batch size auto -> post-processing ->
table) for 64x64 and 256x256 movies, and optimizer steps/s of the default and
DECODE-reference training configs. Writes a JSON with the card's name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import test_movie  # noqa: E402

from napari_smlm.core.config import load_config  # noqa: E402
from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.localize import localize  # noqa: E402
from napari_smlm.core.training import Trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "napari_smlm" / "configs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_results.json")
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device")
    result = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "inference": [], "training": []}
    lm = LocalizationModel.load(args.model)
    for size, frames in ((64, 20000), (256, 2000)):
        movie, _, cam = test_movie(0.5, frames, seed=1, size=size)
        localize(movie[:200], model=lm, camera=cam, device="cuda")  # warm-up (cuDNN autotune)
        t0 = time.time()
        res = localize(movie, model=lm, camera=cam, device="cuda", batch_size="auto")
        wall = time.time() - t0
        row = {"size": size, "frames": frames, "seconds": wall, "frames_per_s": frames / wall,
               "molecules": int(len(res.table()["x"])), "timings": {k: float(v) for k, v in res.timings.items()}}
        result["inference"].append(row)
        print(row, flush=True)
    for name in ("default_2d", "decode_reference"):
        cfg = load_config(CONFIGS / f"{name}.yaml", ["training.device=cuda", "training.validation_size=64", "output.tensorboard=false"])
        trainer = Trainer(cfg, write_files=False)
        trainer.loss_fn.set_epoch(cfg.training.epochs)
        for _ in range(5):
            trainer.train_step()
        torch.cuda.synchronize()
        t0 = time.time()
        n = 50
        for _ in range(n):
            trainer.train_step()
        torch.cuda.synchronize()
        dt = (time.time() - t0) / n
        row = {"config": name, "steps_per_s": 1 / dt, "windows_per_s": cfg.training.batch_size / dt}
        result["training"].append(row)
        print(row, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

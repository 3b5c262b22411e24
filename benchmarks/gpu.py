"""GPU speed check (one short run, well under 8 minutes on an H100-class card).

    python benchmarks/gpu.py [--out gpu_results.json] [--train-minutes 0] [--device cuda] [--quick]

Measures on one device:
- end-to-end localization frames/s from a TIFF file on disk to the written CSV
  table (memory-mapped reading -> camera conversion -> network with batch size
  auto -> post-processing -> atomic CSV write) for movies of 64x64 (20,000 frames)
  and 256x256 (2,000 frames), after a warm-up run, for each bundled model
  (``--models default,fast``) and each precision (``--precisions``; on CUDA fp16,
  bf16 and fp32 by default);
- optimizer steps/s of the default_2d, fast_2d, decode_reference and astig_3d
  (3D, parametric astigmatic PSF) training configs;
- with ``--train-minutes M``: default_2d trained from scratch for at most M minutes,
  its validation Jaccard after every epoch (the "time to plateau" curve).
Writes a JSON with the card's name. ``--device cpu --quick`` is a small smoke run
(the test suite uses it so the script cannot rot between GPU sessions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import test_movie, train_steps_per_second  # noqa: E402

from napari_smlm.core.config import load_config  # noqa: E402
from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.io.tables import write_table  # noqa: E402
from napari_smlm.core.localize import localize  # noqa: E402
from napari_smlm.core.training import Callback, Trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "napari_smlm" / "configs"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def inference(models: dict, precisions, device: str, sizes, tmp: Path) -> list[dict]:
    rows = []
    for size, frames in sizes:
        movie, _, cam = test_movie(0.5, frames, seed=1, size=size)
        path = tmp / f"movie{size}.tif"
        tifffile.imwrite(path, movie)
        del movie
        for name, lm in models.items():
            for precision in precisions:
                kw = dict(model=lm, camera=cam, device=device, precision=precision)
                localize(path, frame_range=(0, min(frames, 200)), **kw)  # warm-up (cuDNN autotune)
                _sync(device)
                t0 = time.time()
                res = localize(path, batch_size="auto", **kw)
                t1 = time.time()
                table = res.table()
                t2 = time.time()
                write_table(table, tmp / f"movie{size}.csv", pixel_size_nm=res.pixel_size_nm,
                            movie_shape=res.movie_shape)
                wall = time.time() - t0
                # the table (candidates above the threshold) and its CSV, timed apart: on the H200
                # 47-67 % of the wall time lay outside the localizer's own timings (gpu.md)
                timings = {**{k: float(v) for k, v in res.timings.items()}, "table": t2 - t1, "csv": t0 + wall - t2}
                row = {"model": name, "precision": precision, "size": size, "frames": frames, "seconds": wall,
                       "frames_per_s": frames / wall, "molecules": int(len(table["x"])), "timings": timings}
                rows.append(row)
                print(row, flush=True)
    return rows


def training_speed(device: str, steps: int, quick: bool) -> list[dict]:
    rows = []
    for name in ("default_2d", "fast_2d", "decode_reference", "astig_3d"):
        cfg = load_config(CONFIGS / f"{name}.yaml", [f"training.device={device}", "training.validation_size=8", "output.tensorboard=false",
                                                     "training.init_weights=null",
                                                     *(["training.batch_size=2"] if quick else [])])
        trainer = Trainer(cfg, write_files=False)
        dt = 1 / train_steps_per_second(trainer, steps, warmup=min(5, steps))
        row = {"config": name, "batch_size": cfg.training.batch_size, "steps_per_s": 1 / dt,
               "windows_per_s": cfg.training.batch_size / dt, "amp": trainer.use_amp}
        rows.append(row)
        print(row, flush=True)
    return rows


class _TimeLimit(Callback):
    def __init__(self, seconds: float):
        self.seconds, self.t0, self.curve = seconds, time.time(), []

    def on_validation_end(self, trainer, info):
        self.curve.append({"epoch": trainer.epoch, "step": trainer.step, "seconds": time.time() - self.t0,
                           "jaccard": float(trainer.history[-1].get("jaccard", float("nan"))) if trainer.history else None})
        print(self.curve[-1], flush=True)

    def on_batch_end(self, trainer, info):
        if time.time() - self.t0 > self.seconds:
            trainer.request_stop("time limit")


def training_curve(device: str, minutes: float, tmp: Path, quick: bool) -> dict:
    extra = ["training.steps_per_epoch=2", "training.validation_size=4", "training.batch_size=2"] if quick else []
    cfg = load_config(CONFIGS / "default_2d.yaml", [f"training.device={device}", "output.tensorboard=false",
                                                     f"output.run_dir={tmp / 'curve'}", *extra])
    limit = _TimeLimit(minutes * 60)
    trainer = Trainer(cfg, callbacks=[limit])
    trainer.fit()
    trainer.close()
    return {"config": "default_2d", "minutes": minutes, "curve": limit.curve}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_results.json")
    ap.add_argument("--models", default="default,fast", help="bundled model names or checkpoints, comma-separated")
    ap.add_argument("--precisions", help="comma-separated (default: fp16,bf16,fp32 on CUDA, auto on a CPU)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--train-minutes", type=float, default=0.0, help="also train default_2d for this long (0: skip)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a check that the script runs, not a measurement")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device")
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    result = {"card": card, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    models = {name: LocalizationModel.load(name) for name in args.models.split(",")}
    cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("fp16,bf16,fp32" if cuda else "auto")).split(",")
    sizes = ((64, 40), (256, 6)) if args.quick else ((64, 20000), (256, 2000))
    with tempfile.TemporaryDirectory(prefix="napari-smlm-gpu-") as tmp:
        result["inference"] = inference(models, precisions, args.device, sizes, Path(tmp))
        result["training"] = training_speed(args.device, 2 if args.quick else 50, args.quick)
        if args.train_minutes > 0:
            result["training_curve"] = training_curve(args.device, args.train_minutes, Path(tmp), args.quick)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

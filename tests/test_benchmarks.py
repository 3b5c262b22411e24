"""The benchmark scripts' own logic (they are run by hand; these keep them from rotting)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_smlm.core.evaluation import evaluate

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_run():
    sys.path.insert(0, str(BENCH))
    try:
        import run

        yield run
    finally:
        sys.path.remove(str(BENCH))


def test_jaccard_and_rmse_by_photons(bench_run):
    """True positives and misses fall in the bin of their true photons, false positives
    in the bin of their estimated photons; RMSE is over the bin's matches."""
    gt = {"frame": np.array([0, 0, 1, 1]), "x": np.array([1000.0, 3000.0, 1000.0, 3000.0]),
          "y": np.array([1000.0, 1000.0, 1000.0, 1000.0]), "z": np.zeros(4), "photons": np.array([400.0, 400.0, 2500.0, 2500.0])}
    # frame 0: one hit 30 nm off (400 ph), one miss (400 ph); frame 1: two hits 40 nm off
    # (2,500 ph) and one false positive far away, estimated at 450 photons.
    pred = {"frame": np.array([0, 1, 1, 1]), "x": np.array([1030.0, 1040.0, 3040.0, 6000.0]),
            "y": np.array([1000.0, 1000.0, 1000.0, 6000.0]), "z": np.zeros(4), "photons": np.array([390.0, 2400.0, 2600.0, 450.0]),
            "prob": np.ones(4)}
    _, m = evaluate(pred, gt, 250.0)
    out = bench_run.by_photons(pred, gt, m)
    low = bench_run.PHOTON_BINS.index(300)  # the 300-600 bin
    high = bench_run.PHOTON_BINS.index(2000)  # the 2,000-3,500 bin
    assert out["jaccard"][low] == pytest.approx(1 / 3)  # 1 TP, 1 FN, 1 FP
    assert out["jaccard"][high] == pytest.approx(1.0)
    assert out["rmse_lat"][low] == pytest.approx(30.0) and out["rmse_lat"][high] == pytest.approx(40.0)
    assert out["n"][low] == 2 and out["n"][high] == 2 and sum(out["n"]) == 4
    assert np.isnan(out["rmse_lat"][0]) and np.isnan(out["jaccard"][0])  # no true molecules below 300 photons


def test_gpu_script_runs_on_cpu_in_quick_mode(tmp_path):
    """benchmarks/gpu.py end to end (TIFF -> written CSV, training speed, time-boxed curve)."""
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--quick", "--train-minutes", "0.02",
                    "--out", str(out)], check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    assert result["card"].startswith("cpu") and result["quick"] is True
    assert [(r["size"], r["model"]) for r in result["inference"]] == [(64, "default"), (64, "fast"), (256, "default"),
                                                                       (256, "fast")]
    assert all(r["frames_per_s"] > 0 and r["molecules"] > 0 for r in result["inference"])
    assert [r["config"] for r in result["training"]] == ["default_2d", "fast_2d", "decode_reference", "astig_3d"]
    assert all(r["steps_per_s"] > 0 for r in result["training"])
    curve = result["training_curve"]["curve"]
    assert len(curve) >= 1 and 0.0 <= curve[0]["jaccard"] <= 1.0

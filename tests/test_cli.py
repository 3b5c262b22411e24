import numpy as np
import pytest
import tifffile

from napari_smlm.core.io import read_table

from .conftest import CONFIGS, run_cli


def test_help_lists_commands():
    out = run_cli("--help").stdout
    for cmd in ("simulate", "train", "demo"):
        assert cmd in out
    assert "--resume" in run_cli("train", "--help").stdout


def test_simulate_writes_movie_and_ground_truth(tmp_path):
    out = run_cli("simulate", "--config", CONFIGS / "smoke.yaml", "--frames", 300, "--out", tmp_path, "--seed", 1,
                  "--set", "simulation.emitters.density_per_um2=[0.5,0.5]").stdout
    assert "movie.tif" in out
    movie = tifffile.imread(tmp_path / "movie.tif")
    assert movie.shape == (300, 32, 32) and movie.dtype == np.uint16
    gt = read_table(tmp_path / "emitters.csv")
    header = (tmp_path / "emitters.csv").read_text().splitlines()[0]
    assert header.startswith("id,frame,x [nm],y [nm],z [nm],intensity [photon],offset [photon],uncertainty_xy [nm],uncertainty_z [nm],prob")
    assert gt["frame"].min() >= 0 and gt["frame"].max() <= 299
    assert ((gt["x"] >= 0) & (gt["x"] < 3200)).all()
    assert len(gt["frame"]) / 300 == pytest.approx(0.5 * 3.2 * 3.2, rel=0.25)
    # Molecules sit where the movie is bright: the pixel under a bright emitter beats the median.
    bright = gt["photons"] > 3000
    f, r, c = gt["frame"][bright], (gt["y"][bright] // 100).astype(int), (gt["x"][bright] // 100).astype(int)
    assert np.median(movie[f, r, c]) > np.median(movie) + 200


def test_train_dry_run_and_bad_config(tmp_path):
    out = run_cli("train", "--config", CONFIGS / "smoke.yaml", "--dry-run").stdout
    assert "config OK: double_munet" in out and "parameters" in out and "loss=" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  batch_size: -3\n")
    proc = run_cli("train", "--config", bad, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"napari-smlm: config error: {bad}: training.batch_size: expected a positive integer, got -3"]
    proc = run_cli("train", "--config", CONFIGS / "smoke.yaml", "--set", "training.epochs=zero", check=False)
    assert proc.returncode == 1 and "training.epochs: expected a positive integer, got 'zero'" in proc.stderr
    proc = run_cli("train", "--config", tmp_path / "missing.yaml", check=False)
    assert proc.returncode == 1 and "config file not found" in proc.stderr
    proc = run_cli("train", "--config", "smoke", "--init-weights", tmp_path / "none.pt", "--dry-run", check=False)
    assert proc.returncode == 1 and f"training.init_weights: {tmp_path / 'none.pt'}: neither a bundled model" in proc.stderr


def test_train_and_resume_from_cli(tmp_path):
    common = ["--config", "smoke", "--out", tmp_path / "run", "--set", "simulation.frame_size=[16,16]",
              "--set", "training.steps_per_epoch=2", "--set", "training.validation_size=4", "--set", "training.batch_size=2"]
    out = run_cli("train", *common, "--set", "training.epochs=1").stdout
    assert "epoch 1:" in out and "jaccard=" in out
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    out = run_cli("train", *common, "--set", "training.epochs=2", "--resume", tmp_path / "run" / "last.pt").stdout
    assert "from epoch 2 of 2" in out and "epoch 2:" in out and "epoch 1:" not in out
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs
    proc = run_cli("train", *common, "--resume", tmp_path / "run" / "config.yaml", check=False)
    assert proc.returncode == 1 and "config.yaml: not a napari-smlm checkpoint" in proc.stderr

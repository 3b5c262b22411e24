import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "napari_smlm" / "configs"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_overrides(tmp_path):
    """Overrides that make any config train in seconds (tests of mechanics, not accuracy)."""
    return [
        "simulation.frame_size=[16,16]",
        "model.kwargs={depth_shared: 1, depth_union: 1, initial_features: 8, inter_features: 8}",
        "training.steps_per_epoch=3",
        "training.batch_size=4",
        "training.validation_size=8",
        "training.device=cpu",
        f"output.run_dir={tmp_path / 'run'}",
    ]


def run_cli(*args, check=True):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "napari_smlm.cli", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc

import subprocess
import sys

import pytest

from napari_smlm.core.training import load_checkpoint

from .conftest import CONFIGS


@pytest.mark.skipif(sys.platform != "linux", reason="gloo multi-process test runs on Linux CI")
def test_torchrun_two_cpu_processes(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "napari_smlm.cli", "train", "--config", str(CONFIGS / "smoke.yaml"), "--out", str(run),
        "--set", "simulation.frame_size=[16,16]", "--set", "training.steps_per_epoch=3", "--set", "training.epochs=2",
        "--set", "training.batch_size=2", "--set", "training.validation_size=4", "--set", "training.device=cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only rank 0 prints and writes.
    assert proc.stdout.count("epoch 2:") == 1
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 2 and state["step"] == 6
    assert not (run / "last.pt.rank1").exists()
    assert len(list(run.glob("*.pt"))) == 2

import h5py
import numpy as np
import pytest
import torch

from napari_smlm.core.config import load_config
from napari_smlm.core.io import TableError
from napari_smlm.core.training import Trainer
from napari_smlm.core.training.data import LabelledFrames, augment, collate

from .conftest import CONFIGS, run_cli


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    run_cli("simulate", "--config", CONFIGS / "smoke.yaml", "--frames", 60, "--out", out, "--set", "simulation.frame_size=[16,16]")
    return out


def test_train_from_movie_and_emitter_table(simulated, tmp_path, tiny_overrides):
    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, "training.epochs=1", "training.workers=1",
                      f"data.train=['{simulated / 'movie.tif'}']", f"data.emitters=['{simulated / 'emitters.csv'}']"])
    ds = LabelledFrames(cfg, augment=False)
    assert len(ds) == 60
    item = ds[10]
    assert item["frames"].shape == (3, 16, 16)
    # ADU were converted to photons with the config's camera: background ~ 40-60 photons.
    assert 20 < float(item["frames"].median()) < 80
    trainer = Trainer(cfg)
    assert sum(int(b["mask"].sum()) >= 0 for b in trainer.validation) >= 1
    trainer.fit()
    assert trainer.step == 3 and (tmp_path / "run" / "last.pt").is_file()


def test_hdf5_training_layout(tmp_path, tiny_overrides):
    files = []
    for i in range(6):
        p = tmp_path / f"f{i}.h5"
        with h5py.File(p, "w") as f:
            f["image"] = np.full((16, 16), 60.0, np.float32)
            f["positions"] = np.array([[350.0, 720.0, 0.0], [1000.0, 200.0, 50.0]])
            f["photons"] = np.array([2000.0, 1500.0])
            f["background"] = np.float32(50.0)
        files.append(str(p))
    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, "training.epochs=1", f"data.train={files}", "data.units=photons"])
    ds = LabelledFrames(cfg, augment=False)
    item = ds[0]
    assert torch.allclose(item["x_px"], torch.tensor([3.5, 10.0])) and item["background"].shape == (16, 16)
    Trainer(cfg).fit()

    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f["image"] = np.zeros((16, 16))
    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, f"data.train=['{broken}']"])
    with pytest.raises(TableError, match="broken.h5: HDF5 training file lacks dataset 'positions'"):
        LabelledFrames(cfg)


def test_augmentation_moves_emitters_with_pixels():
    torch.manual_seed(0)
    frames = torch.zeros(3, 16, 16)
    frames[:, 4, 11] = 100.0  # bright pixel at row 4, column 11
    item = {"frames": frames, "x_px": torch.tensor([11.5]), "y_px": torch.tensor([4.5]),
            "z_nm": torch.zeros(1), "photons": torch.tensor([1000.0]), "background": torch.zeros(16, 16)}
    seen = set()
    for _ in range(40):
        out = augment(item, 0.0, (1.0, 1.0))
        r, c = divmod(int(out["frames"][1].argmax()), 16)
        assert (int(out["y_px"][0]), int(out["x_px"][0])) == (r, c)
        assert out["x_px"][0] - c == pytest.approx(0.5) and out["y_px"][0] - r == pytest.approx(0.5)
        seen.add((r, c))
    assert len(seen) >= 4  # flips and rotations happened
    out = augment(item, 0.0, (2.0, 2.0))
    assert out["frames"].max() == 200.0 and out["photons"][0] == 2000.0


def test_collate_pads_variable_emitter_lists():
    items = [{"frames": torch.zeros(1, 4, 4), "x_px": torch.arange(n, dtype=torch.float32), "y_px": torch.zeros(n),
              "z_nm": torch.zeros(n), "photons": torch.ones(n)} for n in (0, 3, 1)]
    b = collate(items)
    assert b["mask"].tolist() == [[False] * 3, [True] * 3, [True, False, False]]
    assert b["x_px"][1].tolist() == [0.0, 1.0, 2.0]

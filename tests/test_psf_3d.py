"""3D: astigmatic and spline PSFs, bead calibration, 3D simulation, CRLB, a short 3D training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch

from napari_smlm.cli import main
from napari_smlm.core.calibration import (CalibrationError, calibrate_beads, load_calibration, save_calibration,
                                          use_calibration)
from napari_smlm.core.config import AstigmatismConfig, load_config
from napari_smlm.core.evaluation.crlb import crlb_3d_nm, crlb_lateral_nm
from napari_smlm.core.psf import ASTIGMATIC_KEYS, AstigmaticPSF, SplinePSF
from napari_smlm.core.simulation import Simulator

TRUTH = {k: getattr(AstigmatismConfig(), k) for k in ASTIGMATIC_KEYS}  # γx = -300, γy = +300 nm


def _moments(img: np.ndarray) -> tuple[float, float, float, float]:
    img = np.clip(img, 0, None)
    tot = img.sum()
    c = np.arange(img.shape[0]) + 0.5
    x = (img.sum(0) * c).sum() / tot
    y = (img.sum(1) * c).sum() / tot
    sx = math.sqrt((img.sum(0) * (c - x) ** 2).sum() / tot)
    sy = math.sqrt((img.sum(1) * (c - y) ** 2).sum() / tot)
    return x, y, sx, sy


def _bead_stack(z_step=20.0, seed=0):
    """9 beads on a 3x3 grid 30 px apart, z from -800 to +800 nm, 20,000 photons, Poisson."""
    psf = AstigmaticPSF(TRUTH, 100.0, (-1000, 1000))
    z = np.arange(-800, 800 + 1e-9, z_step)
    rng = np.random.default_rng(seed)
    pos = np.array([(20 + 30 * i, 20 + 30 * j) for i in range(3) for j in range(3)], float) + rng.uniform(0, 1, (9, 2))
    x = torch.tensor(pos[:, 0]).float().repeat(len(z), 1)
    y = torch.tensor(pos[:, 1]).float().repeat(len(z), 1)
    zz = torch.tensor(z).float().unsqueeze(1).repeat(1, 9)
    img = psf.render(x, y, zz, torch.full_like(x, 20000.0), (96, 96)).numpy() + 20.0
    return rng.poisson(img).astype(np.float64), psf


@pytest.fixture(scope="module")
def calibration():
    stack, psf = _bead_stack()
    return calibrate_beads(stack, 20.0, 100.0, source="synthetic"), psf


def test_astigmatic_psf_elongation_and_normalisation():
    psf = AstigmaticPSF(TRUTH, 100.0, (-1000, 1000))
    frames = psf.render(torch.full((3, 1), 16.3), torch.full((3, 1), 15.7), torch.tensor([[-300.0], [0.0], [300.0]]),
                        torch.full((3, 1), 1000.0), (32, 32)).numpy()
    np.testing.assert_allclose(frames.sum((1, 2)), 1000.0, rtol=2e-3)
    below, focus, above = (_moments(f) for f in frames)
    assert below[2] < 0.8 * below[3]  # z = -300: the x line focus, elongated along y
    assert above[3] < 0.8 * above[2]
    assert focus[2] == pytest.approx(focus[3], rel=0.02)
    assert (focus[0], focus[1]) == pytest.approx((16.3, 15.7), abs=0.01)


def test_calibration_recovers_sigma_curves_and_focus(calibration):
    cal, _ = calibration
    assert int(np.sum(cal.beads["used"])) == 9
    a = cal.astigmatic
    assert a["gamma_x_nm"] == pytest.approx(-300, abs=15)
    assert a["gamma_y_nm"] == pytest.approx(300, abs=15)
    assert a["sigma0_x_nm"] == pytest.approx(120, rel=0.05)
    assert a["d_y_nm"] == pytest.approx(400, rel=0.08)
    # z = 0 is where σx = σy: the middle of the stack within a fraction of a step.
    assert cal.z_range_nm[0] == pytest.approx(-cal.z_range_nm[1], abs=10)
    assert np.nanmax(np.abs(cal.beads["focus_nm"])) < 10  # all beads at one height
    assert np.allclose(cal.stack.sum((1, 2)), 1.0, atol=1e-4)


def test_negative_z_step_reads_the_stack_backwards():
    stack, _ = _bead_stack()
    cal = calibrate_beads(stack, -20.0, 100.0)
    assert cal.astigmatic["gamma_x_nm"] == pytest.approx(300, abs=15)
    assert cal.astigmatic["gamma_y_nm"] == pytest.approx(-300, abs=15)


def test_spline_psf_matches_the_beads_it_was_made_from(calibration):
    cal, truth_psf = calibration
    spline = SplinePSF.from_calibration(cal, 100.0)
    rng = np.random.default_rng(1)
    for _ in range(12):
        x, y, z = rng.uniform(12, 20), rng.uniform(12, 20), rng.uniform(-600, 600)
        args = (torch.tensor([[x]]).float(), torch.tensor([[y]]).float(), torch.tensor([[z]]).float(),
                torch.tensor([[1000.0]]), (32, 32))
        want, got = truth_psf.render(*args)[0].numpy(), spline.render(*args)[0].numpy()
        assert np.abs(want - got).sum() / want.sum() < 0.06
        mx, my, _, _ = _moments(got)
        assert (mx, my) == pytest.approx((x, y), abs=0.05)


def test_spline_render_batches_equal_single_renders(calibration):
    spline = SplinePSF.from_calibration(calibration[0], 100.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 6, generator=g) * 40 - 4, torch.rand(4, 6, generator=g) * 40 - 4  # some off the frame
    z, n = torch.rand(4, 6, generator=g) * 1200 - 600, torch.rand(4, 6, generator=g) * 1000
    n[:, -1] = 0  # padding slots
    batch = spline.render(x, y, z, n, (32, 32))
    one = torch.stack([sum(spline.render(x[f, i].view(1, 1), y[f, i].view(1, 1), z[f, i].view(1, 1),
                                         n[f, i].view(1, 1), (32, 32))[0] for i in range(6)) for f in range(4)])
    torch.testing.assert_close(batch, one, atol=1e-3, rtol=1e-4)


def test_calibration_file_round_trip_and_foreign_file(tmp_path, calibration):
    cal, _ = calibration
    save_calibration(cal, tmp_path / "psf.h5")
    back = load_calibration(tmp_path / "psf.h5")
    np.testing.assert_array_equal(back.stack, cal.stack)
    assert back.astigmatic["gamma_x_nm"] == pytest.approx(cal.astigmatic["gamma_x_nm"])
    assert back.z_range_nm == pytest.approx(cal.z_range_nm)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CalibrationError, match="not a napari-smlm calibration"):
        load_calibration(tmp_path / "other.h5")


def test_cancel_stops_the_fit():
    from napari_smlm.core.calibration import CalibrationCancelled

    stack, _ = _bead_stack(z_step=80.0)
    calls = []
    with pytest.raises(CalibrationCancelled):
        calibrate_beads(stack, 80.0, 100.0, cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3  # checked between iterations, stopped at the first True


def test_no_beads_is_one_clear_error():
    rng = np.random.default_rng(0)
    with pytest.raises(CalibrationError, match="no beads found"):
        calibrate_beads(rng.poisson(20.0, (30, 64, 64)).astype(float), 20.0, 100.0, source="empty.tif")


def test_3d_simulation_uses_the_calibration(tmp_path, calibration):
    save_calibration(calibration[0], tmp_path / "psf.h5")
    cfg = load_config(_shipped("astig_3d"), ["simulation.frame_size=[32,32]"])
    said = use_calibration(cfg, tmp_path / "psf.h5")
    assert cfg.simulation.psf.kind == "spline" and "z drawn uniformly" in said
    lo, hi = cfg.simulation.emitters.z_range_nm
    assert -800 < lo < -700 and 700 < hi < 800
    batch = Simulator(cfg.simulation, seed=3).sample_batch(8, 3)
    z = batch["z_nm"][batch["mask"]]
    assert z.min() >= lo and z.max() <= hi and z.std() > 300
    cfg.simulation.emitters.z_range_nm = [-1500.0, 0.0]
    with pytest.raises(ValueError, match="beyond the PSF's calibrated range"):
        Simulator(cfg.simulation)


def _shipped(name):
    from napari_smlm.cli import _config_path

    return _config_path(name)


def test_crlb_3d_agrees_with_mortensen_in_focus_and_grows_with_defocus():
    psf = AstigmaticPSF(TRUTH, 100.0, (-1000, 1000))
    b = crlb_3d_nm(psf, 2000.0, 50.0, [0.0, 500.0])
    sigma_focus = TRUTH["sigma0_x_nm"] * math.sqrt(1 + (300 / 400) ** 2)  # 150 nm at z = 0
    # Mortensen's 16/9 is the MLE's excess over the bound: within 10 %.
    assert b[0, 0] == pytest.approx(crlb_lateral_nm(2000.0, 50.0, sigma_focus, 100.0), rel=0.1)
    assert b[0, 0] == pytest.approx(b[0, 1], rel=1e-3)
    assert b[1, 0] > 1.5 * b[0, 0]  # σx at +500 nm is far from its focus at -300 nm
    assert 10 < b[0, 2] < 100


def test_cli_calibrate_and_train_dry_run(tmp_path, capsys):
    stack, _ = _bead_stack()
    tifffile.imwrite(tmp_path / "beads.tif", np.clip(stack + 100, 0, 65535).astype(np.uint16))
    assert main(["calibrate", str(tmp_path / "beads.tif"), "--z-step", "20", "--pixel-size", "100",
                 "--out", str(tmp_path / "psf.h5"), "--plot", str(tmp_path / "psf.png"), "--exclude", "2"]) == 0
    out = capsys.readouterr().out
    assert "9 bead(s) found" in out and "excluded by the user" in out and (tmp_path / "psf.png").stat().st_size > 0
    assert int(np.sum(load_calibration(tmp_path / "psf.h5").beads["used"])) == 8
    (tmp_path / "notes.h5").write_bytes(b"not ours")
    assert main(["calibrate", str(tmp_path / "beads.tif"), "--z-step", "20", "--pixel-size", "100",
                 "--out", str(tmp_path / "notes.h5")]) != 0
    assert (tmp_path / "notes.h5").read_bytes() == b"not ours"
    assert "is not a calibration napari-smlm wrote" in capsys.readouterr().err
    assert main(["train", "--config", "astig_3d", "--psf", str(tmp_path / "psf.h5"), "--dry-run",
                 "--set", "training.init_weights=null", "--set", "training.batch_size=2"]) == 0
    assert "PSF: spline" in capsys.readouterr().out


def test_time_box_stops_cleanly_with_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "smoke", "--out", str(run), "--max-minutes", "0.0001",
                 "--set", "training.epochs=5"]) == 0
    assert "time box of 0.0001 minutes reached" in capsys.readouterr().out
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 1


def test_short_3d_training_learns_z():
    """240 steps of the smoke network on astigmatic data: z is read from the PSF's shape
    (guessing z = 0 for z uniform in ±600 nm would give an axial RMSE of 346 nm)."""
    from napari_smlm.core.training import Trainer

    cfg = load_config(_shipped("smoke"), [
        "simulation.psf.kind=astigmatic", "simulation.emitters.z_range_nm=[-600,600]",
        "simulation.emitters.density_per_um2=[0.2,0.5]", "simulation.emitters.photons=[2000,6000]",
        "training.epochs=4", "training.steps_per_epoch=60", "output.tensorboard=false"])
    trainer = Trainer(cfg, write_files=False)
    row = trainer.fit()
    assert row["rmse_ax"] < 200.0  # 134 nm measured
    assert row["jaccard"] > 0.4
    # 3D validation is scored as the challenge scores it: efficiency 3D = mean of lateral and axial
    assert row["efficiency_3d"] == pytest.approx(0.5 * (row["efficiency_lat"] + row["efficiency_ax"]))

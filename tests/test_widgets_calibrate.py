"""GUI tests of the 3D workflow's napari side (issue 12): the Calibrate widget on a
synthetic bead stack, and Train with a PSF calibration.

Widgets are opened as napari's Plugins menu opens them; run under Xvfb:
``xvfb-run -a pytest tests/test_widgets_calibrate.py``.
"""

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (scripts/setup.sh testing installs it)")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

import yaml  # noqa: E402

from .gui_helpers import click, messages, open_widget, wait_idle  # noqa: E402,F401

PX, Z_STEP = 100.0, 25.0
# Four beads a ROI (21 px) apart and one too close to the right edge (found, left out).
BEADS_RC = ((16, 16), (16, 44), (44, 16), (44, 44), (30, 92))
GOOD = 4


def bead_stack(beads_rc=BEADS_RC, shape=(64, 96), planes=60, photons=2e4, background=20.0, seed=0) -> np.ndarray:
    """(planes, H, W) photons: beads of AstigmatismConfig's default PSF (line foci at
    ∓300 nm), plane k at z = (k − (planes − 1)/2)·Z_STEP, with Poisson noise."""
    import torch

    from napari_smlm.core.config import AstigmatismConfig
    from napari_smlm.core.psf import ASTIGMATIC_KEYS, AstigmaticPSF

    a = AstigmatismConfig()
    psf = AstigmaticPSF({k: getattr(a, k) for k in ASTIGMATIC_KEYS}, PX, (-2000.0, 2000.0))
    rng = np.random.default_rng(seed)
    n = len(beads_rc)
    z = (np.arange(planes) - (planes - 1) / 2) * Z_STEP
    x = np.array([c + 0.5 for _, c in beads_rc]) + rng.uniform(-0.3, 0.3, n)
    y = np.array([r + 0.5 for r, _ in beads_rc]) + rng.uniform(-0.3, 0.3, n)

    def per_plane(v):
        return torch.tensor(np.broadcast_to(v, (planes, n)).copy(), dtype=torch.float32)

    image = psf.render(per_plane(x), per_plane(y), per_plane(z[:, None]), torch.full((planes, n), photons), shape)
    return rng.poisson(image.numpy() + background).astype(np.float32)


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory):
    """A calibration of one bead (fast), written as napari-smlm calibrate writes it."""
    from napari_smlm.core.calibration import calibrate_beads, save_calibration

    cal = calibrate_beads(bead_stack(((20, 20),), shape=(40, 40), planes=40), Z_STEP, PX)
    path = tmp_path_factory.mktemp("psf") / "psf.h5"
    save_calibration(cal, path)
    return path


def test_calibrate_widget_beads_psf_fit_exclude_and_save(make_napari_viewer, qtbot, messages, tmp_path):
    from napari_smlm.core.calibration import load_calibration

    viewer = make_napari_viewer()
    stack = viewer.add_image(bead_stack(), name="beads")
    c = open_widget(viewer, "Calibrate")
    assert c.image.value is stack and c.z_step.value == 10.0 and c.pixel_size.value == PX
    c.z_step.value = Z_STEP  # the layer has no metadata: only the z step is typed
    click(c.run_button)
    wait_idle(qtbot, c)
    assert not messages["error"], messages["error"]

    # the beads, numbered as found; the one at the edge drawn, but left out
    beads = c.beads_layer
    assert beads in viewer.layers and len(beads.data) == len(BEADS_RC)
    assert list(beads.features["bead"]) == [1, 2, 3, 4, 5]
    assert int(beads.features["used"].sum()) == GOOD
    edge = int(np.argmax(beads.data[:, 1]))
    assert not beads.features["used"][edge] and beads.features["state"][edge] == "too close to the edge"
    assert sorted(map(tuple, np.round(beads.data).astype(int))) == sorted(BEADS_RC)
    colours = {tuple(np.round(col, 2)) for col in beads.border_color}
    assert len(colours) == 2  # averaged and left out differ
    assert f"{len(BEADS_RC)} beads found" in c.bead_list.value
    assert "left out: too close to the edge" in c.bead_list.value

    # the averaged PSF, z labelled, beside the stack; the fit finds the synthetic PSF's foci
    psf = c.psf_layer
    cal = c.calibration
    assert psf in viewer.layers and psf.data.shape == cal.stack.shape and psf.data.shape[1:] == (21, 21)
    assert psf.axis_labels[0] == "z" and viewer.dims.axis_labels[-3] == "z"
    assert psf.translate[-1] > stack.data.shape[-1]  # to the right of the stack, not over it
    assert cal.astigmatic["gamma_x_nm"] == pytest.approx(-300.0, abs=40)
    assert cal.astigmatic["gamma_y_nm"] == pytest.approx(300.0, abs=40)
    # the plots: σx, σy measured and fitted; one bar per bead averaged
    assert len(c.ax_sigma.lines) >= 4 and len(c.ax_beads.patches) == GOOD
    # the slider on the stack's middle plane shows the PSF near its focus
    viewer.dims.set_current_step(0, stack.data.shape[0] // 2)
    assert abs(c.shown_psf_z_nm()) <= Z_STEP

    # exclude bead 2 and calibrate again: one bead fewer averaged, the numbers stay
    c.exclude.value = "2"
    click(c.run_button)
    wait_idle(qtbot, c)
    assert not messages["error"], messages["error"]
    assert len(c.beads_layer.data) == len(BEADS_RC) and int(c.beads_layer.features["used"].sum()) == GOOD - 1
    assert c.beads_layer.features["state"][1] == "excluded by the user"
    assert [layer.name for layer in viewer.layers].count("beads beads") == 1  # replaced, not added again
    assert len(c.ax_beads.patches) == GOOD - 1
    # a bead number that was not found is refused before any work
    c.exclude.value = "9"
    click(c.run_button)
    assert c.task is None and "9 not among the 5 beads found" in messages["error"][-1]
    c.exclude.value = "2"

    # Save writes a file load_calibration reads back
    out = tmp_path / "psf.h5"
    c.out.value = str(out)
    click(c.save_button)
    assert out.is_file(), messages["error"]
    back = load_calibration(out)
    assert back.stack.shape == cal.stack.shape or back.stack.shape == c.calibration.stack.shape
    assert int(np.sum(back.beads["used"])) == GOOD - 1
    assert back.astigmatic["gamma_y_nm"] == pytest.approx(c.calibration.astigmatic["gamma_y_nm"])
    # saving again over our own calibration is fine; over someone else's file it is refused
    assert c.save() == str(out)
    foreign = tmp_path / "notes.h5"
    foreign.write_bytes(b"not a calibration")
    n_errors = len(messages["error"])
    assert c.save(foreign) is None
    assert foreign.read_bytes() == b"not a calibration"
    assert len(messages["error"]) == n_errors + 1 and "not a calibration napari-smlm wrote" in messages["error"][-1]
    # a name without .h5 gets it
    assert c.save(tmp_path / "psf2") == str(tmp_path / "psf2.h5")


def test_calibrate_widget_bad_input_is_one_message(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    c = open_widget(viewer, "Calibrate")
    # the ROI follows the pixel size (about 2 µm) until the user sets it
    assert c.roi.value == 21
    c.pixel_size.value = 160.0
    assert c.roi.value == 13
    c.roi.value = 15
    c.pixel_size.value = 100.0
    assert c.roi.value == 15
    click(c.run_button)  # no layer
    assert c.task is None and messages["error"][-1].startswith("choose the bead stack")
    viewer.add_image(np.zeros((32, 32), np.float32), name="one frame")
    c.image.value = viewer.layers["one frame"]
    click(c.run_button)
    assert c.task is None and "expected a bead z-stack" in messages["error"][-1]
    viewer.add_image(np.random.default_rng(0).poisson(20.0, (12, 40, 40)).astype(np.float32), name="noise")
    c.image.value = viewer.layers["noise"]
    c.exclude.value = "two"
    click(c.run_button)
    assert c.task is None and "expected bead numbers" in messages["error"][-1]
    c.exclude.value = ""
    n = len(messages["error"])
    click(c.run_button)  # no beads in pure noise: the core's message, once
    wait_idle(qtbot, c)
    assert len(messages["error"]) == n + 1 and "no beads found" in messages["error"][-1]
    assert c.status.value.startswith("failed") and c.beads_layer is None
    c.save()
    assert "calibrate a bead stack first" in messages["error"][-1]


def test_train_widget_with_a_psf_calibration(make_napari_viewer, qtbot, messages, tmp_path, calibration_file):
    viewer = make_napari_viewer()
    t = open_widget(viewer, "Train")
    assert t.config().simulation.psf.kind == "gaussian" and t.config().training.max_minutes is None  # 2D as before
    t.psf_file.value = str(calibration_file)
    assert t.preset.value == "astigmatic 3D"  # a calibration makes the 3D preset the default
    assert str(calibration_file) in t.psf_info.value and "PSF" in t.psf_info.value
    assert t.sigma_min.native.isHidden()  # a 2D Gaussian's width means nothing here
    assert t.from_bundled.value and t.lr.value == pytest.approx(6e-4)  # the 3D preset's values
    # the time box ends the run within its first epoch (0.01 min), however many steps are asked for
    t.epochs.value, t.steps.value, t.batch_size.value = 2, 500, 2
    t.max_minutes.value = 0.01
    t.output.value = str(tmp_path / "run3d")
    cfg = t.config()
    assert cfg.training.max_minutes == 0.01 and cfg.simulation.psf.kind == "spline"
    click(t.start_button)
    wait_idle(qtbot, t, timeout=600_000)
    assert not messages["error"], messages["error"]
    saved = yaml.safe_load((tmp_path / "run3d" / "config.yaml").read_text())
    assert saved["simulation"]["psf"]["kind"] == "spline"
    assert saved["simulation"]["psf"]["calibration"] == str(calibration_file.resolve())
    assert saved["training"]["max_minutes"] == 0.01 and saved["model"]["architecture"] == "sigma_munet"
    assert saved["training"]["init_weights"] == "default"
    assert (tmp_path / "run3d" / "last.pt").is_file() and len(t.losses) < 500
    assert "time box of 0.01 minutes reached" in t.status.value and "after epoch 1 of 2" in t.status.value
    assert "PSF: spline from" in t.status.value  # use_calibration's sentence stays in the status
    # an empty field: 2D again; 0 minutes: no time box
    t.psf_file.line_edit.value = ""  # the user empties the field
    t.max_minutes.value = 0
    assert t.psf_info.native.isHidden()
    t.preset.value = "quick (CPU minutes)"
    assert not t.sigma_min.native.isHidden() and (t.epochs.value, t.steps.value) == (8, 60)  # the preset's values
    cfg = t.config()
    assert cfg.training.init_weights is None and not t.from_bundled.value
    assert cfg.simulation.psf.kind == "gaussian" and cfg.simulation.psf.calibration is None
    assert cfg.training.max_minutes is None


# ----------------------------------------------------------------------------- 3D localizations
def test_color_kwargs_and_z_varies():
    from napari_smlm._layers import color_kwargs, table_to_points, z_varies

    assert not z_varies({"z": np.zeros(5)}) and not z_varies({}) and not z_varies({"z": np.full(3, np.nan)})
    assert z_varies({"z": np.array([-300.0, np.nan, 250.0])})
    kw = color_kwargs({"z": np.array([-300.0, np.nan, 250.0])}, "z")
    assert list(kw) == ["face_colormap", "face_color", "face_contrast_limits"]
    assert kw["face_colormap"] == "turbo" and kw["face_color"] == "z" and kw["face_contrast_limits"] == (-300.0, 250.0)
    assert color_kwargs({"prob": np.ones(4)}, "prob")["face_contrast_limits"] == (0.5, 1.5)  # a constant: a range
    # z and its uncertainty ride along as features
    table = {"frame": np.array([0, 1]), "x": np.array([150.0, 250.0]), "y": np.array([50.0, 50.0]),
             "z": np.array([-200.0, 300.0]), "sigma_z": np.array([20.0, 30.0])}
    _, features = table_to_points(table, PX)
    assert list(features["z"]) == [-200.0, 300.0] and list(features["sigma_z"]) == [20.0, 30.0]


def test_localize_layer_of_a_3d_result_is_coloured_by_z(make_napari_viewer, messages):
    from napari_smlm.core.localize import LocalizeResult

    viewer = make_napari_viewer()
    movie = viewer.add_image(np.zeros((5, 32, 32), np.float32), name="movie")
    w = open_widget(viewer, "Localize")
    rng = np.random.default_rng(1)
    n = 40

    def result(z):
        c = {"frame": rng.integers(0, 5, n), "x": rng.uniform(0, 3200, n), "y": rng.uniform(0, 3200, n), "z": z,
             "photons": rng.uniform(500, 5000, n), "bg": np.full(n, 50.0), "prob": rng.uniform(0.6, 1.0, n),
             "sigma_x": np.full(n, 10.0), "sigma_y": np.full(n, 10.0), "sigma_z": np.full(n, 30.0)}
        return LocalizeResult(c, 0.5, PX, (5, 32, 32), None, timings={"total": 0.1})

    w._source, w._frames = movie, (0, 5)
    w._on_result(result(rng.uniform(-600, 600, n)))
    layer = w.layer
    assert "z" in w.color_by.choices and w.color_by.value == "z"
    assert {"z", "sigma_z"} <= set(layer.features.columns)
    assert layer.face_colormap.name == "turbo"
    lo, hi = layer.face_contrast_limits
    assert lo == pytest.approx(layer.features["z"].min()) and hi == pytest.approx(layer.features["z"].max())
    deepest = int(np.argmax(layer.features["z"]))
    assert not np.allclose(layer.face_color[deepest], layer.face_color[int(np.argmin(layer.features["z"]))])
    # back to probability: its own colour map and range, not z's
    w.color_by.value = "prob"
    assert layer.face_colormap.name == "viridis" and layer.face_contrast_limits[1] <= 1.0
    # a 2D result (z = 0 everywhere): no z to colour by
    w._on_result(result(np.zeros(n)))
    assert "z" not in w.color_by.choices and w.color_by.value == "prob"
    assert not messages["error"], messages["error"]


def test_calibrate_widget_uses_the_files_camera_and_cancel_drops_the_result(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    photons = bead_stack(((20, 20),), shape=(40, 40), planes=40)
    camera = {"kind": "emccd", "baseline": 100.0, "e_per_adu": 45.0, "em_gain": 100.0, "qe": 0.9}
    adu = photons * camera["em_gain"] / camera["e_per_adu"] / camera["qe"] + camera["baseline"]
    viewer.add_image(adu, name="beads adu", metadata={"camera_metadata": {**camera, "pixel_size_nm": 110.0},
                                                      "z_step_nm": Z_STEP})
    c = open_widget(viewer, "Calibrate")
    assert (c.z_step.value, c.pixel_size.value) == (Z_STEP, 110.0)  # from the layer
    click(c.run_button)
    wait_idle(qtbot, c)
    assert not messages["error"], messages["error"]
    assert "camera: the file's camera: baseline 100" in c.status.value
    assert c.calibration.camera["e_per_adu"] == 45.0 and c.calibration.pixel_size_nm == 110.0
    assert int(c.beads_layer.features["used"].sum()) == 1 and "fewer than 3 beads" in c.status.value
    first = c.calibration
    # Cancel: the calibration in progress is dropped; what was shown stays
    c.exclude.value = ""
    click(c.run_button)
    click(c.cancel_button)
    wait_idle(qtbot, c)
    assert c.calibration is first and c.status.value == "cancelled; nothing changed"
    assert c.run_button.enabled and not c.cancel_button.enabled and not messages["error"]

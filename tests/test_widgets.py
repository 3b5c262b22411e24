"""GUI tests in a real napari viewer (run under Xvfb: `xvfb-run -a pytest`)."""

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (scripts/setup.sh testing installs it)")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from scipy.spatial import cKDTree  # noqa: E402

from napari_smlm._sample_data import simulated_layers  # noqa: E402
from napari_smlm._widgets import EvaluateWidget, LocalizeWidget, RenderWidget, SimulateWidget, TrainWidget  # noqa: E402
from napari_smlm.core.training import load_checkpoint  # noqa: E402

from .conftest import CONFIGS  # noqa: E402,F401

EMCCD = "EMCCD default (100 ADU, 45 e-/ADU, gain 100, QE 0.9)"


@pytest.fixture
def errors(monkeypatch):
    """Messages shown to the user as error notifications."""
    import napari.utils.notifications as notifications

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def add_sample(viewer, frames=40):
    for data, kwargs, kind in simulated_layers(frames, 0):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer.layers["simulated movie"], viewer.layers["ground truth"]


def localize(qtbot, widget):
    widget.run_button.native.click()
    assert widget.worker is not None
    with qtbot.waitSignal(widget.worker.finished, timeout=180_000):
        pass
    qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)


def test_localize_render_evaluate_end_to_end(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    movie, gt = add_sample(viewer)
    w = LocalizeWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert movie in [c for c in w.image.choices]  # the picker follows the layer list
    w.image.value = movie
    w.camera.value = EMCCD
    localize(qtbot, w)
    assert not errors, errors
    layer = w.layer
    assert layer is not None and layer in viewer.layers
    shown = layer.shown.copy()
    assert 100 < shown.sum() <= len(layer.data)
    assert {"x", "y", "photons", "prob", "sigma_x", "bg"} <= set(layer.features.columns)
    assert tuple(layer.scale) == (1.0, 1.0, 1.0)
    # Most ground-truth molecules have a point within 100 nm (1 px) in their frame.
    pts, truth = layer.data[shown], gt.data
    found = 0
    for f in np.unique(truth[:, 0]):
        p = pts[pts[:, 0] == f][:, 1:]
        if len(p):
            d, _ = cKDTree(p).query(truth[truth[:, 0] == f][:, 1:])
            found += int((d <= 1.0).sum())
    assert found / len(truth) > 0.7, found / len(truth)

    # Threshold slider: instant re-filter, no new inference.
    result = w.result
    w.threshold.value = 0.95
    assert w.worker is None and w.result is result
    assert layer.shown.sum() < shown.sum()
    w.threshold.value = 0.5
    assert layer.shown.sum() == shown.sum()

    r = RenderWidget(viewer)
    r.points.value = layer
    image = r.run()
    assert image is not None and image.data.shape[0] > 300 and np.isclose(image.scale[-1], 0.1)

    e = EvaluateWidget(viewer)
    e.pred.value = layer
    e.gt.value = gt
    metrics = e.run()
    assert metrics["jaccard"] > 0.6 and not errors
    names = [lay.name for lay in viewer.layers]
    for name in ("true positives", "false positives", "false negatives (missed)", "matches"):
        assert name in names
    assert len(viewer.layers["true positives"].data) == int(metrics["tp"])


def test_train_widget_trains_and_stops(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    t = TrainWidget(viewer)
    viewer.window.add_dock_widget(t)
    t.epochs.value, t.steps.value, t.batch_size.value = 1, 3, 4
    t.output.value = str(tmp_path / "run1")
    t.start_button.native.click()
    with qtbot.waitSignal(t.worker.finished, timeout=180_000):
        pass
    assert not errors, errors
    assert (tmp_path / "run1" / "last.pt").is_file()
    assert len(t.losses) == 3 and len(t.ax_loss.lines) == 1 and len(t.ax_val.lines) == 1

    # A long run, stopped: the worker ends and last.pt loads.
    t.epochs.value, t.steps.value = 500, 20
    t.output.value = str(tmp_path / "run2")
    t.start_button.native.click()
    worker = t.worker
    qtbot.waitUntil(lambda: len(t.losses) >= 2, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        t.stop_button.native.click()
    qtbot.waitUntil(lambda: t.worker is None, timeout=5000)
    state = load_checkpoint(tmp_path / "run2" / "last.pt")
    assert 1 <= state["epoch"] < 500 and state["step"] < 500 * 20
    assert "stopped from napari" in t.status.value


def test_bad_input_is_a_notification_not_a_crash(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    w = LocalizeWidget(viewer)
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), rgb=True, name="rgb")
    w.image.value = rgb
    w.run()
    assert "RGB" in errors[-1]
    four_d = viewer.add_image(np.zeros((2, 3, 32, 32), np.uint16), name="4d")
    w.image.value = four_d
    w.run()
    assert "expected a (T, Y, X) stack" in errors[-1] and "(2, 3, 32, 32)" in errors[-1]
    movie = viewer.add_image(np.zeros((4, 32, 32), np.uint16), name="movie")
    w.image.value = movie
    w.model.value = "checkpoint file"
    w.checkpoint.value = str(tmp_path / "missing.pt")
    w.run()
    assert "missing.pt" in errors[-1] and w.worker is None
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    e = EvaluateWidget(viewer)
    e.pred.value = "file..."
    e.pred_file.value = str(bad_csv)
    e.gt.value = "file..."
    e.gt_file.value = str(bad_csv)
    assert e.run() is None
    assert "bad.csv: missing column" in errors[-1]
    # The viewer still works.
    viewer.add_points(np.zeros((1, 3)))
    assert len(viewer.layers) == 4


def test_simulate_widget_and_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    s = SimulateWidget(viewer)
    s.frames.value, s.size.value = 10, 32
    layers = s.run()
    assert [lay.name for lay in layers] == ["simulated movie", "ground truth"]
    assert layers[0].data.shape == (10, 32, 32)
    viewer.open_sample("napari-smlm", "simulated_movie")
    assert len(viewer.layers) == 4


def test_multiscale_model_in_localize_and_scale_maps(make_napari_viewer, qtbot, tmp_path, tiny_overrides, errors):
    from napari_smlm.core.config import load_config
    from napari_smlm.core.training import Trainer

    cfg = load_config(CONFIGS / "multiscale_var.yaml", [*tiny_overrides, "model.kwargs={base_channels: 8, embed_dim: 16, num_heads: 2, num_layers: 1, scales: [2, 4]}",
                                                        "loss.terms=[{name: multiscale, kwargs: {scales: [1, 2, 4]}}]", "training.epochs=1"])
    Trainer(cfg).fit()
    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=6)
    w = LocalizeWidget(viewer)
    w.image.value = movie
    w.camera.value = EMCCD
    w.model.value = "checkpoint file"
    w.checkpoint.value = str(tmp_path / "run" / "last.pt")
    localize(qtbot, w)
    assert not errors and w.layer is not None
    layers = w.show_scale_maps()
    assert [lay.data.shape for lay in layers] == [(64, 64), (128, 128), (256, 256)]
    assert np.allclose(layers[-1].scale, (0.25, 0.25))
    # a single-scale model says why it has no such maps
    w.model.value = "default (bundled)"
    assert w.show_scale_maps() == [] and "per-scale maps need a multi-scale model" in errors[-1]


def test_train_widget_architecture_choice_builds_a_valid_config(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    t = TrainWidget(viewer)
    for arch in ("multiscale_var", "fusion_unet", "double_munet", "simple_smlm_net", "sigma_munet"):
        t.architecture.value = arch
        cfg = t.config()
        assert cfg.model.architecture == arch
        Trainer_dry = __import__("napari_smlm.core.training", fromlist=["Trainer"]).Trainer
        info = Trainer_dry(cfg, write_files=False).dry_run() if arch in ("double_munet", "simple_smlm_net") else None
        assert info is None or np.isfinite(info["loss"])
    t.architecture.value = "(preset)"
    assert t.config().training.init_weights is None
    t.from_bundled.value = True
    assert t.config().training.init_weights == "default"


def test_fill_from_movie_matches_the_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=30)
    t = TrainWidget(viewer)
    t.image.value = movie
    est = t.fill_from_movie()
    # the sample: 1,000-5,000 photons, background 50, PSF sigma 130 nm
    assert 35 <= t.bg_min.value <= 50 <= t.bg_max.value <= 75
    assert 115 <= np.mean(est["sigma_nm"]) <= 145 and est["sigma_nm"][0] <= est["sigma_nm"][1]
    assert t.photons_min.value < 1500 and t.photons_max.value > 4000
    assert t.config().simulation.camera.baseline == pytest.approx(100.0)

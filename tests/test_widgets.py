"""GUI tests in a real napari viewer (run under Xvfb: `xvfb-run -a pytest`).

Every widget is opened as napari opens it (``add_plugin_dock_widget``), buttons are
clicked, workers awaited. The first session of a new user on foreign movies, Cancel,
Stop and the error paths are in test_widgets_user_path.py.
"""

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (scripts/setup.sh testing installs it)")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from scipy.spatial import cKDTree  # noqa: E402

from napari_smlm.core.inference import LocalizationModel  # noqa: E402
from napari_smlm.core.io import read_table  # noqa: E402
from napari_smlm.core.training import load_checkpoint  # noqa: E402

from .conftest import CONFIGS  # noqa: E402,F401
from .gui_helpers import add_sample, click, messages, open_widget, wait_idle  # noqa: E402,F401

EMCCD = "EMCCD preset"


def localize(qtbot, widget):
    click(widget.run_button)
    assert widget.worker is not None
    wait_idle(qtbot, widget)


def test_localize_render_evaluate_end_to_end(make_napari_viewer, qtbot, messages, tmp_path):
    viewer = make_napari_viewer()
    movie, gt = add_sample(viewer)
    w = open_widget(viewer, "Localize")
    assert w.image.value == movie  # the only movie is picked
    model_threshold = LocalizationModel.load("default").detection_threshold
    assert w.pixel_size.value == 100.0 and w.threshold.value == pytest.approx(model_threshold)  # the layer's, the model's
    w.camera.value = EMCCD
    w.first_frame.value, w.last_frame.value = 11, 35
    localize(qtbot, w)
    assert not messages["error"], messages["error"]
    layer = w.layer
    assert layer is not None and layer in viewer.layers
    shown = layer.shown.copy()
    assert 50 < shown.sum() <= len(layer.data)
    assert "frames 11–35 (25 frames)" in w.summary.value and "baseline 100 ADU" in w.summary.value
    assert "pixel 100 nm (the movie's)" in w.summary.value  # the sample layer carries it
    assert {"x", "y", "photons", "prob", "sigma_x", "bg"} <= set(layer.features.columns)
    assert tuple(layer.scale) == (1.0, 1.0, 1.0) and viewer.dims.axis_labels[0] == "frame"
    assert set(np.unique(layer.data[:, 0])) <= set(range(10, 35))
    # Most ground-truth molecules of the localized frames have a point within 100 nm (1 px).
    pts, truth = layer.data[shown], gt.data[(gt.data[:, 0] >= 10) & (gt.data[:, 0] < 35)]
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
    w.threshold.value = model_threshold
    assert layer.shown.sum() == shown.sum()

    # Export writes our CSV of the points shown.
    w.threshold.value = 0.6
    out = w.export(tmp_path / "locs.csv")
    table = read_table(out)
    assert len(table["x"]) == int(layer.shown.sum()) < int(shown.sum())
    assert open(out).readline().startswith("id,frame,x [nm],y [nm]")
    frames = np.loadtxt(out, delimiter=",", skiprows=1, usecols=1)
    assert frames.min() >= 11 and frames.max() <= 35  # 1-based in CSV
    w.threshold.value = model_threshold

    # the whole movie for Render and Evaluate
    w.first_frame.value, w.last_frame.value = 1, 0
    localize(qtbot, w)
    layer = w.layer
    assert "frames 1–40 (40 frames)" in w.summary.value

    r = open_widget(viewer, "Render")
    assert r.points.value == layer  # our localizations, not the ground truth
    click(r.button)
    wait_idle(qtbot, r)
    image = r.layer
    assert image is not None and image.data.shape[0] > 300 and np.isclose(image.scale[-1], 0.1)

    e = open_widget(viewer, "Evaluate")
    assert e.pred.value == layer and e.gt.value == gt
    metrics = e.run()
    assert metrics["jaccard"] > 0.6 and not messages["error"]
    names = [lay.name for lay in viewer.layers]
    for name in ("true positives", "false positives", "false negatives (missed)", "matches"):
        assert name in names
    tp = viewer.layers["true positives"]
    assert len(tp.data) == int(metrics["tp"])
    assert not np.allclose(tp.border_color[0], gt.border_color[0])  # not the ground truth's lime
    assert viewer.layers["matches"].edge_width[0] >= 0.25
    ax = e._figure.axes[0]
    assert ax.get_xlabel() == "recall" and ax.get_facecolor()[:3] != (1.0, 1.0, 1.0)  # napari's dark theme


def test_localize_camera_estimate_fills_the_manual_fields(make_napari_viewer, qtbot, messages):
    rng = np.random.default_rng(1)
    viewer = make_napari_viewer()
    # background rising from 100 to 400 photoelectrons, 4 ADU per photoelectron, baseline 300 ADU
    level = np.linspace(100, 400, 64)[None, None, :] * np.ones((60, 64, 1))
    movie = (rng.poisson(level) * 4.0 + 300 + rng.normal(0, 2, level.shape)).astype(np.uint16)
    layer = viewer.add_image(movie, name="flat")
    w = open_widget(viewer, "Localize")
    assert w.image.value == layer and w.camera.value == "estimate from movie"
    click(w.estimate_button)  # in a worker: the viewer stays responsive
    assert w.task is not None and not w.run_button.enabled and not w.estimate_button.enabled
    wait_idle(qtbot, w)
    report = w.camera_report
    assert report is not None, messages["error"]
    assert w.run_button.enabled and w.estimate_button.enabled
    assert w.camera.value == "manual" and not w.baseline.native.isHidden()
    # the fields hold what was estimated (accuracy of the estimate: test_camera_estimate.py)
    assert w.baseline.value == pytest.approx(report["baseline"], abs=1e-3)
    # ADU per photoelectron = EM gain / (e-/ADU)
    assert w.em_gain.value / w.e_per_adu.value == pytest.approx(report["adu_per_e"], rel=1e-3)
    if np.isfinite(report.get("baseline_err", np.nan)):
        assert f"{report['baseline']:.1f} ± {report['baseline_err']:.1f} ADU" in w.camera_info.value
    assert "baseline" in w.camera_info.value and not w.camera_info.native.isHidden()


def test_localize_estimate_keeps_a_baseline_the_user_typed(make_napari_viewer, qtbot, messages):
    """The estimate says where the movie cannot give the baseline; the user types it in the
    manual field and presses Estimate again: the baseline is kept and the gain estimated with
    it (as `localize --baseline B`). EM gain 30, 5 e-/ADU (6 ADU per photoelectron), baseline
    500 ADU, 10 photons/px: 501.4 ± 4.6 ADU and +1.8 % estimated, +0.6 % with the baseline typed
    (measured with the 3.5σ mask; 504.6 ± 6.2, +6.1 % and +0.9 % at 4σ)."""
    from napari_smlm.core.config import load_config
    from napari_smlm.core.simulation import Simulator

    cfg = load_config(None, ["simulation.emitters.density_per_um2=[0.5,0.5]", "simulation.camera.kind=emccd",
                             "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=5",
                             "simulation.camera.baseline=500", "simulation.emitters.background=[10,10]"])
    chunks, _, _ = Simulator(cfg.simulation, seed=0).simulate_movie(100)
    viewer = make_napari_viewer()
    viewer.add_image(np.concatenate([c.numpy() for c in chunks]).astype(np.uint16), name="emccd")
    w = open_widget(viewer, "Localize")
    click(w.estimate_button)
    wait_idle(qtbot, w)
    first = w.camera_report
    assert first is not None, messages["error"]
    assert "give it if you know it" in w.camera_info.value and first["baseline_err"] > 3
    w.baseline.value = 500.0  # typed
    click(w.estimate_button)
    wait_idle(qtbot, w)
    report = w.camera_report
    assert report["method"] == "background noise likelihood (baseline given)", messages["error"]
    assert w.baseline.value == 500.0 and report["baseline"] == 500.0
    assert report["adu_per_e"] == pytest.approx(6.0, rel=0.03)
    assert w.em_gain.value / w.e_per_adu.value == pytest.approx(report["adu_per_e"], rel=1e-3)
    assert "(baseline given)" in w.camera_info.value and "give it if you know it" not in w.camera_info.value
    click(w.estimate_button)  # nothing typed since: the same estimate again, the baseline still the user's
    wait_idle(qtbot, w)
    assert w.camera_report["baseline"] == 500.0


def test_train_widget_trains(make_napari_viewer, qtbot, tmp_path, messages):
    viewer = make_napari_viewer()
    t = open_widget(viewer, "Train")
    t.epochs.value, t.steps.value, t.batch_size.value = 1, 3, 4
    t.output.value = str(tmp_path / "run1")
    click(t.start_button)
    wait_idle(qtbot, t)
    assert not messages["error"], messages["error"]
    assert (tmp_path / "run1" / "last.pt").is_file() and load_checkpoint(tmp_path / "run1" / "last.pt")["epoch"] == 1
    assert len(t.losses) == 3 and len(t.ax_loss.lines) == 1 and len(t.ax_val.lines) == 2  # at the threshold, at its best
    assert messages["info"][-1].startswith("training finished (1 epochs)")
    assert t.progress.value == t.progress.max == 3
    assert "validation Jaccard" in t.status.value and "at its best threshold" in t.status.value


def test_bad_input_is_a_notification_not_a_crash(make_napari_viewer, qtbot, tmp_path, messages):
    viewer = make_napari_viewer()
    w = open_widget(viewer, "Localize")
    click(w.run_button)
    assert "choose a movie" in messages["error"][-1]
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), rgb=True, name="rgb")
    w.image.value = rgb
    w.run()
    assert "RGB" in messages["error"][-1]
    four_d = viewer.add_image(np.zeros((2, 3, 32, 32), np.uint16), name="4d")
    w.image.value = four_d
    w.run()
    assert "expected a (T, Y, X) stack" in messages["error"][-1] and "(2, 3, 32, 32)" in messages["error"][-1]
    movie = viewer.add_image(np.zeros((4, 32, 32), np.uint16), name="movie")
    w.image.value = movie
    w.model.value = "checkpoint file"
    w.checkpoint.value = str(tmp_path / "missing.pt")
    w.run()
    assert messages["error"][-1] == f"model: checkpoint file not found: {tmp_path / 'missing.pt'}"
    assert w.worker is None
    w.checkpoint.value = str(tmp_path)
    w.run()
    assert messages["error"][-1] == f"model: {tmp_path} is a folder; choose a checkpoint file"
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    e = open_widget(viewer, "Evaluate")
    e.pred.value = "file..."
    e.pred_file.value = str(tmp_path / "locs.csv")
    e.gt.value = "file..."
    e.gt_file.value = str(bad_csv)
    assert e.run() is None and messages["error"][-1] == f"localizations: file not found: {tmp_path / 'locs.csv'}"
    e.pred_file.value = str(bad_csv)
    assert e.run() is None and "both localizations and ground truth" in messages["error"][-1]
    (tmp_path / "locs.csv").write_text("a,b\n1,2\n")
    e.pred_file.value = str(tmp_path / "locs.csv")
    assert e.run() is None and "locs.csv: missing column" in messages["error"][-1]
    # The viewer still works.
    viewer.add_points(np.zeros((1, 3)))
    assert len(viewer.layers) == 4


def test_single_frame_image_gets_2d_points(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=3)
    frame = viewer.add_image(np.asarray(movie.data[1]), name="one frame", metadata={"pixel_size_nm": 100.0})
    w = open_widget(viewer, "Localize")
    w.image.value = frame
    w.camera.value = EMCCD
    localize(qtbot, w)
    assert not messages["error"], messages["error"]
    assert w.layer.data.ndim == 2 and w.layer.data.shape[1] == 2 and len(w.layer.data) > 3
    assert "frame 1 (1 frame)" in w.summary.value


def test_simulate_widget_and_sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    s = open_widget(viewer, "Simulate")
    s.frames.value, s.size.value = 10, 32
    click(s.button)
    wait_idle(qtbot, s)
    assert [lay.name for lay in s.layers] == ["simulated movie", "ground truth"]
    assert s.layers[0].data.shape == (10, 32, 32)
    viewer.open_sample("napari-smlm", "simulated_movie")
    assert len(viewer.layers) == 4


def test_multiscale_model_in_localize_and_scale_maps(make_napari_viewer, qtbot, tmp_path, tiny_overrides, messages):
    from napari_smlm.core.config import load_config
    from napari_smlm.core.training import Trainer

    cfg = load_config(CONFIGS / "multiscale_var.yaml", [
        *tiny_overrides, "model.kwargs={base_channels: 8, embed_dim: 16, num_heads: 2, num_layers: 1, scales: [2, 4]}",
        "loss.terms=[{name: multiscale, kwargs: {scales: [1, 2, 4]}}]", "training.epochs=1"])
    Trainer(cfg).fit()
    viewer = make_napari_viewer()
    add_sample(viewer, frames=6)
    w = open_widget(viewer, "Localize")
    w.camera.value = EMCCD
    w.model.value = "checkpoint file"
    w.checkpoint.value = str(tmp_path / "run" / "last.pt")
    localize(qtbot, w)
    assert not messages["error"] and w.layer is not None
    layers = w.show_scale_maps()
    assert [lay.data.shape for lay in layers] == [(64, 64), (128, 128), (256, 256)]
    assert np.allclose(layers[-1].scale, (0.25, 0.25))
    # a single-scale model says why it has no such maps
    w.model.value = "bundled (default)"
    assert w.show_scale_maps() == [] and "per-scale maps need a multi-scale model" in messages["error"][-1]


def test_train_widget_architecture_choice_builds_a_valid_config(make_napari_viewer, tmp_path):
    from napari_smlm.core.training import Trainer

    viewer = make_napari_viewer()
    t = open_widget(viewer, "Train")
    labels = [t.architecture.native.itemText(i) for i in range(t.architecture.native.count())]
    assert "multiscale_var (experimental)" in labels and "multiscale_munet (experimental)" in labels and "sigma_munet" in labels
    for arch in ("multiscale_var", "fusion_unet", "fast_net", "double_munet", "simple_smlm_net", "sigma_munet", "multiscale_munet"):
        t.architecture.value = arch
        cfg = t.config()
        assert cfg.model.architecture == arch
        info = Trainer(cfg, write_files=False).dry_run() if arch in ("double_munet", "simple_smlm_net", "multiscale_munet") else None
        assert info is None or np.isfinite(info["loss"])
    t.architecture.value = "(preset)"
    assert t.config().training.init_weights is None
    t.from_bundled.value = True
    assert t.config().training.init_weights == "default"
    t.preset.value = "fast 2D"  # starts from the bundled fast model: the same network
    assert t.from_bundled.value is False  # the preset's own choice (fast_2d.yaml starts from scratch)
    t.from_bundled.value = True
    cfg = t.config()
    assert cfg.model.architecture == "fast_net" and cfg.training.init_weights == "fast"


def test_fill_from_movie_matches_the_sample(make_napari_viewer, messages):
    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=30)
    t = open_widget(viewer, "Train")
    assert t.image.value == movie
    est = t.fill_from_movie()
    # the sample: 1,000-5,000 photons, background 50, PSF sigma 130 nm
    assert 35 <= t.bg_min.value <= 50 <= t.bg_max.value <= 75
    assert 115 <= np.mean(est["sigma_nm"]) <= 145 and est["sigma_nm"][0] <= est["sigma_nm"][1]
    assert t.photons_min.value < 1500 and t.photons_max.value > 4000
    assert t.config().simulation.camera.baseline == pytest.approx(100.0)
    assert t.camera_from_movie.value and "layer's metadata" in messages["info"][-1]


def test_fill_from_movie_says_when_it_fell_back_to_the_preset(make_napari_viewer, messages, monkeypatch):
    import napari_smlm.core.camera as camera

    def fails(*args, **kwargs):
        raise ValueError("camera estimation: the movie's background is too uniform")

    monkeypatch.setattr(camera, "estimate_camera", fails)
    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=20)
    movie.metadata = {}  # a movie that does not carry its camera
    t = open_widget(viewer, "Train")
    t.fill_from_movie()
    assert not t.camera_from_movie.value
    assert "NOT estimated" in messages["info"][-1] and "preset's camera" in messages["info"][-1]
    assert "camera from the" not in messages["info"][-1]

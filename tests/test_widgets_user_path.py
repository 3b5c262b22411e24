"""A new user's first session, the way napari runs it (issue 10).

Widgets are opened from the manifest through ``viewer.window.add_plugin_dock_widget``
(and once through the Plugins-menu action), movies are opened with our reader, and
Localize runs with its default settings on movies from an independent simulator.
Run under Xvfb: ``xvfb-run -a pytest tests/test_widgets_user_path.py``.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (scripts/setup.sh testing installs it)")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from napari_smlm._widgets import (CalibrateWidget, DriftWidget, EvaluateWidget, LocalizeWidget,  # noqa: E402
                                  RenderWidget, SimulateWidget, TrainWidget)

from .gui_helpers import (WIDGETS, add_sample, click, messages, open_widget, plugin_menu_action,  # noqa: E402,F401
                          shown_table, wait_idle)

FOREIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "foreign"
MOVIES = sorted(p.parent.name for p in FOREIGN.glob("*/movie.tif")) if FOREIGN.is_dir() else []
CLASSES = dict(zip(WIDGETS, (LocalizeWidget, RenderWidget, TrainWidget, DriftWidget, EvaluateWidget, SimulateWidget,
                            CalibrateWidget)))


def test_every_widget_opens_from_the_manifest_and_fits_a_laptop(make_napari_viewer, qtbot):
    from npe2 import PluginManager

    viewer = make_napari_viewer(show=True)
    pm = PluginManager.instance()
    pm.discover()
    names = [w.display_name for w in pm.get_manifest("napari-smlm").contributions.widgets]
    assert names == list(WIDGETS)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    for name in names:
        widget = open_widget(viewer, name)
        assert type(widget) is CLASSES[name] and widget.viewer is not None
        qtbot.wait(10)
        assert window.width() <= 1366, (name, window.width())
        # the dock scrolls: it asks for little room however long its form is
        need = widget.native.parentWidget().minimumSizeHint()
        assert need.width() <= 360 and need.height() <= 250, (name, need.width(), need.height())
        # and is as wide as its form: nothing is cut off at the right
        inner = widget._widget._mgui_get_native_widget()
        assert widget.native.viewport().width() >= inner.minimumSizeHint().width(), name
    # all seven docks open: the window still fits a 1366x768 screen
    assert window.height() <= 768 and window.width() <= 1366, (window.width(), window.height())
    # one long status line wraps instead of widening the dock
    docks = viewer.window.dock_widgets
    localize = [w for w in docks.values() if isinstance(w, LocalizeWidget)][0]
    localize.summary.value = "a very long status line " * 80
    qtbot.wait(50)
    assert window.width() <= 1366, window.width()


def test_plugins_menu_action_opens_localize(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    action = plugin_menu_action(viewer, "Localize")
    action.trigger()
    qtbot.wait(10)
    widgets = [w for w in viewer.window.dock_widgets.values() if isinstance(w, LocalizeWidget)]
    assert len(widgets) == 1


def _emitters(folder: Path) -> dict:
    gt = np.loadtxt(folder / "emitters.csv", delimiter=",", skiprows=1, ndmin=2)
    return {"frame": gt[:, 0].astype(int) - 1, "x": gt[:, 1], "y": gt[:, 2], "z": gt[:, 3], "photons": gt[:, 4]}


@pytest.mark.skipif(not MOVIES, reason=f"no foreign movies in {FOREIGN}")
@pytest.mark.parametrize("name", MOVIES)
def test_localize_default_settings_on_a_foreign_movie(make_napari_viewer, qtbot, messages, name):
    """Acceptance test of issue 10: open the movie, open Localize, type the pixel size,
    press Localize; everything else at its default."""
    from napari_smlm.core.evaluation import evaluate

    folder = FOREIGN / name
    truth = json.loads((folder / "camera.json").read_text())
    viewer = make_napari_viewer()
    (layer,) = viewer.open(folder / "movie.tif", plugin="napari-smlm")
    w = open_widget(viewer, "Localize")
    assert w.image.value == layer  # the only movie is picked
    w.pixel_size.value = truth["pixel_size_nm"]  # the TIFF does not carry it; the user types it
    click(w.run_button)
    wait_idle(qtbot, w)
    assert not messages["error"], messages["error"]
    assert w.layer is not None and w.layer in viewer.layers
    metrics, _ = evaluate(shown_table(w.layer, truth["pixel_size_nm"]), _emitters(folder), 250.0, 500.0)
    assert metrics["jaccard"] >= 0.8, (name, metrics["jaccard"], w.summary.value)
    assert "camera: " in w.summary.value and "120 frames" in w.summary.value
    assert f"pixel {truth['pixel_size_nm']:g} nm as set above: the movie does not say its pixel size" in w.summary.value


@pytest.mark.skipif("emccd_gradient" not in MOVIES, reason=f"no foreign movie emccd_gradient in {FOREIGN}")
def test_localize_with_the_bundled_fast_model(make_napari_viewer, qtbot, messages):
    """The fast preset from the model menu, everything else at its default (issue 13):
    it localizes a foreign movie about as well as the default model (measured 0.85,
    default 0.87, from the command line)."""
    from napari_smlm.core.evaluation import evaluate

    folder = FOREIGN / "emccd_gradient"
    truth = json.loads((folder / "camera.json").read_text())
    viewer = make_napari_viewer()
    viewer.open(folder / "movie.tif", plugin="napari-smlm")
    w = open_widget(viewer, "Localize")
    w.model.value = "bundled fast"
    assert w.threshold.value == pytest.approx(0.2)  # the fast model's own threshold
    w.pixel_size.value = truth["pixel_size_nm"]
    click(w.run_button)
    wait_idle(qtbot, w)
    assert not messages["error"], messages["error"]
    metrics, _ = evaluate(shown_table(w.layer, truth["pixel_size_nm"]), _emitters(folder), 250.0, 500.0)
    assert metrics["jaccard"] >= 0.8, (metrics["jaccard"], w.summary.value)
    assert "with fast_2d.pt" in w.summary.value, w.summary.value


def test_localize_suggests_the_fast_model_for_a_large_movie(make_napari_viewer):
    viewer = make_napari_viewer()
    small = viewer.add_image(np.zeros((20, 64, 64), np.uint16), name="small")
    w = open_widget(viewer, "Localize")
    assert w.image.value is small and w.summary.value == ""
    big = viewer.add_image(np.broadcast_to(np.uint16(100), (1200, 256, 256)), name="big")  # no memory
    w.image.value = big
    assert "large movie (1,200 frames of 256x256)" in w.summary.value and "bundled fast" in w.summary.value
    w.model.value = "bundled fast"
    assert w.summary.value == ""
    w.model.value = "bundled (default)"
    w.image.value = small
    assert w.summary.value == ""


def test_localize_shows_the_movies_frame_range(make_napari_viewer):
    """The range fields show the chosen movie's frames, 1 to its length, not "0"."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 64, 64), np.uint16), name="small")
    w = open_widget(viewer, "Localize")
    assert (w.first_frame.value, w.last_frame.value, w.last_frame.max) == (1, 20, 20)
    w.first_frame.value, w.last_frame.value = 5, 9
    w.image.value = viewer.add_image(np.broadcast_to(np.uint16(100), (1200, 256, 256)), name="big")
    assert (w.first_frame.value, w.last_frame.value, w.first_frame.max) == (1, 1200, 1200)


def test_pixel_size_comes_from_the_tiff(make_napari_viewer, tmp_path):
    import tifffile

    path = tmp_path / "imagej.tif"
    movie = np.random.default_rng(0).poisson(100, (5, 32, 32)).astype(np.uint16)
    tifffile.imwrite(path, movie, imagej=True, resolution=(1 / 0.16, 1 / 0.16), metadata={"unit": "um"})
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-smlm")
    w = open_widget(viewer, "Localize")
    assert w.image.value == layer and w.pixel_size.value == pytest.approx(160.0)
    t = open_widget(viewer, "Train")
    assert t.pixel_size.value == pytest.approx(160.0)


def test_cancel_returns_localize_to_idle(make_napari_viewer, qtbot, messages):
    from napari.utils import progress

    viewer = make_napari_viewer()
    movie, _ = add_sample(viewer, frames=100)
    long_movie = viewer.add_image(np.tile(movie.data, (12, 1, 1)), name="long movie")  # 1,200 frames
    w = open_widget(viewer, "Localize")
    w.image.value = long_movie
    w.camera.value = "EMCCD preset"
    click(w.run_button)
    assert w.worker is not None and not w.run_button.enabled and w.cancel_button.enabled
    w.worker.yielded.connect(lambda *_: w.cancel_button.enabled and click(w.cancel_button))  # at the first progress
    wait_idle(qtbot, w, timeout=60_000)
    assert w.run_button.enabled and not w.cancel_button.enabled
    assert "cancelled after" in w.summary.value and "of 1200 frames" in w.summary.value
    assert w.layer is None and not messages["error"], messages["error"]
    assert any("cancelled after" in m for m in messages["info"])
    assert not [p for p in progress._all_instances if "localizing" in str(p.desc)]  # activity bar closed
    # and it runs again afterwards
    w.image.value = movie
    w.last_frame.value = 5
    click(w.run_button)
    wait_idle(qtbot, w)
    assert w.layer is not None and "5 frames" in w.summary.value


def test_simulate_runs_in_a_worker_and_cancels(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    s = open_widget(viewer, "Simulate")
    s.frames.value, s.size.value = 12, 32
    click(s.button)
    assert s.worker is not None and not s.button.enabled  # the GUI thread is free meanwhile
    wait_idle(qtbot, s)
    assert [lay.name for lay in s.layers] == ["simulated movie", "ground truth"]
    assert s.layers[0].data.shape == (12, 32, 32) and s.progress.value == 100
    assert viewer.dims.axis_labels[0] == "frame"
    # a long one, cancelled after its first chunk: nothing is added
    s.frames.value, s.size.value = 4000, 128
    click(s.button)
    qtbot.waitUntil(lambda: s.progress.value > 0, timeout=60_000)
    click(s.stop_button)
    wait_idle(qtbot, s, timeout=60_000)
    assert len(viewer.layers) == 2 and s.button.enabled and "cancelled" in s.status.value
    assert not messages["error"], messages["error"]


def test_errors_appear_once_in_the_guis_words(make_napari_viewer, qtbot, messages, tmp_path, monkeypatch):
    from argparse import Namespace

    import torch

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).poisson(100, (6, 32, 32)).astype(np.uint16), name="movie")
    w = open_widget(viewer, "Localize")
    w.camera.value = "EMCCD preset"
    # an empty checkpoint field is not "the current directory"
    w.model.value = "checkpoint file"
    click(w.run_button)
    assert messages["error"][-1] == "model: choose a checkpoint file (.pt), or a bundled model"
    # a checkpoint that only unpickling could read: no advice to load it unsafely
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"weights": torch.zeros(2), "args": Namespace(lr=1)}, unsafe)  # not weights_only-safe
    w.checkpoint.value = str(unsafe)
    click(w.run_button)
    assert "unsafe.pt" in messages["error"][-1] and "weights_only" not in messages["error"][-1]
    assert "--" not in messages["error"][-1] and w.worker is None
    # an error inside the worker: shown once, named by field, widget idle again
    w.model.value = "bundled (default)"
    w.device.value = "cuda"
    n = len(messages["error"])
    if not torch.cuda.is_available():
        click(w.run_button)
        wait_idle(qtbot, w)
        assert messages["error"][n:] == ["device cuda: no CUDA device is available"]
        n += 1
    # a failed camera estimate says what to do instead
    import napari_smlm.core.camera as core_camera

    def too_uniform(*args, **kwargs):
        raise ValueError("camera estimation: the movie's background is too uniform")

    monkeypatch.setattr(core_camera, "estimate_camera", too_uniform)
    assert w.estimate_camera() is None
    assert messages["error"][n:] == ["camera estimation: the movie's background is too uniform; "
                                     "choose 'manual' and type the camera's values"]
    n += 1
    click(w.estimate_button)  # the button's worker: the same message, once
    wait_idle(qtbot, w)
    assert messages["error"][n:] == ["camera estimation: the movie's background is too uniform; "
                                     "choose 'manual' and type the camera's values"]
    assert w.run_button.enabled and w.estimate_button.enabled
    assert w.camera.value == "EMCCD preset"  # unchanged
    n += 1
    # a RuntimeError (how torch fails) in the worker: reported once, not swallowed by superqt
    import napari_smlm.core.localize as core_localize

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(core_localize, "localize", broken)
    w.device.value = "cpu"
    click(w.run_button)
    wait_idle(qtbot, w, timeout=30_000)
    assert messages["error"][n:] == ["CUDA error: an illegal memory access was encountered"]
    assert w.run_button.enabled and "failed" in w.summary.value


def test_train_errors_and_stop(make_napari_viewer, qtbot, messages, tmp_path, monkeypatch):
    from napari_smlm.core.training import load_checkpoint

    viewer = make_napari_viewer()
    t = open_widget(viewer, "Train")
    t.output.value = str(tmp_path / "run")
    t.resume.value = str(tmp_path / "missing.pt")
    click(t.start_button)
    assert t.worker is None and len(messages["error"]) == 1
    assert messages["error"][0] == f"resume from: checkpoint file not found: {tmp_path / 'missing.pt'}"
    t.resume.line_edit.value = ""  # the user clears the field
    t.epochs.value, t.steps.value, t.batch_size.value = 500, 10, 4
    click(t.start_button)
    worker = t.worker
    qtbot.waitUntil(lambda: len(t.losses) >= 3, timeout=120_000)
    assert "epoch 1 of 500, step" in t.status.value and " left" in t.status.value
    assert 3 <= t.progress.value < t.progress.max == 5000
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        click(t.stop_button)
    wait_idle(qtbot, t, timeout=5000)
    assert len(messages["error"]) == 1, messages["error"]
    assert messages["info"][-1].startswith("training stopped after epoch 1 of 500")
    assert "finished" not in messages["info"][-1]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and state["step"] < 500 * 10
    # the same output again: the user is asked; No leaves the run as it was, before any work
    import napari_smlm._widgets._common as common

    asked = []
    monkeypatch.setattr(common, "ask", lambda parent, q: asked.append(q) or False)
    click(t.start_button)
    assert t.worker is None and len(asked) == 1
    assert f"{tmp_path / 'run'} already holds a training run (last.pt, best.pt, metrics.csv; 1 epoch(s)" in asked[0]
    assert "not started" in t.status.value and load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    # Yes replaces it with a new run (the trainer is told so: without that it refuses)
    monkeypatch.setattr(common, "ask", lambda parent, q: True)
    t.epochs.value, t.steps.value = 1, 2
    click(t.start_button)
    assert t.worker is not None
    wait_idle(qtbot, t, timeout=120_000)
    assert len(messages["error"]) == 1, messages["error"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    # the plots carry labels and a fixed Jaccard axis
    assert t.ax_loss.get_ylabel() == "loss" and t.ax_loss.get_xlabel() == "step"
    assert t.ax_val.get_ylim() == (0.0, 1.0)


def test_evaluate_never_compares_a_layer_with_itself(make_napari_viewer, messages):
    viewer = make_napari_viewer()
    pts = viewer.add_points(np.array([[0, 5.0, 5.0], [1, 8.0, 8.0]]), name="some points")
    e = open_widget(viewer, "Evaluate")
    assert not (e.pred.value == pts and e.gt.value == pts)
    e.pred.value = pts
    e.gt.value = pts
    assert e.run() is None
    assert "both localizations and ground truth" in messages["error"][-1]
    assert e.table.value == ""


@pytest.mark.skipif("emccd_160nm" not in MOVIES, reason=f"no foreign movie emccd_160nm in {FOREIGN}")
def test_evaluate_tells_a_user_who_kept_the_default_pixel_size(make_napari_viewer, qtbot, messages):
    """The 160 nm movie does not state its pixel size; a user who leaves Localize's
    100 nm and evaluates against the ground truth file sees almost nothing match: the
    Evaluate dock says why and what to type."""
    from napari_smlm._widgets.evaluate import FROM_FILE

    folder = FOREIGN / "emccd_160nm"
    viewer = make_napari_viewer()
    viewer.open(folder / "movie.tif", plugin="napari-smlm")
    w = open_widget(viewer, "Localize")
    click(w.run_button)
    wait_idle(qtbot, w)
    e = open_widget(viewer, "Evaluate")
    shown = lambda label: not label.native.isHidden()  # noqa: E731 - the viewer is not on screen
    assert e.pred.value == w.layer and not shown(e.hint)
    e.gt.value = FROM_FILE
    e.gt_file.value = folder / "emitters.csv"
    click(e.button)
    assert not messages["error"], messages["error"]
    assert e.metrics["jaccard"] < 0.1
    assert shown(e.hint) and "Localize's pixel field at 160 nm (1.60 × the 100 nm used)" in e.hint.value
    # done as told, the hint goes
    w.pixel_size.value = 160.0
    click(w.run_button)
    wait_idle(qtbot, w)
    e.pred.value = w.layer
    assert e.gt.value == FROM_FILE  # the user's choice of a file stays through new layers
    click(e.button)
    assert e.metrics["jaccard"] > 0.85 and not shown(e.hint) and e.hint.value == ""


@pytest.mark.skipif("emccd_gradient" not in MOVIES, reason=f"no foreign movie emccd_gradient in {FOREIGN}")
def test_a_movie_with_channels_opens_as_a_layer_per_channel_and_localizes(make_napari_viewer, qtbot, messages, tmp_path):
    """A two-channel acquisition (ImageJ TCYX) dragged into napari: a layer per channel;
    Localize with its defaults on channel 2 gives what the single-channel movie gives."""
    import tifffile

    folder = FOREIGN / "emccd_gradient"
    movie = tifffile.imread(folder / "movie.tif")
    tifffile.imwrite(tmp_path / "two.tif", np.stack([movie[::-1], movie], 1), imagej=True, metadata={"axes": "TCYX"})
    viewer = make_napari_viewer()
    layers = viewer.open(tmp_path / "two.tif", plugin="napari-smlm")
    assert [lay.name for lay in layers] == ["two channel 1", "two channel 2"]
    w = open_widget(viewer, "Localize")
    w.image.value = layers[1]
    click(w.run_button)
    wait_idle(qtbot, w)
    assert not messages["error"], messages["error"]
    assert w.layer.name == "two channel 2 localizations"
    # the same file as one 4D layer (napari's own reader): said what to do
    four_d = viewer.add_image(tifffile.imread(tmp_path / "two.tif"), name="4D")
    w.image.value = four_d
    click(w.run_button)
    assert "got shape (120, 2, 64, 64) (channels" in messages["error"][-1]
    assert "napari-smlm's reader" in messages["error"][-1] and "a layer per channel" in messages["error"][-1]
    messages["error"].clear()
    w.image.value = layers[1]
    from napari_smlm.core.evaluation import evaluate

    metrics, _ = evaluate(shown_table(w.layer, 100.0), _emitters(folder), 250.0)
    assert metrics["jaccard"] >= 0.8, metrics["jaccard"]


def test_messages_never_pass_on_pytorchs_unsafe_loading_advice():
    from napari_smlm._widgets._common import user_message

    raw = ("run/x.pt: cannot load: Weights only load failed. This file can still be loaded, to do so you have two "
           "options, do those steps only if you trust the source of the checkpoint.\n\t(1) In PyTorch 2.6, we changed "
           "the default value of the `weights_only` argument in `torch.load` from `False` to `True`. Re-running "
           "`torch.load` with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
           "execution.\n\tWeightsUnpickler error: Unsupported global: GLOBAL argparse.Namespace was not an allowed "
           "global by default. Please use `torch.serialization.add_safe_globals([argparse.Namespace])`.")
    assert user_message(raw) == ("run/x.pt: cannot load: Weights only load failed. "
                                 "The file holds more than weights and is not loaded.")
    assert user_message("--model x.pt: not found; --device cuda: no GPU") == "model x.pt: not found; device cuda: no GPU"


def test_drift_widget_corrects_undoes_merges_and_measures(make_napari_viewer, qtbot, messages):
    """Drift from the Plugins menu on a drifting localization layer, default settings."""
    from napari_smlm._layers import table_to_points

    from .test_analysis import acquisition

    table, true = acquisition(frames=2000, seed=7)
    data, features = table_to_points({k: v for k, v in table.items() if k != "molecule"}, 100.0)
    viewer = make_napari_viewer()
    layer = viewer.add_points(data, features=features, name="locs", metadata={"pixel_size_nm": 100.0,
                                                                             "napari_smlm": "localizations"})
    w = open_widget(viewer, "Drift")
    assert w.points.value == layer  # our localizations, picked
    before = np.array(layer.data)
    click(w.correct_button)
    wait_idle(qtbot, w)
    assert not messages["error"], messages["error"]
    assert "corrected: drift up to" in w.status.value and w.undo_button.enabled
    f = table["frame"]
    err = np.asarray(layer.features["x"]) - (table["x"] - true[f, 0])
    assert np.std(err) < 8 and np.std(err) < 0.2 * np.std(true[f, 0])
    assert np.allclose((layer.data[:, 2] + 0.5) * 100.0, layer.features["x"])  # points and features move together
    click(w.undo_button)
    assert np.allclose(layer.data, before) and not w.undo_button.enabled
    click(w.merge_button)
    wait_idle(qtbot, w)
    merged = viewer.layers["locs merged"]
    assert 0 < len(merged.data) < 0.8 * len(layer.data) and "merged" in w.status.value
    click(w.resolution_button)
    wait_idle(qtbot, w)
    assert "FRC" in w.status.value and "NeNA precision 1" in w.status.value, w.status.value  # 12 nm simulated
    w.points.value = None
    click(w.correct_button)
    assert messages["error"] and "choose a Points layer" in messages["error"][-1]


def test_drift_from_fiducials_picked_by_hand(make_napari_viewer, qtbot, messages):
    from napari_smlm._layers import table_to_points

    from .test_analysis import acquisition

    table, true = acquisition(fiducials=3, seed=1)
    beads = [(table["x"][(table["molecule"] == m) & (table["frame"] < 20)].mean(),
              table["y"][(table["molecule"] == m) & (table["frame"] < 20)].mean()) for m in (-1, -2, -3)]
    data, features = table_to_points({k: v for k, v in table.items() if k != "molecule"}, 100.0)
    viewer = make_napari_viewer()
    layer = viewer.add_points(data, features=features, name="locs", metadata={"pixel_size_nm": 100.0,
                                                                             "napari_smlm": "localizations"})
    w = open_widget(viewer, "Drift")
    w.method.value = "fiducial markers"
    # the user clicks two of the three beads with the Points tool (2D points, pixel coordinates)
    picked = viewer.add_points(np.array([[y / 100 - 0.5, x / 100 - 0.5] for x, y in beads[:2]]) + 0.3, name="beads")
    w.points.value = layer
    w.markers.value = picked
    click(w.correct_button)
    wait_idle(qtbot, w)
    assert not messages["error"], messages["error"]
    assert "markers 2" in w.status.value, w.status.value
    f = table["frame"]
    for k, key in enumerate(("x", "y")):  # each point moved by the drift at its frame, found to < 3 nm
        moved = table[key] - np.asarray(layer.features[key])
        assert np.std(moved - true[f, k]) < 3.0
    # markers where there are none: one clear error
    w.undo()
    picked.data = np.array([[1.0, 1.0]])
    click(w.correct_button)
    wait_idle(qtbot, w)
    assert messages["error"] and "no marker near the picked positions" in messages["error"][-1]


def test_localize_merge_checkbox(make_napari_viewer, qtbot, messages, tmp_path):
    """Issue 14: merging is a checkbox of Localize: a second layer with one point per molecule
    on in consecutive frames, following the sliders, and what Export writes while ticked."""
    from napari_smlm.core.io import read_table

    viewer = make_napari_viewer()
    add_sample(viewer, frames=40)
    w = open_widget(viewer, "Localize")
    assert not w.merge.value  # off by default
    click(w.run_button)
    wait_idle(qtbot, w)
    shown = int(np.asarray(w.layer.shown).sum())
    w.merge.value = True
    merged = w.merged_layer
    assert merged is not None and merged in viewer.layers and merged.name.endswith("merged")
    n = len(merged.data)
    assert 0 < n < 0.9 * shown and int(merged.features["n_frames"].sum()) == shown
    assert f"merged into {n:,}" in w.summary.value
    w.threshold.value = 0.9  # the sliders re-merge what they show
    assert w.merged_layer is not None and len(w.merged_layer.data) < n
    path = w.export(tmp_path / "merged.csv")
    assert path is not None and len(read_table(path)["x"]) == len(w.merged_layer.data)
    w.merge.value = False
    assert w.merged_layer is None and not any(layer.name.endswith("merged") for layer in viewer.layers)
    assert not messages["error"], messages["error"]

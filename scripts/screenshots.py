"""Regenerate the user-guide screenshots from a real napari viewer.

    xvfb-run -a .venv/bin/python scripts/screenshots.py [OUT_DIR [NAME ...]]   (default docs/images, all)

The window is 1366×768 (a laptop screen). Each widget is opened as the Plugins menu
opens it (``add_plugin_dock_widget``), alone, driven as a user would (values set,
buttons clicked, workers awaited), and the whole window is saved as PNG.
"""

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_smlm._sample_data import simulated_layers

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
ONLY = set(sys.argv[2:])  # e.g. "drift" or "calibrate": only those screenshots
OUT.mkdir(parents=True, exist_ok=True)
app = QApplication.instance() or QApplication([])


def wait(widget, timeout=900):
    t0 = time.time()
    while widget.task is not None and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.05)
    app.processEvents()


def shot(viewer, name):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(5):
        app.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(OUT / name), canvas_only=False, flash=False)
    print("wrote", OUT / name)


def zoom_on_molecules(viewer, frame=20):
    viewer.dims.set_point(0, frame)
    viewer.camera.center = (0, 20, 20)
    viewer.camera.zoom = 10


_open = []


def open_alone(viewer, name):
    """Close the widget opened before, open ``name`` from the Plugins menu's command."""
    while _open:
        viewer.window.remove_dock_widget(_open.pop())
    dock, widget = viewer.window.add_plugin_dock_widget("napari-smlm", name)
    _open.append(dock)
    app.processEvents()
    return widget


def drift_shot():
    """A drifting acquisition (benchmarks/drift.py's simulator: rings, 5,000 frames),
    corrected with the Drift widget's defaults, rendered before and after."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from drift import acquisition

    from napari_smlm._layers import table_to_points

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    table, _, _, _ = acquisition("rings", 5000, seed=11, field=6400.0, per_frame=3.0)
    data, features = table_to_points(table, 100.0)
    points = viewer.add_points(data, features=features, name="drifting localizations", size=0.3, border_width=0,
                               out_of_slice_display=True, face_color="white",
                               metadata={"pixel_size_nm": 100.0, "napari_smlm": "localizations"})
    from napari_smlm._layers import points_to_table, render_layer_kwargs
    from napari_smlm.core.render import render

    def rendered(name):
        image = render(points_to_table(points.data, dict(points.features), 100.0), 5.0, shape_nm=(6600.0, 6600.0))
        return viewer.add_image(image, name=name, colormap="hot", blending="additive",
                                contrast_limits=(0, float(np.percentile(image[image > 0], 99.5))),
                                **render_layer_kwargs(5.0, 100.0))

    before = rendered("render before correction")
    drift = open_alone(viewer, "Drift")
    drift.correct()
    wait(drift)
    rendered("render after correction")
    before.visible = points.visible = False
    viewer.dims.axis_labels = ("frame", "y", "x")
    viewer.reset_view()
    viewer.camera.zoom *= 4
    viewer.camera.center = (0, 20, 20)
    shot(viewer, "drift.png")
    viewer.close()


def calibrate_shot():
    """A bead z-stack (benchmarks/astig_3d.py's pupil-function beads, /work/astig3d/beads or
    NAPARI_SMLM_BEADS), calibrated with the Calibrate widget: beads numbered, the averaged
    PSF beside the stack at z = +300 nm, σx(z), σy(z) and the residuals in the dock."""
    import os
    import shutil

    source = Path(os.environ.get("NAPARI_SMLM_BEADS", "/work/astig3d/beads/beads.tif"))
    if not source.is_file():
        print(f"calibrate.png skipped: no bead stack at {source} (set NAPARI_SMLM_BEADS)")
        return
    work = Path(tempfile.mkdtemp(prefix="napari-smlm-screenshot-beads-"))
    beads = work / source.name
    shutil.copy(source, beads)
    _open.clear()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.open(str(beads), plugin="napari-smlm")
    cal = open_alone(viewer, "Calibrate")
    cal.z_step.value = 10.0
    cal.run()
    wait(cal)
    cal.save(work / "psf.h5")
    viewer.reset_view()
    stack = viewer.layers[beads.stem]
    viewer.dims.set_current_step(0, int(stack.data.shape[0] * 0.7))  # above focus: the PSF is stretched
    shot(viewer, "calibrate.png")
    viewer.close()


def localize_3d_shot():
    """An astigmatic movie (benchmarks/astig_3d.py's 0.2 /µm² movie, NAPARI_SMLM_3D_MOVIE)
    localized with a 3D model trained from its beads (NAPARI_SMLM_3D_MODEL), points coloured
    by z, then rendered coloured by z with the Render widget's colour bar."""
    import os

    movie = Path(os.environ.get("NAPARI_SMLM_3D_MOVIE", "/work/astig3d/movie_0.2/movie.tif"))
    model = Path(os.environ.get("NAPARI_SMLM_3D_MODEL", "runs/astig_3d/best.pt"))
    if not (movie.is_file() and model.is_file()):
        print(f"localize_3d.png skipped: set NAPARI_SMLM_3D_MOVIE ({movie}) and NAPARI_SMLM_3D_MODEL ({model})")
        return
    _open.clear()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.open(str(movie), plugin="napari-smlm")
    loc = open_alone(viewer, "Localize")
    loc.model.value = "checkpoint file"
    loc.checkpoint.value = str(model)
    loc.camera.value = "EMCCD preset"  # the benchmark's camera (baseline 100, 45 e-/ADU, gain 100)
    loc.run()
    wait(loc)
    zoom_on_molecules(viewer)
    shot(viewer, "localize_3d.png")
    render = open_alone(viewer, "Render")
    render.mode.value = "colour by z"
    render.run()
    wait(render)
    loc.layer.visible = False
    viewer.layers[movie.stem].visible = False
    viewer.reset_view()
    shot(viewer, "render_3d_benchmark.png")
    viewer.close()


def localize_shot():
    """localize.png alone: the sample, Localize with the camera estimated, run."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    for data, kwargs, kind in simulated_layers(100, 0):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers.selection.active = viewer.layers["simulated movie"]
    loc = open_alone(viewer, "Localize")
    if loc.estimate_camera() is None:
        loc.camera.value = "EMCCD preset"
    loc.run()
    wait(loc)
    zoom_on_molecules(viewer)
    shot(viewer, "localize.png")
    viewer.close()


if ONLY and ONLY <= {"drift", "calibrate", "localize_3d", "localize"}:
    if "localize" in ONLY:
        localize_shot()
    if "drift" in ONLY:
        drift_shot()
    if "calibrate" in ONLY:
        calibrate_shot()
    if "localize_3d" in ONLY:
        localize_3d_shot()
    sys.exit(0)

viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1366, 768)
for data, kwargs, kind in simulated_layers(100, 0):
    getattr(viewer, f"add_{kind}")(data, **kwargs)
movie, gt = viewer.layers["simulated movie"], viewer.layers["ground truth"]
viewer.layers.selection.active = movie

loc = open_alone(viewer, "Localize")
if loc.estimate_camera() is None:  # Estimate: the manual fields filled from the movie, ± shown
    loc.camera.value = "EMCCD preset"  # the sample's camera
loc.run()
wait(loc)
zoom_on_molecules(viewer)
shot(viewer, "localize.png")
locs = loc.layer

render = open_alone(viewer, "Render")
render.run()
wait(render)
for layer in (locs, gt):
    layer.visible = False
viewer.reset_view()
shot(viewer, "render.png")
render.layer.visible = False
locs.visible = gt.visible = True

ev = open_alone(viewer, "Evaluate")
ev.run()
locs.visible = gt.visible = False
zoom_on_molecules(viewer)
shot(viewer, "evaluate.png")
for layer in ev.layers:
    layer.visible = False
locs.visible = True

tr = open_alone(viewer, "Train")
# the preset (quick) defaults: 8 epochs of 60 steps, about a minute on 2 CPU cores
tr.output.value = tempfile.mkdtemp(prefix="napari-smlm-screenshot-run-")
tr.start()
t0 = time.time()
while len(tr.val) < 5 and tr.task is not None and time.time() - t0 < 900:  # mid-run: progress, time left
    app.processEvents()
    time.sleep(0.05)
bar = tr.native.verticalScrollBar()  # the curves are at the end of the form
bar.setValue(bar.maximum())
shot(viewer, "train.png")
wait(tr)

sim = open_alone(viewer, "Simulate")
sim.frames.value = 50
sim.run()
wait(sim)
for layer in viewer.layers:
    layer.visible = layer in sim.layers
zoom_on_molecules(viewer, frame=10)
shot(viewer, "simulate.png")
viewer.close()

drift_shot()
calibrate_shot()
localize_3d_shot()

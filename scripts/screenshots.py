"""Regenerate the user-guide screenshots from a real napari viewer.

    xvfb-run -a .venv/bin/python scripts/screenshots.py [OUT_DIR]   (default docs/images)

The window is 1366×768 (a laptop screen). Each widget is opened as the Plugins menu
opens it (``add_plugin_dock_widget``), alone, driven as a user would (values set,
buttons clicked, workers awaited), and the whole window is saved as PNG.
"""

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_smlm._sample_data import simulated_layers

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
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

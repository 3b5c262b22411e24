"""Regenerate the user-guide screenshots from a real napari viewer.

    xvfb-run -a .venv/bin/python scripts/screenshots.py [OUT_DIR]   (default docs/images)

Each widget is docked alone, driven as a user would (values set, buttons
clicked, workers awaited), and the whole window is saved as PNG.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_smlm._sample_data import simulated_layers
from napari_smlm._widgets import EvaluateWidget, LocalizeWidget, RenderWidget, SimulateWidget, TrainWidget

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
OUT.mkdir(parents=True, exist_ok=True)
app = QApplication.instance() or QApplication([])


def wait(widget, timeout=600):
    t0 = time.time()
    while widget.worker is not None and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.05)


def shot(viewer, name):
    app.processEvents()
    viewer.screenshot(str(OUT / name), canvas_only=False, flash=False)
    print("wrote", OUT / name)


def zoom_on_molecules(viewer, frame=20):
    viewer.dims.set_point(0, frame)
    viewer.camera.center = (0, 20, 20)
    viewer.camera.zoom = 12


def dock_only(viewer, widget, name):
    for dock in list(viewer.window._dock_widgets.values()):
        if dock.name not in ("layer controls", "layer list"):
            viewer.window.remove_dock_widget(dock)
    viewer.window.add_dock_widget(widget, name=name, area="right")


viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1400, 900)
for data, kwargs, kind in simulated_layers(100, 0):
    getattr(viewer, f"add_{kind}")(data, **kwargs)
movie, gt = viewer.layers["simulated movie"], viewer.layers["ground truth"]

loc = LocalizeWidget(viewer)
dock_only(viewer, loc, "Localize")
loc.image.value = movie
loc.camera.value = "EMCCD default (100 ADU, 45 e-/ADU, gain 100, QE 0.9)"
loc.run()
wait(loc)
gt.visible = True
zoom_on_molecules(viewer)
shot(viewer, "localize.png")

render = RenderWidget(viewer)
dock_only(viewer, render, "Render")
render.points.value = loc.layer
image = render.run()
for layer in (loc.layer, gt):
    layer.visible = False
viewer.reset_view()
shot(viewer, "render.png")
image.visible = False
loc.layer.visible = gt.visible = True

ev = EvaluateWidget(viewer)
dock_only(viewer, ev, "Evaluate")
ev.pred.value = loc.layer
ev.gt.value = gt
ev.run()
loc.layer.visible = gt.visible = False
zoom_on_molecules(viewer)
shot(viewer, "evaluate.png")
for layer in ev.layers:
    layer.visible = False

tr = TrainWidget(viewer)
dock_only(viewer, tr, "Train")
tr.image.value = movie
# the preset (smoke) defaults: 8 epochs of 60 steps, about a minute on 2 CPU cores
tr.output.value = "/tmp/napari-smlm-screenshot-run"
tr.start()
wait(tr)
shot(viewer, "train.png")

sim = SimulateWidget(viewer)
dock_only(viewer, sim, "Simulate")
shot(viewer, "simulate.png")
viewer.close()

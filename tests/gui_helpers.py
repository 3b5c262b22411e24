"""Helpers for the GUI tests: open widgets the way napari does, wait for workers, catch toasts."""

import numpy as np
import pytest

WIDGETS = ("Localize", "Render", "Train", "Drift", "Evaluate", "Simulate", "Calibrate")


@pytest.fixture
def messages(monkeypatch):
    """Notifications shown to the user: {'error': [...], 'info': [...]}."""
    import napari.utils.notifications as notifications

    seen = {"error": [], "info": []}
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen["error"].append(str(msg)))
    monkeypatch.setattr(notifications, "show_info", lambda msg: seen["info"].append(str(msg)))
    return seen


def open_widget(viewer, name):
    """The widget, opened as napari's Plugins menu opens it (manifest, viewer injected)."""
    dock, widget = viewer.window.add_plugin_dock_widget("napari-smlm", name)
    assert dock is not None and widget is not None
    return widget


def plugin_menu_action(viewer, name):
    """The QAction under Plugins → napari-smlm → ``name``."""
    for action in viewer.window.plugins_menu.actions():
        if action.text() == "napari-smlm" and action.menu() is not None:
            for sub in action.menu().actions():
                if sub.text() == name:
                    return sub
    raise AssertionError(f"Plugins → napari-smlm → {name} not in the menu")


def click(button):
    button.native.click()


def wait_idle(qtbot, widget, timeout=180_000):
    """Wait until the widget's worker has finished and the widget is idle again."""
    qtbot.waitUntil(lambda: widget.task is None, timeout=timeout)


def add_sample(viewer, frames=40):
    from napari_smlm._sample_data import simulated_layers

    for data, kwargs, kind in simulated_layers(frames, 0):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer.layers["simulated movie"], viewer.layers["ground truth"]


def shown_table(layer, pixel_size_nm):
    from napari_smlm._layers import points_to_table

    shown = np.asarray(layer.shown, bool)
    return points_to_table(layer.data[shown], {k: np.asarray(v)[shown] for k, v in layer.features.items()},
                           pixel_size_nm)

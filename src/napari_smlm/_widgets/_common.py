"""Helpers shared by the dock widgets: workers, layer pickers, notifications."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generator

import numpy as np

_DONE = object()


def iterate_callback(fn: Callable, callback_kw: str, **kwargs) -> Generator[Any, None, Any]:
    """Run ``fn(**kwargs, callback_kw=cb)`` in a helper thread and yield whatever it
    passes to ``cb``; return its result (or raise its exception).

    The core reports progress through plain callbacks (so the CLI, tests and the
    GUI share one code path); this turns those calls into the yields that a napari
    ``thread_worker`` forwards to the GUI thread.
    """
    events: queue.Queue = queue.Queue()
    box: dict = {}

    def target():
        try:
            box["result"] = fn(**kwargs, **{callback_kw: lambda *a: events.put(a[0] if len(a) == 1 else a)})
        except BaseException as exc:  # re-raised in the worker, which notifies the user
            box["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=target, daemon=True, name=f"napari-smlm {getattr(fn, '__name__', 'task')}")
    thread.start()
    while True:
        item = events.get()
        if item is _DONE:
            break
        yield item
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def notify_error(exc: BaseException | str) -> None:
    from napari.utils.notifications import show_error

    show_error(str(exc) if not isinstance(exc, str) else exc)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def layers_of(viewer, kind: str) -> list:
    """Layers of a type ('Image', 'Points') for a ComboBox's choices."""
    return [layer for layer in viewer.layers if type(layer).__name__ == kind]


def layer_choices(viewer, kind: str):
    def choices(_widget=None):
        return [(layer.name, layer) for layer in layers_of(viewer, kind)]

    return choices


def connect_layer_updates(viewer, container) -> None:
    """Refresh the container's choices when layers come, go or are renamed."""
    def refresh(*_):
        try:
            container.reset_choices()
        except RuntimeError:  # widget already deleted
            pass

    viewer.layers.events.inserted.connect(refresh)
    viewer.layers.events.removed.connect(refresh)
    viewer.layers.events.reordered.connect(refresh)


def movie_from_layer(layer) -> np.ndarray:
    """A (T, Y, X) array from an image layer, or a clear error for other shapes."""
    if layer is None:
        raise ValueError("choose an image layer (drag a TIFF stack into napari, or use File > Open Sample)")
    if getattr(layer, "rgb", False):
        raise ValueError(f"layer '{layer.name}': RGB images are not SMLM movies; expected a grey (T, Y, X) stack")
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"layer '{layer.name}': expected a (T, Y, X) stack or a single (Y, X) frame, got shape {tuple(data.shape)}")
    return data

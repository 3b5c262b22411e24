"""Helpers shared by the dock widgets: workers, layer pickers, messages, layout."""

from __future__ import annotations

import math
import queue
import re
import threading
from pathlib import Path
from typing import Any, Callable, Generator, Optional

import numpy as np

_DONE = object()


class WorkFailed(Exception):
    """A ``RuntimeError`` from background work, re-raised as a plain ``Exception``.

    superqt's generator worker takes any ``RuntimeError`` for "the worker was
    deleted" and then emits neither ``errored`` nor ``finished``: the widget would
    stay busy for ever. Torch reports most of its failures as ``RuntimeError``.
    """


def iterate_callback(fn: Callable, callback_kw: str, **kwargs) -> Generator[Any, None, Any]:
    """Run ``fn(**kwargs, callback_kw=cb)`` in a helper thread and yield whatever it
    passes to ``cb``; return its result (or raise its exception).

    The core reports progress through plain callbacks (so the CLI, tests and the
    GUI share one code path); this turns those calls into the yields that a napari
    ``thread_worker`` forwards to the GUI thread.
    """
    events: queue.Queue = queue.Queue()
    box: dict = {}

    def report(*args):
        events.put(args[0] if len(args) == 1 else args)

    def target():
        try:
            box["result"] = fn(**kwargs, **{callback_kw: report})
        except BaseException as exc:  # re-raised in the worker, which notifies the user
            box["error"] = exc
        finally:
            events.put(_DONE)

    name = f"napari-smlm {getattr(fn, '__name__', 'task')}"
    thread = threading.Thread(target=target, daemon=True, name=name)
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


def _guarded(gen: Generator) -> Generator:
    try:
        return (yield from gen)
    except RuntimeError as exc:
        raise WorkFailed(str(exc)) from exc


def _alive(callback: Callable) -> Callable:
    """``callback``, ignoring calls that arrive after its widget was closed (a worker
    may report once more while it winds down)."""
    def call(*args):
        try:
            return callback(*args)
        except RuntimeError as exc:
            if "has been deleted" not in str(exc):
                raise
    return call


class Task:
    """One background job of a widget.

    A napari generator worker (so the GUI stays responsive), a progress bar in
    napari's activity dock, and the widget's callbacks. ``errored`` is connected
    when the worker is created, so an error is shown once (superqt re-raises errors
    of workers created without an ``errored`` connection). ``on_finish`` always
    runs last: success, error or cancel.
    """

    def __init__(self, work: Callable[[], Generator], *, desc: str, total: Optional[int] = None,
                 on_yield: Optional[Callable] = None, on_return: Optional[Callable] = None,
                 on_error: Optional[Callable] = None, on_finish: Optional[Callable] = None):
        from napari.qt.threading import create_worker
        from napari.utils import progress

        def run():
            return (yield from _guarded(work()))

        self.pbar = progress(total=total or 0, desc=desc)
        self._on_error = _alive(on_error or (lambda exc: notify_error(exc)))
        self.worker = create_worker(run, _start_thread=False, _connect={"errored": self._errored})
        if on_yield is not None:
            self.worker.yielded.connect(_alive(on_yield))
        if on_return is not None:
            self.worker.returned.connect(_alive(on_return))
        self.worker.finished.connect(self._finished)
        self._on_finish = _alive(on_finish) if on_finish is not None else None

    def start(self) -> "Task":
        self.worker.start()
        return self

    def step(self, done: int, total: Optional[int] = None, text: Optional[str] = None) -> None:
        """Move the activity-dock bar to ``done`` of ``total``."""
        if self.pbar is None:
            return
        if total is not None and total != self.pbar.total:
            self.pbar.total = total
        self.pbar.update(done - self.pbar.n)
        if text:
            self.pbar.set_description(text)

    def _errored(self, exc):
        self._on_error(exc)

    def _finished(self):
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        if self._on_finish is not None:
            self._on_finish()


# --------------------------------------------------------------------- messages
# The core's messages name CLI options (shared with the command line); in the GUI
# the same thing is a field.
_OPTION_NAMES = {
    "--model": "model", "--device": "device", "--pixel-size": "pixel size", "--threshold": "probability threshold",
    "--batch-size": "batch size", "--max-memory-gb": "memory limit", "--frames": "frame range",
    "--baseline": "baseline", "--e-per-adu": "e-/ADU", "--em-gain": "EM gain", "--qe": "QE",
    "--camera": "camera", "--resume": "resume from", "--config": "preset", "--out": "output",
    "--photons": "the camera 'photons (no conversion)'",
}


# PyTorch's advice on files that need unpickling: how to load them anyway. Never shown.
_UNSAFE_ADVICE = re.compile(r"weights_only|safe_globals|can still be loaded|trust|arbitrary code|[Uu]npickl|pickle"
                            r"|\(\d\) ")


def user_message(exc: BaseException | str) -> str:
    """An error in the GUI's words: CLI options become field names, PyTorch's advice
    to unpickle untrusted files is dropped, one paragraph."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    text = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    keep = [x for x in sentences if not _UNSAFE_ADVICE.search(x)]
    text = " ".join(keep) if keep else ""
    if len(keep) < len(sentences):
        text = (text + " " if text else "") + "The file holds more than weights and is not loaded."
    for option, name in sorted(_OPTION_NAMES.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w-]){re.escape(option)}(?![\w-])", name, text)
    return text


def notify_error(exc: BaseException | str) -> None:
    from napari.utils.notifications import show_error

    show_error(user_message(exc))


def ask(parent, question: str) -> bool:
    """A Yes/No question in a dialog (No is the default); True for Yes."""
    from qtpy.QtWidgets import QMessageBox

    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(parent, "napari-smlm", question, buttons, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def file_metadata(layer) -> dict:
    """What the movie's file states about camera and pixel size (our reader's
    ``camera_metadata``), or {}."""
    return dict((getattr(layer, "metadata", None) or {}).get("camera_metadata") or {})


def describe_camera(camera, report: Optional[dict] = None) -> str:
    """One line for the user: which camera turned ADU into photons."""
    if camera is None:
        return "none: the movie was taken as photons"
    if report:
        try:  # the core's wording (the CLI prints the same), plus where the camera came from
            from ..core.camera import describe_estimate

            text = describe_estimate(report)
            source = report.get("source", "")
            return text if not source or source in text else f"{text}; {source}"
        except (ImportError, KeyError, TypeError, ValueError):
            pass
        def pm(value, err, fmt):
            s = format(value, fmt)
            return s + (f" ± {format(err, fmt)}" if err is not None and math.isfinite(err) else "")

        r = report
        text = (f"baseline {pm(r['baseline'], r.get('baseline_err'), '.1f')} ADU, "
                f"{pm(r['adu_per_e'], r.get('adu_per_e_err'), '.3g')} ADU per photoelectron "
                f"({r.get('kind', camera.kind)}, EM gain {r.get('em_gain', camera.em_gain):g}, "
                f"QE {r.get('qe', camera.qe):g})")
        source = r.get("source") or f"estimated from the movie ({r.get('method', 'noise')})"
        return f"{text}; {source}"
    return (f"baseline {camera.baseline:.4g} ADU, {camera.e_per_adu:.4g} e-/ADU, EM gain {camera.em_gain:.4g}, "
            f"QE {camera.qe:.3g} ({camera.kind})")


# --------------------------------------------------------------------- layers
def layers_of(viewer, kind: str) -> list:
    """Layers of a type ('Image', 'Points') for a ComboBox's choices."""
    return [layer for layer in viewer.layers if type(layer).__name__ == kind]


def layer_choices(viewer, kind: str):
    def choices(_widget=None):
        return [(layer.name, layer) for layer in layers_of(viewer, kind)]

    return choices


def newest_localizations(viewer):
    """The newest Points layer of our localizations, or None."""
    ours = [lay for lay in layers_of(viewer, "Points") if lay.metadata.get("napari_smlm") == "localizations"]
    return ours[-1] if ours else None


def default_layer(viewer, kind: str, exclude=()):
    """The active layer if it is of ``kind``, else the only layer of ``kind``, else
    the newest one (not in ``exclude``; never our own renders and probability maps)."""
    options = [lay for lay in layers_of(viewer, kind)
               if lay not in exclude and lay.metadata.get("napari_smlm") not in ("render", "scale map")]
    active = viewer.layers.selection.active
    if active is not None and active in options:
        return active
    return options[-1] if options else None


def connect_layer_updates(viewer, container, on_change: Optional[Callable] = None) -> None:
    """Refresh the container's choices when layers come, go or are renamed;
    then call ``on_change`` (which fills pickers that are still empty)."""
    def refresh(*_):
        try:
            container.reset_choices()
            if on_change is not None:
                on_change()
        except RuntimeError:  # widget already deleted
            pass

    viewer.layers.events.inserted.connect(refresh)
    viewer.layers.events.removed.connect(refresh)
    viewer.layers.events.reordered.connect(refresh)
    if on_change is not None:
        viewer.layers.selection.events.active.connect(refresh)


def movie_from_layer(layer) -> np.ndarray:
    """A (T, Y, X) array from an image layer, or a clear error for other shapes."""
    if layer is None:
        raise ValueError("choose a movie: open a TIFF stack (File > Open, or drag it into napari) "
                         "or File > Open Sample > napari-smlm")
    if getattr(layer, "rgb", False):
        raise ValueError(f"layer '{layer.name}': RGB images are not SMLM movies; expected a grey (T, Y, X) stack")
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        split = (" (channels, or another axis besides the frames?): open the file with napari-smlm's reader "
                 "(File > Open with Plugin, choosing napari-smlm), which gives a layer per channel"
                 if data.ndim == 4 else "")
        raise ValueError(f"layer '{layer.name}': expected a (T, Y, X) stack or a single (Y, X) frame, "
                         f"got shape {tuple(data.shape)}{split}")
    return data


_NM_PER_UNIT = {"nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "meter": 1e9, "angstrom": 0.1}


def layer_pixel_size_nm(layer) -> Optional[float]:
    """The camera pixel of an image layer in nm, where the layer knows it: our
    metadata (the sample, a simulated movie), the TIFF's (our reader puts it in
    ``camera_metadata``) or a scale in length units."""
    if layer is None:
        return None
    meta = getattr(layer, "metadata", None) or {}
    px = meta.get("pixel_size_nm") or (meta.get("camera_metadata") or {}).get("pixel_size_nm")  # ours, the file's
    if px:
        return float(px)
    try:
        unit = str(layer.units[-1])
        scale = float(layer.scale[-1])
    except (AttributeError, IndexError, TypeError):
        return None
    if unit in _NM_PER_UNIT and scale > 0:
        return scale * _NM_PER_UNIT[unit]
    return None


def file_value(file_edit) -> Optional[Path]:
    """A FileEdit's path, or None when the field is empty (its value is then '.')."""
    text = str(file_edit.line_edit.value).strip()
    return Path(text).expanduser() if text else None


def existing_file(file_edit, role: str, what: str = "file") -> Optional[Path]:
    """The FileEdit's file; None when empty; a clear error for a folder or a missing file."""
    path = file_value(file_edit)
    if path is None:
        return None
    if path.is_dir():
        raise ValueError(f"{role}: {path} is a folder; choose a {what}")
    if not path.is_file():
        raise ValueError(f"{role}: {what} not found: {path}")
    return path


# --------------------------------------------------------------------- layout
def wrap_label(label, tooltip: Optional[str] = None):
    """A status label that wraps instead of widening the dock."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setMinimumWidth(50)
    if tooltip:
        label.tooltip = tooltip
    return label


def style_figure(figure, viewer) -> None:
    """Colour a matplotlib figure like napari's theme (dark by default)."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        bg, fg = theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - no theme: keep matplotlib's colours
        return
    figure.set_facecolor(bg)
    for ax in figure.axes:
        ax.set_facecolor(bg)
        ax.tick_params(colors=fg, labelsize=7)
        ax.xaxis.label.set_color(fg)
        ax.yaxis.label.set_color(fg)
        ax.title.set_color(fg)
        for spine in ax.spines.values():
            spine.set_color(fg)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


class DockForm:
    """Mixin for the dock widgets' magicgui ``Container``: a vertical scroll area.

    napari docks ``widget.native``; magicgui's ``native`` of a scrollable container
    is the inner form, so the scroll area would be lost. Here ``native`` is the
    scroll area, and ``form_layout`` the inner form's layout (for plots). Combo
    boxes shrink to a few characters (their long items elide), so the dock's
    minimum width follows the labels, not the longest choice.
    """

    task = None  # the widget's running Task, if any

    @property
    def native(self):
        return self.root_native_widget

    @property
    def worker(self):
        """The running job's napari worker (None when idle)."""
        return self.task.worker if self.task is not None else None

    @property
    def form_layout(self):
        return self._widget._mgui_get_native_widget().layout()

    def _fit_dock(self, min_width: int = 240) -> None:
        from qtpy.QtWidgets import QComboBox, QLineEdit

        inner = self._widget._mgui_get_native_widget()
        for combo in inner.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        for edit in inner.findChildren(QLineEdit):
            edit.setMinimumWidth(40)
        scroll = self.root_native_widget
        scroll.setMinimumHeight(70)  # seven docks (and the window's bars) fit a 768 px high screen
        self.form_layout.addStretch(1)  # rows keep their height when the dock is taller than the form
        # The scroll area shows no horizontal bar: it must stay as wide as the form's
        # narrowest layout plus the vertical bar, whenever rows appear or disappear.
        self._width_keeper = _KeepWidth(scroll, inner, min_width)
        inner.installEventFilter(self._width_keeper)
        self._width_keeper.update()

    def _full_width(self, widget, after=None):
        """Put ``widget`` (a status label) across the whole dock, below the row of
        ``after`` (or at the end), instead of in the value column of a labelled row.
        Call after the container's widgets are all added."""
        layout = self.form_layout
        inner = self._widget._mgui_get_native_widget()
        index = layout.count()
        if after is not None:
            row = after.native
            while row.parentWidget() is not inner:
                row = row.parentWidget()
            index = layout.indexOf(row) + 1
        layout.insertWidget(index, widget.native)
        return widget


class LocalizationsField:
    """Mixin for widgets with a Points picker ``points``: it starts at the newest layer
    of our localizations."""

    def _pick_default(self):
        if self.points.value is None:
            newest = newest_localizations(self.viewer)
            if newest is not None:
                self.points.value = newest


class MovieFields:
    """Mixin for widgets with a movie picker ``image`` and a ``pixel_size`` field: the
    picker starts at the active or only image, and a movie that knows its pixel size
    fills the field."""

    def _pick_default(self):
        if self.image.value is None:
            layer = default_layer(self.viewer, "Image")
            if layer is not None:
                self.image.value = layer

    def _image_changed(self, layer):
        px = layer_pixel_size_nm(layer)
        if px:
            self.pixel_size.value = px


def _keep_width_class():
    from qtpy.QtCore import QEvent, QObject

    class KeepWidth(QObject):
        def __init__(self, scroll, inner, floor):
            super().__init__(scroll)
            self.scroll, self.inner, self.floor = scroll, inner, floor

        def update(self):
            bar = self.scroll.verticalScrollBar().sizeHint().width()
            need = self.inner.minimumSizeHint().width() + bar + 2 * self.scroll.frameWidth()
            self.scroll.setMinimumWidth(max(self.floor, need))

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.LayoutRequest:
                self.update()
            return False

    return KeepWidth


def _KeepWidth(scroll, inner, floor):  # noqa: N802 - a class made on first use (Qt is imported late)
    return _keep_width_class()(scroll, inner, floor)


def add_plot(widget, viewer, figsize=(3.2, 2.4), min_height=180):
    """A matplotlib canvas in napari's colours at the end of the widget's form."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    canvas = FigureCanvasQTAgg(figure)
    canvas.setMinimumHeight(min_height)
    style_figure(figure, viewer)  # before anything is drawn too: no white panel in a dark window
    widget.form_layout.addWidget(canvas)
    return figure, canvas

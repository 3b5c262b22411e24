"""Drift dock widget: estimate and correct stage drift of a localization layer, undo it,
merge repeated localizations, and measure resolution (FRC, NeNA).

Thin: the work is :mod:`napari_smlm.core.analysis`; this collects the choices, runs it in
a worker and moves the layer's points.
"""

from typing import Optional

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from napari.viewer import Viewer

from .._layers import layer_table, table_to_points
from ._common import (DockForm, Task, add_plot, connect_layer_updates, layer_choices, LocalizationsField, notify_error,
                      plural, style_figure, user_message, wrap_label)

METHODS = {"RCC (cross-correlation)": "rcc", "AIM (sparse samples)": "aim", "fiducial markers": "fiducials"}


class DriftWidget(LocalizationsField, DockForm, Container):
    """Drift correction, merging and resolution for a Points layer of localizations."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.points = ComboBox(label="localizations", choices=layer_choices(viewer, "Points"), nullable=True)
        self.method = ComboBox(label="method", choices=list(METHODS), value=list(METHODS)[0],
                               tooltip="RCC: cross-correlation of rendered segments (Wang et al. 2014); AIM: adaptive "
                                       "intersection maximisation (Ma et al. 2024), for sparse samples and fast drift; "
                                       "fiducials: markers on through the movie")
        self.segment = SpinBox(label="segment [frames]", value=0, min=0, max=10**7,
                               tooltip="frames per segment; 0: chosen from the data")
        self.markers = ComboBox(label="markers", choices=layer_choices(viewer, "Points"), nullable=True, value=None,
                                tooltip="fiducials: a Points layer with a point on each marker (bead), added with "
                                        "napari's Points tool; empty: markers are found automatically")
        self.correct_button = PushButton(text="Correct drift")
        self.undo_button = PushButton(text="Undo", enabled=False)
        self.max_gap = SpinBox(label="merge: gap [frames]", value=1, min=0, max=100,
                               tooltip="frames a molecule may be missed between two localizations that are merged")
        self.merge_button = PushButton(text="Merge", tooltip="localizations of one molecule in consecutive frames "
                                       "become one, in a new layer (photons summed, position uncertainty-weighted)")
        self.resolution_button = PushButton(text="Resolution (FRC, NeNA)")
        self.status = wrap_label(Label(value=""))
        buttons = Container(layout="horizontal", labels=False, widgets=[self.correct_button, self.undo_button])
        self.extend([self.points, self.method, self.segment, self.markers, buttons, self.max_gap, self.merge_button,
                     self.resolution_button])
        self._full_width(self.status)
        self.figure, self.canvas = add_plot(self, viewer, figsize=(3.2, 2.2), min_height=160)
        self.ax = self.figure.add_subplot(111)
        self._draw(None)
        self.correct_button.changed.connect(self.correct)
        self.undo_button.changed.connect(self.undo)
        self.merge_button.changed.connect(self.run_merge)
        self.resolution_button.changed.connect(self.run_resolution)
        self.points.changed.connect(self._points_changed)
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self.task: Optional[Task] = None
        self._fit_dock()

    # ------------------------------------------------------------------ helpers
    def _points_changed(self, layer):
        history = (layer.metadata.get("drift_history") if layer is not None else None) or []
        self.undo_button.enabled = bool(history)
        self._draw(history[-1] if history else None)

    def _layer_table(self, shown_only: bool):
        layer = self.points.value
        if layer is None:
            raise ValueError("choose a Points layer of localizations (run Localize, or open a .csv / .h5)")
        px = float(layer.metadata.get("pixel_size_nm", 100.0))
        data = np.asarray(layer.data)
        if data.ndim != 2 or data.shape[1] != 3:
            raise ValueError(f"layer '{layer.name}': drift needs points in frames (frame, y, x); this layer has "
                             f"{data.shape[-1]} coordinates")
        return layer, px, layer_table(layer, px, shown_only)

    def _draw(self, drift: Optional[dict]):
        ax = self.ax
        ax.clear()
        if drift is not None:
            frames = np.asarray(drift["frame"]) + 1
            ax.plot(frames, drift["x"], label="x")
            ax.plot(frames, drift["y"], label="y")
            if "z" in drift:
                ax.plot(frames, drift["z"], label="z")
        ax.set_xlabel("frame")
        ax.set_ylabel("drift [nm]")
        style_figure(self.figure, self.viewer)
        if drift is not None:
            legend = ax.legend(fontsize=7, frameon=False)
            for text in legend.get_texts():  # in the theme's text colour, as the axes
                text.set_color(ax.xaxis.label.get_color())
        self.canvas.draw_idle()

    def _busy(self, busy: bool):
        for b in (self.correct_button, self.merge_button, self.resolution_button):
            b.enabled = not busy
        if busy:
            self.undo_button.enabled = False
        else:
            self._points_changed(self.points.value)

    def _start(self, work, desc, done):
        def failed(exc):
            self.status.value = f"failed: {user_message(exc)}"
            notify_error(exc)

        def finished():
            self.task = None
            self._busy(False)

        self.task = Task(work, desc=desc, on_yield=lambda s: setattr(self.status, "value", s), on_return=done,
                         on_error=failed, on_finish=finished)
        self._busy(True)
        self.task.start()

    # ------------------------------------------------------------------ drift
    def correct(self, *_):
        """Estimate the drift from the shown points, then move every point."""
        from ..core.analysis import estimate_drift

        got = self._shown_or_notify()
        if got is None:
            return
        layer, px, table = got
        method = METHODS[self.method.value]
        kwargs = {"segment_frames": int(self.segment.value)} if self.segment.value and method != "fiducials" else {}
        if method == "fiducials" and self.markers.value is not None:
            if self.markers.value is layer:
                notify_error("markers: choose a layer with a point on each marker, not the localizations themselves")
                return
            kwargs["markers"] = self._marker_positions_nm(self.markers.value, layer, px)

        def work():
            yield f"estimating drift ({method}) from {plural(len(table['x']), 'localization')}…"
            return estimate_drift(table, method, **kwargs)

        def done(drift):
            self._shift(layer, px, drift, sign=-1.0)
            history = list(layer.metadata.get("drift_history") or []) + [
                {k: (np.asarray(v) if k in ("frame", "x", "y", "z") else v) for k, v in drift.items()}]
            layer.metadata = {**layer.metadata, "drift_history": history}
            span = max(float(np.ptp(drift["x"])), float(np.ptp(drift["y"])))
            in_z = f", {float(np.ptp(drift['z'])):.0f} nm in z" if "z" in drift else ""
            self.status.value = (f"corrected: drift up to {span:.0f} nm{in_z} ({method}, "
                                 f"{', '.join(f'{k} {v}' for k, v in drift.get('info', {}).items())})")
            self._draw(drift)

        self._start(work, "napari-smlm: drift", done)

    @staticmethod
    def _marker_positions_nm(markers, layer, px: float) -> np.ndarray:
        """(x, y) nm of the points of ``markers`` in the frame of the localization
        ``layer`` (through napari's world coordinates: the layers may differ in scale)."""
        data = np.asarray(markers.data, float)[:, -2:]
        world = data * np.asarray(markers.scale[-2:]) + np.asarray(markers.translate[-2:])
        rows_cols = (world - np.asarray(layer.translate[-2:])) / np.asarray(layer.scale[-2:])
        return (rows_cols[:, ::-1] + 0.5) * px  # (col, row) pixel centres -> (x, y) nm

    def undo(self, *_):
        layer = self.points.value
        history = list((layer.metadata.get("drift_history") if layer is not None else None) or [])
        if not history:
            return
        px = float(layer.metadata.get("pixel_size_nm", 100.0))
        self._shift(layer, px, history.pop(), sign=1.0)
        layer.metadata = {**layer.metadata, "drift_history": history}
        self.status.value = "drift correction undone"
        self._points_changed(layer)

    @staticmethod
    def _shift(layer, px: float, drift: dict, sign: float):
        """Move every point of ``layer`` by ``sign`` × the drift at its frame (data in
        camera pixels, features in nm)."""
        from ..core.analysis import drift_at

        data = np.array(layer.data, float)
        frames = np.round(data[:, 0]).astype(int)
        dx, dy = drift_at(drift, frames, "x"), drift_at(drift, frames, "y")
        data[:, 2] += sign * dx / px
        data[:, 1] += sign * dy / px
        features = layer.features.copy()
        shifts = [("x", dx), ("y", dy)] + ([("z", drift_at(drift, frames, "z"))] if "z" in drift else [])
        for key, d in shifts:
            if key in features:
                features[key] = np.asarray(features[key], float) + sign * d
        shown = np.asarray(layer.shown, bool).copy()
        layer.data = data
        layer.features = features
        layer.shown = shown

    # ------------------------------------------------------------------ merge, resolution
    def _shown_or_notify(self):
        """(layer, pixel size, table of the shown points), or None (busy, or an error
        shown to the user)."""
        if self.task is not None:
            return None
        try:
            return self._layer_table(shown_only=True)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc)
            return None

    def run_merge(self, *_):
        from ..core.analysis.merge import merge_localizations

        got = self._shown_or_notify()
        if got is None:
            return
        layer, px, table = got
        gap = int(self.max_gap.value)

        def work():
            yield f"merging {plural(len(table['x']), 'localization')}…"
            return merge_localizations(table, max_gap=gap)

        def done(merged):
            data, features = table_to_points(merged, px)
            size = float(np.mean(layer.size)) if len(layer.size) else 1.2
            self.viewer.add_points(data, features=features, name=f"{layer.name} merged", size=size, border_width=0,
                                   face_color="prob" if "prob" in features else "white", face_colormap="viridis", scale=tuple(layer.scale), translate=tuple(layer.translate),
                                   out_of_slice_display=False,
                                   metadata={"pixel_size_nm": px, "napari_smlm": "localizations"})
            self.status.value = (f"merged {plural(len(table['x']), 'localization')} into {len(merged['x']):,} "
                                 f"({len(table['x']) / max(len(merged['x']), 1):.2f} frames per molecule)")

        self._start(work, "napari-smlm: merging", done)

    def run_resolution(self, *_):
        from ..core.analysis.resolution import frc, nena

        got = self._shown_or_notify()
        if got is None:
            return
        _, _, table = got

        def work():
            yield "FRC…"
            f = frc(table, pixel_nm=5.0)
            yield "NeNA…"
            try:
                n = nena(table)
            except ValueError as exc:
                n = {"error": str(exc)}
            return f, n

        def done(result):
            f, n = result
            text = ("FRC: finer than 10 nm" if f["below_nyquist"] else f"FRC resolution {f['resolution_nm']:.1f} nm")
            text += (f"; NeNA precision {n['sigma_nm']:.1f} ± {n['sigma_err_nm']:.1f} nm" if "sigma_nm" in n
                     else f"; NeNA: {n['error']}")
            self.status.value = text

        self._start(work, "napari-smlm: resolution", done)

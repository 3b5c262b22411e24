"""Evaluate dock widget: localizations vs ground truth, numbers and colour-coded layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton

from .._layers import points_to_table, table_to_points
from ._common import connect_layer_updates, layer_choices, notify_error

FROM_FILE = "file..."


def _choices(viewer):
    base = layer_choices(viewer, "Points")

    def choices(_w=None):
        return [*base(), (FROM_FILE, FROM_FILE)]

    return choices


class EvaluateWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__(labels=True)
        self.viewer = viewer
        self.pred = ComboBox(label="localizations", choices=_choices(viewer))
        self.pred_file = FileEdit(label="localizations file", filter="*.csv *.h5 *.hdf5", visible=False)
        self.gt = ComboBox(label="ground truth", choices=_choices(viewer))
        self.gt_file = FileEdit(label="ground-truth file", filter="*.csv *.h5 *.hdf5", visible=False)
        self.pixel_size = FloatSpinBox(label="camera pixel [nm]", value=100.0, min=1, max=10000)
        self.tolerance = FloatSpinBox(label="tolerance [nm]", value=250.0, min=1, max=10000)
        self.tolerance_z = FloatSpinBox(label="tolerance z [nm]", value=500.0, min=1, max=10000)
        self.button = PushButton(text="Evaluate")
        self.table = Label(value="")
        self.extend([self.pred, self.pred_file, self.gt, self.gt_file, self.pixel_size, self.tolerance, self.tolerance_z,
                     self.button, self.table])
        self.pred.changed.connect(lambda v: setattr(self.pred_file, "visible", v == FROM_FILE))
        self.gt.changed.connect(lambda v: setattr(self.gt_file, "visible", v == FROM_FILE))
        self.button.changed.connect(self.run)
        connect_layer_updates(viewer, self)
        self.reset_choices()
        self.metrics = None
        self.layers: list = []
        self._figure = None
        self._add_plot()

    def _add_plot(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self._figure = Figure(figsize=(3.5, 2.6), tight_layout=True)
        self._canvas = FigureCanvasQTAgg(self._figure)
        self._canvas.setMinimumHeight(200)
        self.native.layout().addWidget(self._canvas)

    def _table_from(self, choice, file_edit, role):
        from ..core.io import read_table

        if choice == FROM_FILE:
            path = file_edit.value
            if path is None or not Path(str(path)).is_file():
                raise ValueError(f"{role}: choose a file (.csv, .h5)")
            return read_table(path, pixel_size_nm=self.pixel_size.value), None
        if choice is None:
            raise ValueError(f"{role}: choose a Points layer or a file")
        px = float(choice.metadata.get("pixel_size_nm", self.pixel_size.value))
        shown = np.asarray(choice.shown, bool)
        return points_to_table(choice.data[shown], {k: np.asarray(v)[shown] for k, v in choice.features.items()}, px), choice

    def run(self, *_):
        from ..core.evaluation import evaluate, precision_recall_curve

        try:
            pred, pred_layer = self._table_from(self.pred.value, self.pred_file, "localizations")
            gt, _ = self._table_from(self.gt.value, self.gt_file, "ground truth")
            metrics, m = evaluate(pred, gt, self.tolerance.value, self.tolerance_z.value)
        except Exception as exc:
            notify_error(exc)
            return None
        self.metrics = metrics
        rows = [("precision", f"{metrics['precision']:.3f}"), ("recall", f"{metrics['recall']:.3f}"),
                ("F1", f"{metrics['f1']:.3f}"), ("Jaccard", f"{metrics['jaccard']:.3f}"),
                ("RMSE lateral", f"{metrics['rmse_lat']:.1f} nm"), ("RMSE axial", f"{metrics['rmse_ax']:.1f} nm"),
                ("efficiency", f"{metrics['efficiency']:.1f} %"),
                ("TP / FP / FN", f"{int(metrics['tp'])} / {int(metrics['fp'])} / {int(metrics['fn'])}")]
        self.table.value = "\n".join(f"{k:<14} {v}" for k, v in rows)
        self._show_layers(pred, gt, m, pred_layer)
        curve = precision_recall_curve(pred, m)
        self._figure.clear()
        ax = self._figure.add_subplot(111)
        ax.plot(curve["recall"], curve["precision"])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"AP = {curve['average_precision']:.3f}", fontsize=9)
        self._canvas.draw_idle()
        return metrics

    def _show_layers(self, pred, gt, m, ref_layer):
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        px = float(ref_layer.metadata.get("pixel_size_nm", self.pixel_size.value)) if ref_layer is not None else self.pixel_size.value
        scale = (1.0, *ref_layer.scale[-2:]) if ref_layer is not None else (1.0, 1.0, 1.0)
        translate = (0.0, *ref_layer.translate[-2:]) if ref_layer is not None else (0.0, 0.0, 0.0)
        fp = np.setdiff1d(np.arange(m.n_pred), m.pred_index)
        fn = np.setdiff1d(np.arange(m.n_gt), m.gt_index)
        common = dict(scale=scale, translate=translate, out_of_slice_display=False, border_width=0.15, face_color="transparent")
        sel = lambda t, idx: {k: np.asarray(v)[idx] for k, v in t.items()}  # noqa: E731
        self.layers = []
        for name, table, idx, color, symbol in (("true positives", pred, m.pred_index, "lime", "disc"),
                                                ("false positives", pred, fp, "red", "square"),
                                                ("false negatives (missed)", gt, fn, "cyan", "ring")):
            data, features = table_to_points(sel(table, idx), px)
            self.layers.append(self.viewer.add_points(data, features=features, name=name, size=2.0, border_color=color,
                                                      symbol=symbol, **common))
        if len(m.pred_index):
            a, _ = table_to_points(sel(pred, m.pred_index), px)
            b, _ = table_to_points(sel(gt, m.gt_index), px)
            lines = np.stack([a, b], axis=1)
            self.layers.append(self.viewer.add_shapes(list(lines), shape_type="line", edge_color="yellow", edge_width=0.1,
                                                      name="matches", scale=scale, translate=translate))

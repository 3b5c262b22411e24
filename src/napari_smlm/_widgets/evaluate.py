"""Evaluate dock widget: localizations vs ground truth, numbers and colour-coded layers."""

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.viewer import Viewer

from .._layers import layer_table, table_to_points
from ._common import (DockForm, add_plot, connect_layer_updates, existing_file, file_value, layer_choices, layers_of,
                      notify_error, style_figure, wrap_label)

FROM_FILE = "file..."


def _choices(viewer):
    base = layer_choices(viewer, "Points")

    def choices(_w=None):
        return [*base(), (FROM_FILE, FROM_FILE)]

    return choices


class EvaluateWidget(DockForm, Container):
    """Localizations against ground truth: metrics, colour-coded layers, precision-recall curve."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.pred = ComboBox(label="localizations", choices=_choices(viewer), nullable=True)
        self.pred_file = FileEdit(label="file", filter="*.csv *.h5 *.hdf5", visible=False)
        self.gt = ComboBox(label="ground truth", choices=_choices(viewer), nullable=True)
        self.gt_file = FileEdit(label="file", filter="*.csv *.h5 *.hdf5", visible=False,
                                tooltip="our CSV, ThunderSTORM CSV, SMLM-challenge CSV or Picasso HDF5")
        self.pixel_size = FloatSpinBox(label="camera pixel [nm]", value=100.0, min=1, max=10000)
        self.tolerance = FloatSpinBox(label="tolerance [nm]", value=250.0, min=1, max=10000)
        self.tolerance_z = FloatSpinBox(label="tolerance z [nm]", value=500.0, min=1, max=10000,
                                        tooltip="axial matching tolerance, used where the ground truth's z varies "
                                                "(3D; 500 nm as the SMLM Challenge 2016); 2D ground truth is "
                                                "matched laterally only")
        self.button = PushButton(text="Evaluate")
        self.table = Label(value="")
        # a pixel-size mistake, where the scores show one (core.evaluation.scale_hint)
        self.hint = wrap_label(Label(value="", visible=False))
        self.extend([self.pred, self.pred_file, self.gt, self.gt_file, self.pixel_size, self.tolerance,
                     self.tolerance_z, self.button])
        self._full_width(self.table)
        self._full_width(self.hint)
        self.pred.changed.connect(lambda v: setattr(self.pred_file, "visible", v == FROM_FILE))
        self.gt.changed.connect(lambda v: setattr(self.gt_file, "visible", v == FROM_FILE))
        self.button.changed.connect(self.run)
        self.table.native.setStyleSheet("font-family: monospace")
        self.metrics = None
        self.layers: list = []
        connect_layer_updates(viewer, self, self._pick_defaults)
        self.reset_choices()
        self._pick_defaults()
        self._figure, self._canvas = add_plot(self, viewer, figsize=(3.2, 2.4))
        self._fit_dock()

    def _pick_defaults(self):
        """Localizations: our newest result layer; ground truth: another Points layer
        (one marked as ground truth first). Never the same layer for both."""
        points = [lay for lay in layers_of(self.viewer, "Points") if lay not in self.layers]
        # "file..." is the user's choice once its file field shows (hidden, not merely off
        # screen: a docked widget in a hidden window keeps its choice)
        if self.pred.value in (None, FROM_FILE) and self.pred_file.native.isHidden():
            ours = [lay for lay in points if lay.metadata.get("napari_smlm") == "localizations"]
            if ours:
                self.pred.value = ours[-1]
        if self.gt.value in (None, FROM_FILE) and self.gt_file.native.isHidden():
            others = [lay for lay in points if lay != self.pred.value]  # == sees through napari's proxies
            marked = [lay for lay in others if lay.metadata.get("napari_smlm") == "ground truth"]
            plain = [lay for lay in others if lay.metadata.get("napari_smlm") != "localizations"]
            if marked or plain:
                self.gt.value = (marked or plain)[-1]

    def _table_from(self, choice, file_edit, role):
        from ..core.io import read_table

        if choice == FROM_FILE:
            path = existing_file(file_edit, role)
            if path is None:
                raise ValueError(f"{role}: choose a file (.csv, .h5)")
            return read_table(path, pixel_size_nm=self.pixel_size.value), None
        if choice is None:
            raise ValueError(f"{role}: choose a Points layer or a file")
        px = float(choice.metadata.get("pixel_size_nm", self.pixel_size.value))
        return layer_table(choice, px), choice

    def run(self, *_):
        from ..core.evaluation import evaluate, precision_recall_curve
        from ..core.evaluation.metrics import z_varies

        try:
            if self.pred.value == self.gt.value and self.pred.value not in (None, FROM_FILE):
                raise ValueError(f"'{self.pred.value.name}' is chosen as both localizations and ground truth; "
                                 "choose the ground truth (another layer, or a file)")
            pred_path = file_value(self.pred_file)
            if (self.pred.value == FROM_FILE and self.gt.value == FROM_FILE and pred_path is not None
                    and pred_path == file_value(self.gt_file)):
                raise ValueError(f"{pred_path} is chosen as both localizations and ground truth")
            pred, pred_layer = self._table_from(self.pred.value, self.pred_file, "localizations")
            gt, _ = self._table_from(self.gt.value, self.gt_file, "ground truth")
            # the axial tolerance applies to 3D ground truth; 2D truth is matched laterally
            tolerance_z = self.tolerance_z.value if z_varies(gt) else None
            metrics, m = evaluate(pred, gt, self.tolerance.value, tolerance_z)
        except Exception as exc:
            notify_error(exc)
            return None
        self.metrics = metrics
        rows = [("precision", f"{metrics['precision']:.3f}"), ("recall", f"{metrics['recall']:.3f}"),
                ("F1", f"{metrics['f1']:.3f}"), ("Jaccard", f"{metrics['jaccard']:.3f}"),
                ("RMSE lateral", f"{metrics['rmse_lat']:.1f} nm")]
        if metrics["is_3d"]:
            rows += [("RMSE axial", f"{metrics['rmse_ax']:.1f} nm"), ("RMSE 3D", f"{metrics['rmse_vol']:.1f} nm"),
                     ("bias z", f"{metrics['bias_z']:.1f} nm"),
                     ("efficiency lat", f"{metrics['efficiency_lat']:.1f} %"),
                     ("efficiency ax", f"{metrics['efficiency_ax']:.1f} %"),
                     ("efficiency 3D", f"{metrics['efficiency_3d']:.1f} %")]
        else:
            rows += [("efficiency", f"{metrics['efficiency']:.1f} %")]
        rows += [("TP / FP / FN", f"{int(metrics['tp'])} / {int(metrics['fp'])} / {int(metrics['fn'])}")]
        self.table.value = "\n".join(f"{k:<14} {v}" for k, v in rows)
        self.hint.value = self._scale_hint(metrics, pred_layer)
        self.hint.visible = bool(self.hint.value)
        self._show_layers(pred, gt, m, pred_layer)
        self._plot(precision_recall_curve(pred, m), metrics["by_z"])
        return metrics

    def _scale_hint(self, metrics, pred_layer) -> str:
        from ..core.evaluation.metrics import scale_hint_message

        if not metrics["scale_hint"]:
            return ""
        px = pred_layer.metadata.get("pixel_size_nm") if pred_layer is not None else None
        return "⚠ " + scale_hint_message(metrics["scale_hint"], px, option="Localize's pixel field at")

    def _plot(self, curve, by_z):
        """The precision-recall curve; below it, for 3D ground truth, the errors against
        the true z (RMSE lateral and axial, axial bias)."""
        self._figure.clear()
        ax = self._figure.add_subplot(211 if by_z else 111)
        ax.plot(curve["recall"], curve["precision"])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"AP = {curve['average_precision']:.3f}", fontsize=9)
        if by_z:
            z = [r["z_center"] for r in by_z]
            ax = self._figure.add_subplot(212)
            ax.axhline(0.0, color="0.5", lw=0.6)
            for key, label in (("rmse_lat", "RMSE lateral"), ("rmse_ax", "RMSE axial"), ("bias_z", "bias z")):
                ax.plot(z, [r[key] for r in by_z], ".-", label=label)
            ax.set_xlabel("true z [nm]")
            ax.set_ylabel("nm")
            ax.legend(fontsize=7, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
                      handlelength=1.2, columnspacing=0.8)
        self._canvas.setMinimumHeight(360 if by_z else 180)
        style_figure(self._figure, self.viewer)
        for ax in self._figure.axes:  # legends in the theme's text colour
            if ax.get_legend() is not None:
                for text in ax.get_legend().get_texts():
                    text.set_color(ax.xaxis.label.get_color())
        self._canvas.draw_idle()

    def _show_layers(self, pred, gt, m, ref_layer):
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        px = self.pixel_size.value
        if ref_layer is not None:
            px = float(ref_layer.metadata.get("pixel_size_nm", px))
        scale = (1.0, *ref_layer.scale[-2:]) if ref_layer is not None else (1.0, 1.0, 1.0)
        translate = (0.0, *ref_layer.translate[-2:]) if ref_layer is not None else (0.0, 0.0, 0.0)
        fp = np.setdiff1d(np.arange(m.n_pred), m.pred_index)
        fn = np.setdiff1d(np.arange(m.n_gt), m.gt_index)
        common = dict(scale=scale, translate=translate, out_of_slice_display=False, border_width=0.15,
                      face_color="transparent", axis_labels=("frame", "y", "x"))
        sel = lambda t, idx: {k: np.asarray(v)[idx] for k, v in t.items()}  # noqa: E731
        self.layers = []
        # lime is the sample's ground truth: true positives get their own colour
        for name, table, idx, color, symbol in (("true positives", pred, m.pred_index, "dodgerblue", "disc"),
                                                ("false positives", pred, fp, "red", "square"),
                                                ("false negatives (missed)", gt, fn, "orange", "ring")):
            data, features = table_to_points(sel(table, idx), px)
            self.layers.append(self.viewer.add_points(data, features=features, name=name, size=2.0, border_color=color,
                                                      symbol=symbol, **common))
        if len(m.pred_index):
            a, _ = table_to_points(sel(pred, m.pred_index), px)
            b, _ = table_to_points(sel(gt, m.gt_index), px)
            lines = np.stack([a, b], axis=1)
            # edge width in movie pixels: 0.3 px is a visible line at the zoom that shows molecules
            self.layers.append(self.viewer.add_shapes(list(lines), shape_type="line", edge_color="yellow",
                                                      edge_width=0.3, name="matches", scale=scale,
                                                      translate=translate))

"""Calibrate dock widget: a bead z-stack layer in, a 3D PSF calibration out.

Thin: :func:`napari_smlm.core.calibration.calibrate_beads` does the work (as
``napari-smlm calibrate`` does); this collects the choices, runs it in a worker, and
shows the beads (a Points layer, numbered as the CLI prints them), the averaged PSF
(an Image layer beside the stack), σx(z), σy(z) and each bead's residual.
"""

import re
import threading
from pathlib import Path
from typing import Optional

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, PushButton, SpinBox
from napari.viewer import Viewer

from ._common import (_NM_PER_UNIT, DockForm, MovieFields, Task, add_plot, connect_layer_updates, describe_camera,
                      file_metadata, file_value, layer_choices, notify_error, notify_info, plural, style_figure,
                      user_message, wrap_label)

USED_COLOR, LEFT_OUT_COLOR = "#3ddc84", "#ff5c5c"  # averaged / left out, in the layer, the plot and the list
SAVE_FILTER = "PSF calibration (*.h5 *.hdf5)"


def parse_bead_numbers(text: str) -> list[int]:
    """'3, 5' (or '3 5', '3;5') -> [3, 5]: bead numbers as listed, from 1."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"exclude beads: expected bead numbers such as 3, 5; got {text!r}") from None
    bad = [n for n in numbers if n < 1]
    if bad:
        raise ValueError(f"exclude beads: bead numbers start at 1; got {bad[0]}")
    return sorted(set(numbers))


def layer_z_step_nm(layer) -> Optional[float]:
    """The z step of a stack layer in nm where it knows it (our metadata, or a z
    scale in length units)."""
    if layer is None:
        return None
    meta = getattr(layer, "metadata", None) or {}
    step = meta.get("z_step_nm") or (meta.get("camera_metadata") or {}).get("z_step_nm")
    if step:
        return float(step)
    try:
        unit, scale = str(layer.units[-3]), float(layer.scale[-3])
    except (AttributeError, IndexError, TypeError):
        return None
    return scale * _NM_PER_UNIT[unit] if unit in _NM_PER_UNIT and scale > 0 else None


def layer_camera(layer):
    """The camera a layer's file (our reader's ``camera_metadata``) or our simulator
    (``metadata['camera']``) states in full, else None: the stack is used in ADU.
    A bead stack is not a blinking movie, so no camera is estimated from it; the
    PSF is normalised, so ADU serve as well."""
    from ..core.camera import Camera, camera_from_metadata

    camera = camera_from_metadata(file_metadata(layer))
    if camera is not None:
        return camera, f"the file's camera: {describe_camera(camera)}"
    known = (getattr(layer, "metadata", None) or {}).get("camera")
    if known:
        from ..core.config import camera_config

        camera = Camera.from_config(camera_config(dict(known), "the layer's camera", required=False))
        return camera, f"the layer's camera: {describe_camera(camera)}"
    return None, "none stated by the layer; the stack is used in ADU (the PSF is normalised)"


class CalibrateWidget(MovieFields, DockForm, Container):
    """3D PSF calibration from a bead z-stack: beads, averaged PSF, σx(z) and σy(z)."""

    def __init__(self, viewer: Viewer):
        from ..core.calibration import default_roi_px

        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.image = ComboBox(label="bead stack", choices=layer_choices(viewer, "Image"), nullable=True,
                              tooltip="beads on the coverslip imaged while the stage steps through focus: "
                                      "one plane per z position (Z, Y, X)")
        self.z_step = FloatSpinBox(label="z step [nm]", value=10.0, min=-10000, max=10000, step=1,
                                   tooltip="stage step between planes. Plane k is taken as z = (k - focus) * step, z "
                                           "positive away from the coverslip; negative: the stack is read backwards "
                                           "(the stage moved the focal plane into the sample)")
        self.pixel_size = FloatSpinBox(label="pixel [nm]", value=100.0, min=1, max=10000,
                                       tooltip="camera pixel size in the sample (from the layer when it knows it)")
        self.roi = SpinBox(label="ROI [px]", value=default_roi_px(100.0), min=5, max=201, step=2,
                           tooltip="box around each bead, odd; starts at about 2 µm for the pixel size (holds a "
                                   "PSF defocused by ±750 nm)")
        self.exclude = LineEdit(label="exclude beads", value="",
                                tooltip="bead numbers (as listed and drawn) to leave out of the average, e.g. 3, 5; "
                                        "then press Calibrate again")
        self.exclude.native.setPlaceholderText("e.g. 3, 5")
        self.run_button = PushButton(text="Find beads / Calibrate")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="stop this calibration; what was shown before stays")
        buttons = Container(layout="horizontal", labels=False, widgets=[self.run_button, self.cancel_button])
        buttons.margins = (0, 0, 0, 0)
        self.out = FileEdit(label="save as", mode="w", filter="*.h5",
                            tooltip="calibration file (.h5) for Train's PSF calibration and napari-smlm train --psf; "
                                    "empty: Save asks")
        self.save_button = PushButton(text="Save", enabled=False,
                                      tooltip="write the calibration (HDF5: averaged stack, spline, astigmatic fit)")
        self.status = wrap_label(Label(value=""))
        self.bead_list = wrap_label(Label(value=""))
        self.extend([self.image, self.z_step, self.pixel_size, self.roi, self.exclude, buttons, self.out,
                     self.save_button])
        self._full_width(self.status)
        self.figure, self.canvas = add_plot(self, viewer, figsize=(3.2, 3.6), min_height=280)
        self.ax_sigma = self.figure.add_subplot(211)
        self.ax_beads = self.figure.add_subplot(212)
        self._full_width(self.bead_list)
        self.task: Optional[Task] = None
        self.calibration = None
        self.beads_layer = None
        self.psf_layer = None
        self._source = None  # the layer of the calibration shown
        self._pending = (None, "")
        self._camera_text = ""
        self._cancel = threading.Event()
        self._z_line = None
        self._draw()
        self._roi_by_user = False
        self._setting = False
        self.image.changed.connect(self._image_changed)
        self.pixel_size.changed.connect(self._pixel_size_changed)
        self.roi.changed.connect(self._roi_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(lambda *_: self.save())
        viewer.dims.events.current_step.connect(self._dims_changed)
        self.native.destroyed.connect(lambda *_: viewer.dims.events.current_step.disconnect(self._dims_changed))
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self._fit_dock()

    # ------------------------------------------------------------------ parameters
    def _pick_default(self):
        ours = (self.psf_layer,)
        if self.image.value is None or self.image.value in ours:
            from ._common import default_layer

            layer = default_layer(self.viewer, "Image", exclude=ours)
            if layer is not None:
                self.image.value = layer

    def _image_changed(self, layer):
        super()._image_changed(layer)
        step = layer_z_step_nm(layer)
        if step:
            self.z_step.value = step

    def _pixel_size_changed(self, px):
        """The ROI follows the pixel size (about 2 µm) until the user sets it."""
        from ..core.calibration import default_roi_px

        if not self._roi_by_user:
            self._setting = True
            self.roi.value = default_roi_px(float(px))
            self._setting = False

    def _roi_changed(self, *_):
        if not self._setting:
            self._roi_by_user = True

    def _stack(self, layer) -> np.ndarray:
        if layer is None:
            raise ValueError("choose the bead stack: open the z-stack TIFF (File > Open, or drag it into napari)")
        if getattr(layer, "rgb", False):
            raise ValueError(f"layer '{layer.name}': RGB images are not bead stacks; expected a grey (Z, Y, X) stack")
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        if data.ndim != 3:
            raise ValueError(f"layer '{layer.name}': expected a bead z-stack (Z, Y, X), got shape {tuple(data.shape)}")
        return data

    # ------------------------------------------------------------------ run
    def run(self, *_):
        """Find the beads, fit and average them (in a worker); then show the result."""
        from ..core.calibration import calibrate_beads

        if self.task is not None:
            return
        try:
            layer = self.image.value
            data = self._stack(layer)
            z_step = float(self.z_step.value)
            if z_step == 0:
                raise ValueError("z step: expected the stage's step between planes in nm, not 0")
            exclude = parse_bead_numbers(self.exclude.value)
            found = self._beads_found(layer)
            if found is not None and any(n > found for n in exclude):
                raise ValueError(f"exclude beads: {', '.join(str(n) for n in exclude if n > found)} not among the "
                                 f"{plural(found, 'bead')} found (numbers 1 to {found})")
            camera, camera_text = layer_camera(layer)
        except Exception as exc:  # noqa: BLE001 - bad input: tell the user, keep the viewer
            notify_error(exc)
            return
        px, roi = float(self.pixel_size.value), int(self.roi.value) | 1
        source = str((layer.metadata or {}).get("source_path") or getattr(layer.source, "path", None) or layer.name)
        self._cancel.clear()
        self._pending = (layer, camera_text)

        def work():
            import torch

            yield f"reading {plural(data.shape[0], 'plane')} of {layer.name}…"
            stack = np.asarray(data, np.float64)
            if camera is not None:
                stack = camera.to_photons(torch.from_numpy(stack)).numpy()
            yield "finding, fitting and averaging the beads…"
            return calibrate_beads(stack, z_step, px, roi_px=roi, exclude=[n - 1 for n in exclude],
                                   camera=camera.to_dict() if camera is not None else None, source=source,
                                   cancelled=self._cancel.is_set)

        self.task = Task(work, desc="napari-smlm: PSF calibration", on_yield=self._on_progress,
                         on_return=self._on_result, on_error=self._on_error, on_finish=self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "calibrating…"
        self.task.start()

    def _beads_found(self, layer) -> Optional[int]:
        """How many beads the last calibration of this layer found (numbers stay the
        same when beads are excluded), or None."""
        if self.calibration is None or layer is not self._source or not self.calibration.beads:
            return None
        return len(self.calibration.beads["used"])

    def cancel(self, *_):
        """Drop the calibration in progress: nothing is shown or changed."""
        if self.task is None:
            return
        self._cancel.set()
        self.cancel_button.enabled = False
        self.status.value = "cancelling…"

    def _on_progress(self, text):
        if not self._cancel.is_set():
            self.status.value = text

    def _on_error(self, exc):
        if self._cancel.is_set():
            return
        self.status.value = f"failed: {user_message(exc)}"
        notify_error(exc)

    def _on_finished(self):
        self.task = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if self._cancel.is_set():
            self.status.value = "cancelled; nothing changed"
            notify_info("PSF calibration cancelled")

    def _on_result(self, cal):
        if self._cancel.is_set():
            return
        self.calibration = cal
        self._source, self._camera_text = self._pending
        self.save_button.enabled = True
        self._show_beads(cal)
        self._show_psf(cal)
        b = cal.beads
        used = int(np.sum(b["used"]))
        note = ("\nnote: fewer than 3 beads averaged; the spline will carry their noise" if used < 3 else "")
        self.status.value = f"{cal.summary()}\ncamera: {self._camera_text}{note}"
        self.bead_list.value = self._bead_text(cal)
        self._draw()
        if self._source is not None and self._source in self.viewer.layers:
            self.viewer.layers.selection.active = self._source  # the stack stays the layer being worked on

    # ------------------------------------------------------------------ layers
    def _replace(self, old, add):
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)
        return add()

    def _show_beads(self, cal):
        """The beads as square ROIs, numbered as in the list (and the CLI); averaged
        ones in one colour, left-out ones in another."""
        src, b = self._source, cal.beads
        n = len(b["used"])
        used = np.asarray(b["used"], bool)
        data = np.stack([np.asarray(b["y_px"], float) - 0.5, np.asarray(b["x_px"], float) - 0.5], 1)
        colors = np.array([USED_COLOR if u else LEFT_OUT_COLOR for u in used])
        features = {"bead": np.arange(1, n + 1), "used": used,
                    "state": np.where(used, "averaged", np.asarray(b["reason"], object)).astype(str),
                    "focus_nm": np.asarray(b["focus_nm"], float), "residual": np.asarray(b["residual"], float)}
        roi = cal.stack.shape[-1]
        text = {"string": "{bead}", "color": colors, "anchor": "upper_left", "size": 11,
                "translation": np.array([-1.0, 1.0])}
        self.beads_layer = self._replace(self.beads_layer, lambda: self.viewer.add_points(
            data, features=features, name=f"{src.name} beads", symbol="square", size=roi, face_color="transparent",
            border_color=colors, border_width=0.06, text=text, scale=tuple(src.scale[-2:]),
            translate=tuple(src.translate[-2:]), metadata={"napari_smlm": "beads", "pixel_size_nm": cal.pixel_size_nm}))

    def _show_psf(self, cal):
        """The averaged PSF beside the stack, its planes level with the stack's planes
        (the stage positions they were averaged from)."""
        src = self._source
        sz, sy, sx = src.scale[-3:]
        tz, ty, tx = src.translate[-3:]
        nz, _, w = src.data.shape[-3:] if not getattr(src, "multiscale", False) else src.data[0].shape[-3:]
        cut = (nz - cal.stack.shape[0]) / 2  # planes cropped at each end by the alignment
        lo, hi = cal.z_range_nm
        self.psf_layer = self._replace(self.psf_layer, lambda: self.viewer.add_image(
            cal.stack, name=f"{src.name} averaged PSF", colormap="magma", axis_labels=("z", "y", "x"),
            scale=(sz, sy, sx), translate=(tz + cut * sz, ty, tx + (w + 2) * sx),
            metadata={"napari_smlm": "psf", "z_nm": cal.z_nm, "z_step_nm": cal.z_step_nm,
                      "description": f"averaged PSF, z {lo:.0f}..{hi:.0f} nm in {cal.z_step_nm:g} nm steps"}))
        labels = list(self.viewer.dims.axis_labels)
        if len(labels) >= 3 and labels[-3] in ("frame", "-3", "0", str(len(labels) - 3)):
            labels[-3] = "z"
            self.viewer.dims.axis_labels = tuple(labels)
        self._dims_changed()

    def shown_psf_z_nm(self) -> Optional[float]:
        """z (nm) of the PSF plane the viewer shows, or None."""
        cal, layer = self.calibration, self.psf_layer
        if cal is None or layer is None or layer not in self.viewer.layers or self.viewer.dims.ndim < 3:
            return None
        world = float(self.viewer.dims.point[-3])
        k = int(round((world - layer.translate[-3]) / layer.scale[-3]))
        if not 0 <= k < cal.stack.shape[0]:
            return None
        return float(cal.z_nm[k])

    def _dims_changed(self, *_):
        """Mark the z of the PSF plane shown in the σ plot."""
        if self._z_line is None:
            return
        z = self.shown_psf_z_nm()
        try:
            self._z_line.set_visible(z is not None)
            if z is not None:
                self._z_line.set_xdata([z, z])
            self.ax_sigma.set_title(f"PSF plane shown: z {z:+.0f} nm" if z is not None else "", fontsize=7,
                                    color=self.ax_sigma.xaxis.label.get_color())
            self.canvas.draw_idle()
        except RuntimeError:  # the widget was closed
            pass

    # ------------------------------------------------------------------ text and plots
    @staticmethod
    def _bead_text(cal) -> str:
        b = cal.beads
        lines = [f"{plural(len(b['used']), 'bead')} found (averaged: green; left out: red):"]
        for i in range(len(b["used"])):
            state = (f"averaged, focus {b['focus_nm'][i]:+.0f} nm, residual {b['residual'][i]:.4f}" if b["used"][i]
                     else f"left out: {b['reason'][i]}")
            lines.append(f"{i + 1}: x {b['x_px'][i]:.1f}, y {b['y_px'][i]:.1f} px; {state}")
        return "\n".join(lines)

    def _draw(self):
        from ..core.psf import astigmatic_sigma_nm

        cal = self.calibration
        ax, bx = self.ax_sigma, self.ax_beads
        ax.clear()
        bx.clear()
        self._z_line = None
        if cal is not None and cal.curves:
            z = np.asarray(cal.curves["z_nm"])
            ax.plot(z, cal.curves["sigma_x_nm"], ".", ms=2.5, color="tab:blue", label="σx")
            ax.plot(z, cal.curves["sigma_y_nm"], ".", ms=2.5, color="tab:orange", label="σy")
            if cal.astigmatic:
                a = cal.astigmatic
                for axis, color in (("x", "tab:blue"), ("y", "tab:orange")):
                    ax.plot(z, astigmatic_sigma_nm(z, a[f"sigma0_{axis}_nm"], a[f"gamma_{axis}_nm"], a[f"d_{axis}_nm"],
                                                   a[f"A_{axis}"], a[f"B_{axis}"]), lw=1, color=color,
                            label=f"fit, focus {a[f'gamma_{axis}_nm']:+.0f} nm")
            self._z_line = ax.axvline(0.0, color="0.6", lw=0.8, ls=":", visible=False)
        ax.set_xlabel("z [nm]", fontsize=8)
        ax.set_ylabel("σ [nm]", fontsize=8)
        if cal is not None and cal.beads:
            b = cal.beads
            used = np.asarray(b["used"], bool)
            number = np.arange(1, len(used) + 1)
            res = np.nan_to_num(np.asarray(b["residual"], float))
            bx.bar(number[used], res[used], color=USED_COLOR)
            bx.plot(number[~used], np.zeros((~used).sum()), "x", color=LEFT_OUT_COLOR, ms=5)
            bx.set_xticks(number)
            bx.tick_params(axis="x", labelsize=6 if len(number) > 15 else 7)
        bx.set_xlabel("bead", fontsize=8)
        bx.set_ylabel("residual / peak", fontsize=8)
        style_figure(self.figure, self.viewer)
        if ax.lines:
            legend = ax.legend(fontsize=6, frameon=False)
            for text in legend.get_texts():
                text.set_color(ax.xaxis.label.get_color())
        self.canvas.draw_idle()
        self._dims_changed()

    # ------------------------------------------------------------------ save
    def save(self, path=None) -> Optional[str]:
        """Write the calibration (``save as``, else a file dialog); never over a file
        that is not a napari-smlm calibration."""
        from ..core.calibration import is_calibration_file, save_calibration
        from ..core.utils import check_writable

        cal = self.calibration
        if cal is None:
            notify_error("save: calibrate a bead stack first")
            return None
        path = Path(path) if path is not None else file_value(self.out)
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            folder = Path(cal.source).parent if Path(cal.source).is_file() else Path.cwd()
            stem = Path(cal.source).stem if Path(cal.source).is_file() else "psf"
            chosen, _ = QFileDialog.getSaveFileName(self.native, "Save PSF calibration",
                                                    str(folder / f"{stem}_psf.h5"), SAVE_FILTER)
            if not chosen:
                return None
            path = Path(chosen)
        if path.suffix.lower() not in (".h5", ".hdf5"):
            path = path.with_name(path.name + ".h5")
        try:
            check_writable(path, "save as")
            if path.exists() and not is_calibration_file(path):
                raise ValueError(f"save as {path}: exists and is not a calibration napari-smlm wrote; choose another "
                                 "name (it is left as it is)")
            save_calibration(cal, path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            message = user_message(exc)
            self.status.value = f"not saved: {message}"
            notify_error(message)
            return None
        self.out.value = str(path)
        self.status.value = f"{cal.summary()}\nwrote {path}"
        notify_info(f"wrote the PSF calibration {path}; use it in Train (PSF calibration) or napari-smlm train --psf")
        return str(path)


if __name__ == "__main__":  # a quick look: python -m napari_smlm._widgets.calibrate BEADS.tif
    import sys

    import napari

    v = napari.Viewer()
    if len(sys.argv) > 1:
        v.open(sys.argv[1], plugin="napari-smlm")
    v.window.add_dock_widget(CalibrateWidget(v), name="Calibrate")
    napari.run()

"""Render dock widget: Points layer of localizations -> super-resolution Image layer.

Density (one channel, ``hot``), coloured by z (RGB, with a colour bar in the dock) or a
z stack (in a napari window of its own, in the 3D view); a z slab (z from / to) where the
localizations' z varies.
"""

from typing import Optional

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.viewer import Viewer

from .._layers import layer_table, render_layer_kwargs
from ._common import (DockForm, Task, add_plot, connect_layer_updates, layer_choices, LocalizationsField, notify_error,
                      plural, style_figure, user_message, wrap_label)

DENSITY, Z_COLOUR, Z_STACK = "density", "colour by z", "z stack (3D view)"
COLORMAPS = ("rainbow", "turbo", "viridis", "plasma", "cool")


def _layer_z(layer) -> np.ndarray:
    """The finite z (nm) of a Points layer's shown localizations (empty without z)."""
    if layer is None or "z" not in layer.features:
        return np.zeros(0)
    z = np.asarray(layer.features["z"], float)[np.asarray(layer.shown, bool)]
    return z[np.isfinite(z)]


class RenderWidget(LocalizationsField, DockForm, Container):
    """Render the shown points of a localization layer as a super-resolution image."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.points = ComboBox(label="localizations", choices=layer_choices(viewer, "Points"), nullable=True)
        self.pixel_size = FloatSpinBox(label="render pixel [nm]", value=10.0, min=0.5, max=1000, step=1)
        self.camera_pixel = FloatSpinBox(label="camera pixel [nm]", value=100.0, min=1, max=10000,
                                         tooltip="taken from the layer when it carries it")
        self.blur = ComboBox(label="blur", choices=["gaussian", "histogram"], value="gaussian")
        self.sigma = FloatSpinBox(label="fixed σ [nm]", value=0.0, min=0, max=1000,
                                  tooltip="0: each molecule's own predicted uncertainty")
        self.mode = ComboBox(label="image", choices=[DENSITY, Z_COLOUR, Z_STACK], value=DENSITY,
                             tooltip="density: one channel; colour by z: each localization coloured by its z (RGB); "
                                     "z stack: slices in z, shown in 3D in a window of its own. z choices need 3D "
                                     "localizations.")
        self.z_min = SpinBox(label="z from [nm]", value=0, min=-100_000, max=100_000, step=10,
                             tooltip="only localizations with z in [from, to] (a z slab); also the colour "
                                     "scale's range. Starts at the layer's z range.")
        self.z_max = SpinBox(label="z to [nm]", value=0, min=-100_000, max=100_000, step=10,
                             tooltip=self.z_min.tooltip)
        self.colormap = ComboBox(label="colour map", choices=list(COLORMAPS), value=COLORMAPS[0])
        self.z_bin = FloatSpinBox(label="z slice [nm]", value=50.0, min=1, max=10000, step=10,
                                  tooltip="thickness of the z stack's slices")
        self.button = PushButton(text="Render")
        self.status = wrap_label(Label(value=""))
        self.extend([self.points, self.pixel_size, self.camera_pixel, self.blur, self.sigma, self.mode, self.z_min,
                     self.z_max, self.colormap, self.z_bin, self.button])
        self._full_width(self.status)
        self._colorbar_figure, self._colorbar_canvas = add_plot(self, viewer, figsize=(3.2, 0.75), min_height=64)
        self._colorbar_limits: Optional[tuple[float, float]] = None
        self.points.changed.connect(self._points_changed)
        self.mode.changed.connect(self._update_fields)
        for field in (self.z_min, self.z_max, self.colormap):
            field.changed.connect(self._draw_colorbar)
        self.button.changed.connect(self.run)
        self.layer = None
        self.volume_viewer = None  # the window of the z stacks
        self.task: Optional[Task] = None
        self._has_z = False
        self._z_data_range: Optional[tuple[float, float]] = None
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self._points_changed(self.points.value)
        self._fit_dock()

    # ------------------------------------------------------------------ fields
    def _points_changed(self, layer):
        if layer is not None and "pixel_size_nm" in layer.metadata:
            self.camera_pixel.value = float(layer.metadata["pixel_size_nm"])
        z = _layer_z(layer)
        self._has_z = bool(len(z) and np.ptp(z) > 1.0)
        if self._has_z:  # the data's range, outwards to 10 nm
            self._z_data_range = (float(np.floor(z.min() / 10) * 10), float(np.ceil(z.max() / 10) * 10))
            self.z_min.value, self.z_max.value = self._z_data_range
        self._update_fields()

    def _update_fields(self, *_):
        """z fields only for 3D localizations; colour map and colour bar only when
        colouring by z; slice thickness only for the z stack."""
        mode = self.mode.value
        self.z_min.visible = self.z_max.visible = self._has_z
        self.colormap.visible = mode == Z_COLOUR
        self.z_bin.visible = mode == Z_STACK
        self._colorbar_canvas.setVisible(mode == Z_COLOUR)
        if mode != DENSITY and not self._has_z and self.points.value is not None:
            self.status.value = "every localization has the same z (2D data): one colour, one slice"
        self._draw_colorbar()

    def z_range(self) -> Optional[tuple[float, float]]:
        """The z slab (nm) to render, or None (2D localizations: everything)."""
        if not self._has_z:
            return None
        lo, hi = float(self.z_min.value), float(self.z_max.value)
        if not lo < hi:
            raise ValueError(f"z from {lo:g} nm must be below z to {hi:g} nm")
        return lo, hi

    def _draw_colorbar(self, *_, limits: Optional[tuple[float, float]] = None):
        """The colour scale of a render coloured by z: which colour is which z (nm)."""
        import matplotlib

        from ..core.render import z_limits

        if self.mode.value != Z_COLOUR:
            return
        if limits is None:
            try:
                rng = self.z_range()
            except ValueError:
                return
            limits = z_limits({"x": np.zeros(1), "z": np.zeros(1)}, rng)
        self._colorbar_limits = limits
        fig = self._colorbar_figure
        fig.clear()
        ax = fig.add_subplot(111)
        norm = matplotlib.colors.Normalize(*limits)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=self.colormap.value), cax=ax,
                     orientation="horizontal")
        ax.set_xlabel("z [nm]", fontsize=8)
        style_figure(fig, self.viewer)
        self._colorbar_canvas.draw_idle()

    # ------------------------------------------------------------------ render
    def run(self, *_):
        """Render in a worker; the image layer is added when it is done."""
        from ..core.render import render, render_volume, render_z_color, select_z

        if self.task is not None:
            return
        try:
            layer = self.points.value
            if layer is None:
                raise ValueError("choose a Points layer of localizations (run Localize, or open a .csv / .h5)")
            px = float(self.camera_pixel.value)
            table = layer_table(layer, px)
            if not len(table["x"]):
                raise ValueError(f"layer '{layer.name}' shows no localizations to render")
            z_range = self.z_range()
            n = len(select_z(table, z_range)["x"])
            if not n:
                raise ValueError(f"no localization of '{layer.name}' has z in [{z_range[0]:g}, {z_range[1]:g}] nm")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc)
            return
        render_px, blur, sigma = float(self.pixel_size.value), self.blur.value, self.sigma.value or None
        mode, colormap, z_bin = self.mode.value, self.colormap.value, float(self.z_bin.value)
        # the layer's name says which slab, where it is not the whole z range
        slab = "" if z_range in (None, self._z_data_range) else f" z {z_range[0]:g}…{z_range[1]:g}"
        # the image covers every shown localization, slab or not, so slabs overlay
        shape_nm = (float(table["y"].max()) + render_px, float(table["x"].max()) + render_px)
        kw = dict(shape_nm=shape_nm, blur=blur, sigma_nm=sigma, z_range_nm=z_range)

        def work():
            yield f"rendering {plural(n, 'localization')}…"
            if mode == Z_COLOUR:
                return render_z_color(table, render_px, colormap=colormap, **kw)
            if mode == Z_STACK:
                return render_volume(table, render_px, z_bin, **kw)
            return render(table, render_px, **kw), None

        def done(result):
            image, extra = result
            kw2d = render_layer_kwargs(render_px, px, tuple(layer.scale[-2:]), tuple(layer.translate[-2:]))
            meta = {"napari_smlm": "render", "pixel_size_nm": render_px}
            if z_range is not None:
                meta["z_range_nm"] = z_range
            if mode == Z_COLOUR:
                meta.update(color_by="z", colormap=colormap, z_limits_nm=tuple(extra))
                name = f"{layer.name} z colour{slab} {render_px:g} nm"
                self.layer = self.viewer.add_image(image, rgb=True, name=name, contrast_limits=(0.0, 1.0),
                                                   blending="additive", metadata=meta, **kw2d)
                self._draw_colorbar(limits=tuple(extra))
                self.status.value = (f"{image.shape[1]}×{image.shape[0]} px of {render_px:g} nm, coloured by z from "
                                     f"{extra[0]:.0f} to {extra[1]:.0f} nm ({colormap}; colour bar below)")
            elif mode == Z_STACK:
                meta.update(z_edges_nm=tuple(float(e) for e in extra))
                self.layer = self._show_volume(image, extra, z_bin, render_px,
                                               f"{layer.name} z stack{slab} {render_px:g} nm", meta)
                self.status.value = (f"{image.shape[0]} z slices of {z_bin:g} nm ({extra[0]:g} to {extra[-1]:g} nm) × "
                                     f"{image.shape[2]}×{image.shape[1]} px of {render_px:g} nm, in a viewer window "
                                     f"of its own, in 3D (drag to turn it; its 2D/3D button shows slices)")
            else:
                self.layer = self.viewer.add_image(image, name=f"{layer.name} render{slab} {render_px:g} nm",
                                                   colormap="hot", contrast_limits=_limits(image), blending="additive",
                                                   metadata=meta, **kw2d)
                self.status.value = f"{image.shape[1]}×{image.shape[0]} px of {render_px:g} nm"

        def failed(exc):
            self.status.value = f"failed: {user_message(exc)}"
            notify_error(exc)

        def finished():
            self.task = None
            self.button.enabled = True

        self.task = Task(work, desc="napari-smlm: rendering", on_yield=lambda s: setattr(self.status, "value", s),
                         on_return=done, on_error=failed, on_finish=finished)
        self.button.enabled = False
        self.task.start()


    def _show_volume(self, volume, edges, z_bin, render_px, name, meta):
        """The z stack in a napari window of its own, in the 3D view, in nm. (In the
        main viewer its z axis would share the movie's frame axis.)"""
        import napari

        viewer = self.volume_viewer
        try:
            alive = viewer is not None and viewer.window._qt_window.isVisible()
        except (AttributeError, RuntimeError):  # closed by the user
            alive = False
        if not alive:
            viewer = self.volume_viewer = napari.Viewer(title="napari-smlm: z stack", show=True)
            viewer.canvas.overlays["scale_bar"].visible = True
        # voxel (k, i, j) covers z in [edges[k], edges[k+1]), y in [i·r, (i+1)·r), x in [j·r, (j+1)·r) nm
        layer = viewer.add_image(volume, name=name, colormap="hot", contrast_limits=_limits(volume),
                                 blending="additive", rendering="mip", metadata=meta, units="nm",
                                 scale=(z_bin, render_px, render_px),
                                 translate=(float(edges[0]) + 0.5 * z_bin, 0.5 * render_px, 0.5 * render_px))
        viewer.dims.axis_labels = ("z [nm]", "y [nm]", "x [nm]")
        viewer.dims.ndisplay = 3
        viewer.reset_view()
        return layer


def _limits(image: np.ndarray) -> tuple[float, float]:
    """Contrast limits: 0 to the 99.5th percentile of the non-empty pixels."""
    hi = float(np.percentile(image[image > 0], 99.5)) if (image > 0).any() else 1.0
    return 0.0, max(hi, 1e-6)

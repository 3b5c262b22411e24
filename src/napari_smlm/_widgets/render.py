"""Render dock widget: Points layer of localizations -> super-resolution Image layer."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton

from .._layers import points_to_table, render_layer_kwargs
from ._common import connect_layer_updates, layer_choices, notify_error


class RenderWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__(labels=True)
        self.viewer = viewer
        self.points = ComboBox(label="localizations", choices=layer_choices(viewer, "Points"), nullable=True)
        self.pixel_size = FloatSpinBox(label="render pixel [nm]", value=10.0, min=0.5, max=1000, step=1)
        self.camera_pixel = FloatSpinBox(label="camera pixel [nm]", value=100.0, min=1, max=10000)
        self.blur = ComboBox(label="blur", choices=["gaussian", "histogram"], value="gaussian")
        self.sigma = FloatSpinBox(label="fixed σ [nm] (0: per molecule)", value=0.0, min=0, max=1000)
        self.button = PushButton(text="Render")
        self.extend([self.points, self.pixel_size, self.camera_pixel, self.blur, self.sigma, self.button])
        self.points.changed.connect(self._points_changed)
        self.button.changed.connect(self.run)
        connect_layer_updates(viewer, self)
        self.reset_choices()
        self.layer = None

    def _points_changed(self, layer):
        if layer is not None and "pixel_size_nm" in layer.metadata:
            self.camera_pixel.value = float(layer.metadata["pixel_size_nm"])

    def run(self, *_):
        from ..core.render import render

        try:
            layer = self.points.value
            if layer is None:
                raise ValueError("choose a Points layer of localizations")
            px = float(self.camera_pixel.value)
            shown = np.asarray(layer.shown, bool)
            table = points_to_table(layer.data[shown], {k: np.asarray(v)[shown] for k, v in layer.features.items()}, px)
            if not len(table["x"]):
                raise ValueError(f"layer '{layer.name}' shows no localizations to render")
            image = render(table, self.pixel_size.value, blur=self.blur.value, sigma_nm=self.sigma.value or None)
        except Exception as exc:
            notify_error(exc)
            return
        kw = render_layer_kwargs(self.pixel_size.value, px, tuple(layer.scale[-2:]), tuple(layer.translate[-2:]))
        hi = float(np.percentile(image[image > 0], 99.5)) if (image > 0).any() else 1.0
        self.layer = self.viewer.add_image(image, name=f"{layer.name} render {self.pixel_size.value:g} nm", colormap="hot",
                                           contrast_limits=(0.0, max(hi, 1e-6)), blending="additive", **kw)
        return self.layer

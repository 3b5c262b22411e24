"""Render dock widget: Points layer of localizations -> super-resolution Image layer."""

from typing import Optional

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton
from napari.viewer import Viewer

from .._layers import points_to_table, render_layer_kwargs
from ._common import (DockForm, Task, connect_layer_updates, layer_choices, LocalizationsField, notify_error, plural,
                      user_message, wrap_label)


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
        self.button = PushButton(text="Render")
        self.status = wrap_label(Label(value=""))
        self.extend([self.points, self.pixel_size, self.camera_pixel, self.blur, self.sigma, self.button])
        self._full_width(self.status)
        self.points.changed.connect(self._points_changed)
        self.button.changed.connect(self.run)
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self.layer = None
        self.task: Optional[Task] = None
        self._fit_dock()

    def _points_changed(self, layer):
        if layer is not None and "pixel_size_nm" in layer.metadata:
            self.camera_pixel.value = float(layer.metadata["pixel_size_nm"])

    def run(self, *_):
        """Render in a worker; the image layer is added when it is done."""
        from ..core.render import render

        if self.task is not None:
            return
        try:
            layer = self.points.value
            if layer is None:
                raise ValueError("choose a Points layer of localizations (run Localize, or open a .csv / .h5)")
            px = float(self.camera_pixel.value)
            shown = np.asarray(layer.shown, bool)
            table = points_to_table(layer.data[shown], {k: np.asarray(v)[shown] for k, v in layer.features.items()},
                                    px)
            if not len(table["x"]):
                raise ValueError(f"layer '{layer.name}' shows no localizations to render")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc)
            return
        render_px, blur, sigma = float(self.pixel_size.value), self.blur.value, self.sigma.value or None

        def work():
            yield f"rendering {plural(len(table['x']), 'localization')}…"
            return render(table, render_px, blur=blur, sigma_nm=sigma)

        def done(image):
            kw = render_layer_kwargs(render_px, px, tuple(layer.scale[-2:]), tuple(layer.translate[-2:]))
            hi = float(np.percentile(image[image > 0], 99.5)) if (image > 0).any() else 1.0
            self.layer = self.viewer.add_image(image, name=f"{layer.name} render {render_px:g} nm", colormap="hot",
                                               contrast_limits=(0.0, max(hi, 1e-6)), blending="additive",
                                               metadata={"napari_smlm": "render", "pixel_size_nm": render_px}, **kw)
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

"""Localize dock widget: movie layer in, Points layer of molecules out.

Thin: it collects parameters, runs :func:`napari_smlm.core.localize.localize` in a
worker thread, and turns the result into a Points layer. The cached candidates
make the threshold sliders instant (they set the layer's ``shown`` mask).
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox

from .._layers import table_to_points
from ._common import connect_layer_updates, iterate_callback, layer_choices, movie_from_layer, notify_error

CAMERAS = ["estimate from movie", "manual", "EMCCD default (100 ADU, 45 e-/ADU, gain 100, QE 0.9)", "photons (no conversion)"]
MODELS = ["default (bundled)", "checkpoint file"]


class LocalizeWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__(labels=True)
        self.viewer = viewer
        self.image = ComboBox(label="movie", choices=layer_choices(viewer, "Image"), nullable=True)
        self.model = ComboBox(label="model", choices=MODELS, value=MODELS[0])
        self.checkpoint = FileEdit(label="checkpoint", filter="*.pt", visible=False)
        self.camera = ComboBox(label="camera", choices=CAMERAS, value=CAMERAS[0])
        self.baseline = FloatSpinBox(label="baseline [ADU]", value=100.0, min=0, max=1e5, visible=False)
        self.e_per_adu = FloatSpinBox(label="e-/ADU", value=45.0, min=1e-3, max=1e4, step=0.1, visible=False)
        self.em_gain = FloatSpinBox(label="EM gain", value=100.0, min=1, max=1e4, visible=False)
        self.qe = FloatSpinBox(label="QE", value=0.9, min=0.01, max=1, step=0.01, visible=False)
        self.pixel_size = FloatSpinBox(label="pixel size [nm]", value=100.0, min=1, max=10000)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.first_frame = SpinBox(label="first frame", value=1, min=1, max=10**9)
        self.last_frame = SpinBox(label="last frame (0: all)", value=0, min=0, max=10**9)
        self.run_button = PushButton(text="Localize")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=100)
        self.threshold = FloatSlider(label="probability ≥", value=0.5, min=0.05, max=1.0, step=0.01)
        self.min_photons = FloatSpinBox(label="photons ≥", value=0.0, min=0, max=1e7, step=100)
        self.max_uncertainty = FloatSpinBox(label="uncertainty ≤ [nm] (0: off)", value=0.0, min=0, max=1e4, step=5)
        self.color_by = ComboBox(label="colour by", choices=["prob", "photons"], value="prob")
        self.scale_maps_button = PushButton(text="Per-scale maps (current frame)", tooltip="multi-scale models: show each scale's probability map")
        self.summary = Label(value="")
        self.extend([
            self.image, self.model, self.checkpoint, self.camera, self.baseline, self.e_per_adu, self.em_gain, self.qe,
            self.pixel_size, self.device, self.first_frame, self.last_frame, self.run_button, self.cancel_button,
            self.progress, self.threshold, self.min_photons, self.max_uncertainty, self.color_by, self.scale_maps_button,
            self.summary,
        ])
        self.worker = None
        self.result = None
        self.layer = None
        self._cancel = threading.Event()
        self.model.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == MODELS[1]))
        self.camera.changed.connect(self._camera_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        for w in (self.threshold, self.min_photons, self.max_uncertainty):
            w.changed.connect(self.refilter)
        self.color_by.changed.connect(self._recolor)
        self.scale_maps_button.changed.connect(self.show_scale_maps)
        self._pbar = None
        connect_layer_updates(viewer, self)
        self.reset_choices()

    # ------------------------------------------------------------------ parameters
    def _camera_changed(self, value):
        manual = value == CAMERAS[1]
        for w in (self.baseline, self.e_per_adu, self.em_gain, self.qe):
            w.visible = manual

    def _camera(self):
        from ..core.camera import Camera

        choice = self.camera.value
        if choice == CAMERAS[0]:
            return "estimate"
        if choice == CAMERAS[3]:
            return None
        if choice == CAMERAS[2]:
            return Camera()
        gain = float(self.em_gain.value)
        return Camera(baseline=self.baseline.value, e_per_adu=self.e_per_adu.value, em_gain=gain, qe=self.qe.value,
                      read_noise_e=0.0, kind="emccd" if gain > 1 else "scmos")

    def _model(self):
        if self.model.value == MODELS[0]:
            return "default"
        path = self.checkpoint.value
        if path is None or not str(path) or str(path) == ".":
            raise ValueError("choose a checkpoint file (.pt), or the bundled default model")
        return str(path)

    # ------------------------------------------------------------------ run
    def run(self, *_):
        from napari.qt.threading import create_worker

        from ..core.inference import LocalizationModel
        from ..core.localize import localize

        if self.worker is not None:
            return
        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            lm = LocalizationModel.load(self._model())
            camera = self._camera()
            first = int(self.first_frame.value) - 1
            last = int(self.last_frame.value) or movie.shape[0]
            if not 0 <= first < last <= movie.shape[0]:
                raise ValueError(f"frame range {first + 1}..{last} is outside the movie's 1..{movie.shape[0]} frames")
        except Exception as exc:  # bad input: tell the user, keep the viewer
            notify_error(exc)
            return
        self._cancel.clear()
        self._source = layer
        kwargs = dict(movie=movie, model=lm, camera=camera, pixel_size_nm=self.pixel_size.value, device=self.device.value,
                      frame_range=(first, last), threshold=self.threshold.value, cancel=self._cancel.is_set,
                      log=lambda s: None)

        def work():
            return (yield from iterate_callback(localize, "progress", **kwargs))

        self.worker = create_worker(work)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_result)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.summary.value = "localizing..."
        from napari.utils import progress

        self._pbar = progress(total=last - first, desc="napari-smlm: localizing")  # the viewer's activity dock
        self.worker.start()

    def cancel(self, *_):
        self._cancel.set()

    def _on_progress(self, event):
        done, total = event
        self.progress.value = int(100 * done / max(total, 1))
        if self._pbar is not None:
            self._pbar.update(done - self._pbar.n)

    def _on_error(self, exc):
        notify_error(exc)
        self.summary.value = f"failed: {exc}"

    def _on_finished(self):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def _on_result(self, result):
        self.result = result
        data, features = table_to_points(result.candidates, result.pixel_size_nm)
        src = self._source
        scale = tuple(src.scale[-2:]) if src is not None else (1.0, 1.0)
        translate = tuple(src.translate[-2:]) if src is not None else (0.0, 0.0)
        name = f"{src.name} localizations" if src is not None else "localizations"
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = self.viewer.add_points(
            data, features=features, name=name, size=1.2, border_width=0, face_color=self.color_by.value,
            face_colormap="viridis", scale=(1.0, *scale), translate=(0.0, *translate), out_of_slice_display=False,
            metadata={"pixel_size_nm": result.pixel_size_nm, "napari_smlm": "localizations"},
        )
        self.refilter()
        t = result.timings
        self.summary.value = (f"{int(self.layer.shown.sum())} molecules in {result.movie_shape[0]} frames "
                              f"({t.get('total', 0):.1f} s)")

    # ------------------------------------------------------------------ sliders
    def shown_mask(self) -> Optional[np.ndarray]:
        if self.result is None:
            return None
        c = self.result.candidates
        keep = c["prob"] >= self.threshold.value
        if self.min_photons.value > 0:
            keep &= c["photons"] >= self.min_photons.value
        if self.max_uncertainty.value > 0 and "sigma_x" in c:
            keep &= np.sqrt(0.5 * (c["sigma_x"] ** 2 + c["sigma_y"] ** 2)) <= self.max_uncertainty.value
        return keep

    def refilter(self, *_):
        """Re-filter the cached candidates: no network run, just the shown mask."""
        if self.layer is None or self.result is None or self.layer not in self.viewer.layers:
            return
        keep = self.shown_mask()
        self.layer.shown = keep
        self.summary.value = f"{int(keep.sum())} molecules shown (of {len(keep)} candidates)"

    def _recolor(self, value):
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.face_color = value

    def show_scale_maps(self, *_):
        """Probability maps of every scale of a multi-scale model for the frame shown."""
        import torch

        from ..core.inference import LocalizationModel
        from ..core.training.trainer import scale_input

        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            lm = LocalizationModel.load(self._model())
            if not hasattr(lm.model, "scales"):
                raise ValueError(f"{lm.model.architecture} predicts one scale; per-scale maps need a multi-scale model (multiscale_var)")
            t = int(self.viewer.dims.current_step[0]) if movie.shape[0] > 1 else 0
            c = lm.frame_window // 2
            idx = np.clip(np.arange(t - c, t + c + 1), 0, movie.shape[0] - 1)
            frames = torch.from_numpy(np.asarray(movie[idx], np.float32))[None]
            camera = self._camera()
            if camera == "estimate":
                from ..core.camera import estimate_camera

                camera, _ = estimate_camera(movie)
            if camera is not None:
                frames = camera.to_photons(frames)
            with torch.no_grad():
                maps = lm.model.eval().forward_scales(scale_input(frames, lm.scaling))["scales"]
        except Exception as exc:
            notify_error(exc)
            return []
        layers = []
        sy, sx = layer.scale[-2:]
        ty, tx = layer.translate[-2:]
        for s, m in maps.items():
            p = torch.sigmoid(m[0, 0]).numpy()
            # fine cell (i, j) covers camera pixels [i/s, (i+1)/s): centre at index (i + 0.5)/s - 0.5
            layers.append(self.viewer.add_image(p, name=f"p at {s}x (frame {t + 1})", colormap="magma", blending="additive",
                                                scale=(sy / s, sx / s), translate=(ty + (0.5 / s - 0.5) * sy, tx + (0.5 / s - 0.5) * sx),
                                                contrast_limits=(0, 1), visible=s == max(maps)))
        return layers

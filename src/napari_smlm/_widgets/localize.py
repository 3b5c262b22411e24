"""Localize dock widget: movie layer in, Points layer of molecules out.

Thin: it collects parameters, runs :func:`napari_smlm.core.localize.localize` in a
worker thread, and turns the result into a Points layer. The cached candidates
make the threshold sliders instant (they set the layer's ``shown`` mask).
"""

import threading
from pathlib import Path
from typing import Optional

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSlider, FloatSpinBox, Label, ProgressBar,
                              PushButton, SpinBox)
from napari.viewer import Viewer

from .._layers import color_kwargs, layer_table, table_to_points, z_varies
from ._common import (DockForm, MovieFields, Task, connect_layer_updates, describe_camera, existing_file,
                      file_metadata, layer_choices, layer_pixel_size_nm, movie_from_layer, notify_error, notify_info,
                      plural, user_message, wrap_label)

ESTIMATE, MANUAL, EMCCD_PRESET, PHOTONS = "estimate from movie", "manual", "EMCCD preset", "photons (no conversion)"
CAMERAS = [ESTIMATE, MANUAL, EMCCD_PRESET, PHOTONS]
CAMERA_TIP = ("How ADU become photons.\n"
              f"{ESTIMATE}: baseline and gain from the movie's noise (press Estimate to see and correct them)\n"
              f"{MANUAL}: the values typed below\n"
              f"{EMCCD_PRESET}: baseline 100 ADU, 45 e-/ADU, EM gain 100, QE 0.9 (our simulator's camera)\n"
              f"{PHOTONS}: the movie is already in photons")
BUNDLED, FAST, CHECKPOINT = "bundled (default)", "bundled fast", "checkpoint file"
MODELS = [BUNDLED, FAST, CHECKPOINT]
MODEL_TIP = ("bundled (default): the accurate network\n"
             "bundled fast: a network several times quicker (large movies on a laptop), a little less accurate\n"
             "checkpoint file: a model (.pt) from Train")
LARGE_MOVIE_PIXELS = 1000 * 256 * 256  # ~100 s with the default model on a 2-core CPU (benchmarks/run.py)
EXPORT_FILTER = "CSV, ThunderSTORM style (*.csv);;HDF5, Picasso (*.h5 *.hdf5)"


_MODEL_CACHE: dict = {}


def load_model(path):
    """A LocalizationModel, cached per file and modification time."""
    from ..core.inference import LocalizationModel, resolve_model_path

    p = resolve_model_path(path, what="model")
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = LocalizationModel.load(p)
    return _MODEL_CACHE[key]


class LocalizeWidget(MovieFields, DockForm, Container):
    """Localize molecules in a movie layer with a trained network."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.image = ComboBox(label="movie", choices=layer_choices(viewer, "Image"), nullable=True,
                              tooltip="the movie (T, Y, X) in camera counts (ADU)")
        self.model = ComboBox(label="model", choices=MODELS, value=BUNDLED, tooltip=MODEL_TIP)
        self.checkpoint = FileEdit(label="checkpoint", filter="*.pt", visible=False)
        self.camera = ComboBox(choices=CAMERAS, value=ESTIMATE, tooltip=CAMERA_TIP)
        self.estimate_button = PushButton(text="Estimate", tooltip="estimate the camera from the movie now and "
                                                                   "fill the manual fields, to check or correct; "
                                                                   "a baseline you typed there is kept and the "
                                                                   "rest estimated with it")
        camera_row = Container(layout="horizontal", labels=False, widgets=[self.camera, self.estimate_button],
                               label="camera", tooltip=CAMERA_TIP)
        camera_row.margins = (0, 0, 0, 0)
        self.baseline = FloatSpinBox(label="baseline [ADU]", value=100.0, min=0, max=1e5, visible=False,
                                     tooltip="the camera's dark level")
        self.e_per_adu = FloatSpinBox(label="e-/ADU", value=45.0, min=1e-3, max=1e4, step=0.1, visible=False,
                                      tooltip="electrons per ADU after EM gain (the camera's conversion factor)")
        self.em_gain = FloatSpinBox(label="EM gain", value=100.0, min=1, max=1e4, visible=False,
                                    tooltip="1 for sCMOS / CCD cameras")
        self.qe = FloatSpinBox(label="QE", value=0.9, min=0.01, max=1, step=0.01, visible=False,
                               tooltip="quantum efficiency")
        self.camera_info = wrap_label(Label(value="", visible=False))
        for w in (self.baseline, self.e_per_adu, self.em_gain, self.qe):
            w.native.setDecimals(4)  # estimates such as 0.1234 e-/ADU survive the round trip
        self.pixel_size = FloatSpinBox(label="pixel [nm]", value=100.0, min=1, max=10000,
                                       tooltip="camera pixel size in the sample, in nm (taken from the layer "
                                               "when it knows it)")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.first_frame = SpinBox(label="first frame", value=1, min=1, max=10**9)
        self.last_frame = SpinBox(label="last frame", value=0, min=0, max=10**9,
                                  tooltip="the last frame to localize (0: to the end)")
        self.run_button = PushButton(text="Localize")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(layout="horizontal", labels=False, widgets=[self.run_button, self.cancel_button])
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=100)
        self.threshold = FloatSlider(label="probability ≥", value=0.5, min=0.05, max=1.0, step=0.01,
                                     tooltip="detection threshold (starts at the model's own); re-filters at once")
        self.min_photons = FloatSpinBox(label="photons ≥", value=0.0, min=0, max=1e7, step=100)
        self.max_uncertainty = FloatSpinBox(label="σ ≤ [nm]", value=0.0, min=0, max=1e4, step=5,
                                            tooltip="largest predicted lateral uncertainty; 0: off")
        self.merge = CheckBox(text="merge repeated localizations", value=False,
                              tooltip="one molecule on in consecutive frames (at most 1 frame missed) becomes one "
                                      "localization: photons summed, position uncertainty-weighted; shown as a second "
                                      "layer, which Export then writes")
        self._three_d = False  # the result has z: "z" is a colour choice
        self.color_by = ComboBox(label="colour by", choices=self._color_choices, value="prob",
                                 tooltip="the points' colour: probability, photons, or z (3D models)")
        self.scale_maps_button = PushButton(text="Per-scale maps",
                                            tooltip="multi-scale models: each scale's probability map, current frame")
        self.export_button = PushButton(text="Export…", tooltip="write the points shown as CSV (ThunderSTORM "
                                                                "style) or HDF5 (Picasso)")
        tools = Container(layout="horizontal", labels=False, widgets=[self.export_button, self.scale_maps_button])
        tools.margins = (0, 0, 0, 0)
        self.summary = wrap_label(Label(value=""))
        self.extend([
            self.image, self.model, self.checkpoint, camera_row, self.baseline, self.e_per_adu, self.em_gain, self.qe,
            self.pixel_size, self.device, self.first_frame, self.last_frame, buttons,
            self.progress, self.threshold, self.min_photons, self.max_uncertainty, self.merge, self.color_by, tools,
        ])
        self._full_width(self.camera_info, after=self.qe)
        self._full_width(self.summary)
        self.task: Optional[Task] = None
        self.result = None
        self.layer = None
        self.merged_layer = None
        self.camera_report: Optional[dict] = None
        self._filled_baseline = float(self.baseline.value)  # what the last estimate (or the default) put there
        self._run_info = ""
        self._cancel = threading.Event()
        self._threshold_by_user = False
        self._setting = False
        self.model.changed.connect(self._model_changed)
        self.checkpoint.changed.connect(lambda *_: self._model_changed())
        self.camera.changed.connect(self._camera_changed)
        self.estimate_button.changed.connect(self.start_estimate)
        self.image.changed.connect(self._image_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.threshold.changed.connect(self._threshold_changed)
        for w in (self.min_photons, self.max_uncertainty, self.merge):
            w.changed.connect(self.refilter)
        self.color_by.changed.connect(self._recolor)
        self.scale_maps_button.changed.connect(self.show_scale_maps)
        self.export_button.changed.connect(lambda *_: self.export())
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self._model_changed()
        self._fit_dock()

    # ------------------------------------------------------------------ parameters
    def _image_changed(self, layer):
        super()._image_changed(layer)
        self._show_frame_range()
        self._suggest_fast()

    def _show_frame_range(self):
        """The frame range is the new movie's, 1 to its length (a 0 "to the end" read
        as if nothing would be localized)."""
        try:
            t = int(movie_from_layer(self.image.value).shape[0])
        except Exception:  # noqa: BLE001 - no movie chosen: keep the range as it is
            return
        self.first_frame.max = self.last_frame.max = t
        self.first_frame.value, self.last_frame.value = 1, t

    def _suggest_fast(self):
        """On a large movie with the default model, say that the fast one exists (the
        default runs ~10 frames/s of 256x256 on a 2-core laptop CPU, the fast one ~90;
        docs/benchmarks/fast_preset.md)."""
        if self.task is not None or self.result is not None:
            return
        try:
            t, h, w = movie_from_layer(self.image.value).shape
        except Exception:  # noqa: BLE001 - no movie yet: nothing to suggest
            return
        large = self.model.value == BUNDLED and t * h * w >= LARGE_MOVIE_PIXELS
        self.summary.value = (f"a large movie ({plural(t, 'frame')} of {h}x{w}): on a CPU the default model takes "
                              f"minutes here; 'bundled fast' is several times quicker" if large else "")

    def _model_changed(self, *_):
        self._suggest_fast()
        self.checkpoint.visible = self.model.value == CHECKPOINT
        if self._threshold_by_user:
            return
        try:
            lm = load_model(self._model())
        except Exception:  # noqa: BLE001 - an unfinished choice; run() reports it
            return
        self._setting = True
        self.threshold.value = float(lm.detection_threshold)
        self._setting = False

    def _threshold_changed(self, *_):
        if not self._setting:
            self._threshold_by_user = True
        self.refilter()

    def _camera_changed(self, value):
        manual = value == MANUAL
        for w in (self.baseline, self.e_per_adu, self.em_gain, self.qe):
            w.visible = manual

    def _camera(self):
        from ..core.camera import Camera

        choice = self.camera.value
        if choice == ESTIMATE:
            return "estimate"
        if choice == PHOTONS:
            return None
        if choice == EMCCD_PRESET:
            return Camera()
        gain = float(self.em_gain.value)
        return Camera(baseline=self.baseline.value, e_per_adu=self.e_per_adu.value, em_gain=gain, qe=self.qe.value,
                      read_noise_e=0.0, kind="emccd" if gain > 1 else "scmos")

    def _model(self):
        if self.model.value == BUNDLED:
            return "default"
        if self.model.value == FAST:
            return "fast"
        path = existing_file(self.checkpoint, "model", "checkpoint file")
        if path is None:
            raise ValueError("model: choose a checkpoint file (.pt), or a bundled model")
        return str(path)

    def estimate_camera(self, *_) -> Optional[dict]:
        """Estimate the camera from the movie and put it into the manual fields (here, not
        in a worker: the Estimate button uses :meth:`start_estimate`)."""
        from ..core.camera import camera_for_movie

        try:
            layer = self.image.value
            camera, report = camera_for_movie(movie_from_layer(layer), file_metadata(layer))
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._estimate_failed(exc)
            return None
        return self._apply_estimate((camera, report))

    def start_estimate(self, *_) -> None:
        """The Estimate button: the estimate in a worker (a few seconds on a large movie,
        which froze the viewer), then the manual fields filled with it."""
        from ..core.camera import camera_for_movie

        if self.task is not None:
            return
        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            metadata = file_metadata(layer)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._estimate_failed(exc)
            return
        # A baseline the user typed in the manual fields (the one number an estimate often
        # cannot pin down, and the one users can read off their camera) is kept, as
        # `localize --baseline B` keeps it, and the rest estimated with it.
        given = {}
        if self.camera.value == MANUAL and abs(float(self.baseline.value) - self._filled_baseline) > 1e-9:
            given["baseline"] = float(self.baseline.value)

        def work():
            return camera_for_movie(movie, metadata, **given)
            yield  # a generator worker, as Task wants

        def finished():
            self.task = None
            self.run_button.enabled = self.estimate_button.enabled = True

        self.task = Task(work, desc="napari-smlm: estimating the camera",
                         on_return=lambda estimate: self._apply_estimate(estimate, baseline_given=bool(given)),
                         on_error=self._estimate_failed, on_finish=finished)
        self.run_button.enabled = self.estimate_button.enabled = False
        self.camera_info.value = "estimating the camera from the movie…"
        self.camera_info.visible = True
        self.task.start()

    def _estimate_failed(self, exc) -> None:
        message = user_message(exc)
        if not message.startswith("camera estimation"):
            message = f"camera estimation: {message}"
        self.camera_info.value = f"failed: {message}"
        notify_error(f"{message}; choose '{MANUAL}' and type the camera's values")

    def _apply_estimate(self, estimate, baseline_given: bool = False) -> dict:
        camera, report = estimate
        self.camera_report = dict(report)
        self.camera.value = MANUAL
        self.baseline.value = float(camera.baseline)
        if not baseline_given:  # a baseline the user gave stays theirs at the next Estimate
            self._filled_baseline = float(camera.baseline)
        self.e_per_adu.value = float(camera.e_per_adu)
        self.em_gain.value = float(camera.em_gain)
        self.qe.value = float(camera.qe)
        from_file = report.get("method") == "file metadata"
        self.camera_info.value = ("from the file: " if from_file else "estimate: ") + describe_camera(camera, report)
        self.camera_info.visible = True
        return self.camera_report

    # ------------------------------------------------------------------ run
    def run(self, *_):
        from ..core.localize import localize

        if self.task is not None:
            return
        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            lm = load_model(self._model())
            camera = self._camera()
            first = int(self.first_frame.value) - 1
            last = int(self.last_frame.value) or movie.shape[0]
            if not 0 <= first < last <= movie.shape[0]:
                raise ValueError(f"frames {first + 1}..{last} are outside the movie's 1..{movie.shape[0]}")
        except Exception as exc:  # bad input: tell the user, keep the viewer
            notify_error(exc)
            return
        if not self._threshold_by_user:
            self._setting = True
            self.threshold.value = float(lm.detection_threshold)
            self._setting = False
        self._cancel.clear()
        self._source = layer
        self._frames = (first, last)
        kwargs = dict(movie=movie, model=lm, camera=camera, pixel_size_nm=self.pixel_size.value,
                      device=self.device.value, frame_range=(first, last), threshold=self.threshold.value,
                      cancel=self._cancel.is_set, metadata=file_metadata(layer))

        def work():
            from ._common import iterate_callback

            return (yield from iterate_callback(localize, "progress", **kwargs))

        self.task = Task(work, desc="napari-smlm: localizing", total=last - first, on_yield=self._on_progress,
                         on_return=self._on_result, on_error=self._on_error, on_finish=self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.summary.value = "localizing…"
        self.task.start()

    def cancel(self, *_):
        """Stop inference after the current batch."""
        self._cancel.set()
        self.summary.value = "cancelling…"

    def _on_progress(self, event):
        done, total = event
        self.progress.value = int(100 * done / max(total, 1))
        if self.task is not None:
            self.task.step(done, total)

    def _on_error(self, exc):
        from ..core.inference import InferenceCancelled

        if isinstance(exc, InferenceCancelled) or isinstance(exc.__cause__, InferenceCancelled):
            self.summary.value = f"{exc}; nothing added"
            notify_info(f"localization {exc}")
            return
        message = user_message(exc)
        if message.startswith("camera estimation"):
            message += f"; or choose '{MANUAL}' (Estimate fills it for you to correct) or '{EMCCD_PRESET}'"
        self.summary.value = f"failed: {message}"
        notify_error(message)

    def _on_finished(self):
        self.task = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def _on_result(self, result):
        self.result = result
        data, features = table_to_points(result.candidates, result.pixel_size_nm)
        src = self._source
        two_d = src is not None and src.ndim == 2
        if two_d:  # a single frame: points everywhere the image is
            data = data[:, 1:]
        scale = tuple(src.scale[-2:]) if src is not None else (1.0, 1.0)
        translate = tuple(src.translate[-2:]) if src is not None else (0.0, 0.0)
        name = f"{src.name} localizations" if src is not None else "localizations"
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        if two_d:
            kw = {"scale": scale, "translate": translate}
        else:
            kw = {"scale": (1.0, *scale), "translate": (0.0, *translate), "axis_labels": ("frame", "y", "x")}
        was_3d, self._three_d = self._three_d, z_varies(features)
        self._setting = True  # choices change: no recolouring of a layer about to be replaced
        self.color_by.reset_choices()
        if self._three_d and not was_3d:  # a first 3D result: its colour shows z (the user may choose again)
            self.color_by.value = "z"
        self._setting = False
        self.layer = self.viewer.add_points(
            data, features=features, name=name, size=1.2, border_width=0, out_of_slice_display=False,
            metadata={"pixel_size_nm": result.pixel_size_nm, "napari_smlm": "localizations"},
            **color_kwargs(features, self.color_by.value), **kw,
        )
        if not two_d and self.viewer.dims.ndim == 3 and self.viewer.dims.axis_labels[0] in ("-3", "0"):
            self.viewer.dims.axis_labels = ("frame", *self.viewer.dims.axis_labels[1:])
        first, last = self._frames
        n = last - first
        frames = f"frame {first + 1}" if n == 1 else f"frames {first + 1}–{last}"
        share = result.network_share
        skipped = f" (network on {share:.0%} of the pixels: the rest empty)" if share is not None else ""
        px, known = result.pixel_size_nm, layer_pixel_size_nm(self._source)
        if known and abs(known - px) < 1e-6 * px:
            pixel = f"pixel {px:g} nm (the movie's)"
        elif known:
            pixel = f"pixel {px:g} nm as set above (the movie says {known:g} nm)"
        else:  # a silent default would scale every position in nm wrongly
            pixel = f"pixel {px:g} nm as set above: the movie does not say its pixel size, and positions in nm scale with it"
        self._run_info = (f"{frames} ({plural(n, 'frame')}) in {result.timings.get('total', 0):.1f} s{skipped} "
                          f"with {Path(result.model_source).name or 'the model'}\n"
                          f"camera: {describe_camera(result.camera, result.camera_report)}\n{pixel}")
        if result.camera_report:
            self.camera_report = dict(result.camera_report)
        self.refilter()

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
        merged = self._update_merged()
        self.summary.value = (f"{plural(int(keep.sum()), 'molecule')} shown (of {len(keep):,} candidates"
                              + (f"; merged into {merged:,}" if merged is not None else "") + ") in " + self._run_info)

    def _update_merged(self) -> Optional[int]:
        """The merged layer of the points shown, when "merge" is ticked (else removed): the
        number of merged localizations, or None."""
        from ..core.analysis.merge import merge_localizations

        if self.merged_layer is not None and self.merged_layer in self.viewer.layers:
            self.viewer.layers.remove(self.merged_layer)
        self.merged_layer = None
        if not self.merge.value:
            return None
        px = float(self.layer.metadata.get("pixel_size_nm", self.pixel_size.value))
        merged = merge_localizations(self._shown_table(self.layer), max_gap=1)
        data, features = table_to_points(merged, px)
        if self.layer.data.shape[1] == 2:
            data = data[:, 1:]
        self.merged_layer = self.viewer.add_points(
            data, features=features, name=f"{self.layer.name} merged", size=1.2, border_width=0,
            out_of_slice_display=False, scale=self.layer.scale, translate=self.layer.translate,
            axis_labels=self.layer.axis_labels, metadata=dict(self.layer.metadata),
            **color_kwargs(features, self.color_by.value),
        )
        return len(merged["x"])

    def _shown_table(self, layer) -> dict:
        """The points ``layer`` shows, as a localization table (nm)."""
        return layer_table(layer, float(layer.metadata.get("pixel_size_nm", self.pixel_size.value)))

    def _color_choices(self, _widget=None) -> list[str]:
        return ["prob", "photons", "z"] if self._three_d else ["prob", "photons"]

    def _recolor(self, value):
        if self._setting or value is None or self.layer is None or self.layer not in self.viewer.layers:
            return
        for layer in (self.layer, self.merged_layer):
            if layer is not None and layer in self.viewer.layers:
                for key, setting in color_kwargs(layer.features, value).items():
                    setattr(layer, key, setting)

    # ------------------------------------------------------------------ export
    def export(self, path=None) -> Optional[str]:
        """Write the points shown (where they now are) as our CSV or Picasso HDF5."""
        from ..core.io import write_table

        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            notify_error("export: localize a movie first")
            return None
        if self.merge.value and self.merged_layer is not None and self.merged_layer in self.viewer.layers:
            layer = self.merged_layer
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self.native, "Export localizations",
                                                  f"{layer.name.replace(' ', '_')}.csv", EXPORT_FILTER)
            if not path:
                return None
        path = Path(path)
        if path.suffix.lower() not in (".csv", ".h5", ".hdf5"):
            path = path.with_suffix(".csv")
        try:
            shown = np.asarray(layer.shown, bool)
            px = float(layer.metadata.get("pixel_size_nm", self.pixel_size.value))
            write_table(self._shown_table(layer), path, pixel_size_nm=px)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(f"export {path}: {user_message(exc)}")
            return None
        notify_info(f"wrote {plural(int(shown.sum()), 'localization')} to {path}")
        return str(path)

    # ------------------------------------------------------------------ multi-scale
    def show_scale_maps(self, *_):
        """Probability maps of every scale of a multi-scale model for the frame shown."""
        import torch

        from ..core.training.trainer import scale_input

        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            lm = load_model(self._model())
            if not hasattr(lm.model, "scales"):
                raise ValueError(f"{lm.model.architecture} predicts one scale; per-scale maps need a multi-scale "
                                 "model (multiscale_var)")
            t = int(self.viewer.dims.current_step[0]) if movie.shape[0] > 1 else 0
            c = lm.frame_window // 2
            idx = np.clip(np.arange(t - c, t + c + 1), 0, movie.shape[0] - 1)
            frames = torch.from_numpy(np.asarray(movie[idx], np.float32))[None]
            camera = self._camera()
            if camera == "estimate":
                from ..core.camera import camera_for_movie

                camera, _ = camera_for_movie(movie, file_metadata(layer))
            if camera is not None:
                frames = camera.to_photons(frames)
            with torch.no_grad():
                maps = lm.model.eval().forward_scales(scale_input(frames, lm.scaling))["scales"]
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc)
            return []
        layers = []
        sy, sx = layer.scale[-2:]
        ty, tx = layer.translate[-2:]
        for s, m in maps.items():
            p = torch.sigmoid(m[0, 0]).numpy()
            # fine cell (i, j) covers camera pixels [i/s, (i+1)/s): centre at index (i + 0.5)/s - 0.5
            layers.append(self.viewer.add_image(
                p, name=f"p at {s}x (frame {t + 1})", colormap="magma", blending="additive",
                scale=(sy / s, sx / s), translate=(ty + (0.5 / s - 0.5) * sy, tx + (0.5 / s - 0.5) * sx),
                contrast_limits=(0, 1), visible=s == max(maps), metadata={"napari_smlm": "scale map"}))
        return layers

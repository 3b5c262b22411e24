"""Train dock widget: simulate data like the movie, train with live curves, stop, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox

from ._common import connect_layer_updates, iterate_callback, layer_choices, movie_from_layer, notify_error, notify_info

PRESETS = {"quick (smoke, CPU minutes)": "smoke", "default 2D (bundled model's)": "default_2d", "DECODE reference (GPU)": "decode_reference"}
# Architectures whose loss differs from the presets' train from their own config.
ARCHITECTURES = {"sigma_munet": None, "double_munet": None, "simple_smlm_net": None,
                 "multiscale_var": "multiscale_var", "fusion_unet": "fusion_unet"}


class TrainWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__(labels=True)
        self.viewer = viewer
        self.preset = ComboBox(label="preset", choices=list(PRESETS), value=list(PRESETS)[0])
        self.image = ComboBox(label="movie (for fill)", choices=layer_choices(viewer, "Image"), nullable=True)
        self.fill_button = PushButton(text="Fill from movie")
        self.pixel_size = FloatSpinBox(label="pixel size [nm]", value=100.0, min=1, max=10000)
        self.sigma_min = FloatSpinBox(label="PSF σ min [nm]", value=120.0, min=10, max=2000)
        self.sigma_max = FloatSpinBox(label="PSF σ max [nm]", value=140.0, min=10, max=2000)
        self.photons_min = FloatSpinBox(label="photons min", value=1000.0, min=1, max=1e6, step=100)
        self.photons_max = FloatSpinBox(label="photons max", value=5000.0, min=1, max=1e6, step=100)
        self.bg_min = FloatSpinBox(label="background min", value=40.0, min=0, max=1e5)
        self.bg_max = FloatSpinBox(label="background max", value=60.0, min=0, max=1e5)
        self.density_max = FloatSpinBox(label="density max [/µm²]", value=1.0, min=0.01, max=20, step=0.1)
        self.camera_from_movie = CheckBox(label="camera from movie", value=False)
        self.architecture = ComboBox(label="architecture", choices=["(preset)", *ARCHITECTURES], value="(preset)")
        self.epochs = SpinBox(label="epochs", value=8, min=1, max=100000)
        self.steps = SpinBox(label="steps per epoch", value=60, min=1, max=100000)
        self.batch_size = SpinBox(label="batch size", value=16, min=1, max=4096)
        self.lr = FloatSpinBox(label="learning rate", value=1e-3, min=1e-7, max=1.0, step=1e-4)
        self.output = FileEdit(label="output folder", mode="d", value=str(Path("runs") / "napari"))
        self.resume = FileEdit(label="resume from (optional)", filter="*.pt")
        self.from_bundled = CheckBox(label="start from the bundled model", value=False,
                                     tooltip="fine-tune the bundled model's weights (preset 'default 2D' architecture)")
        self.start_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(value="")
        self.extend([self.preset, self.image, self.fill_button, self.pixel_size, self.sigma_min, self.sigma_max,
                     self.photons_min, self.photons_max, self.bg_min, self.bg_max, self.density_max, self.camera_from_movie,
                     self.architecture, self.epochs, self.steps, self.batch_size, self.lr, self.output, self.resume, self.from_bundled,
                     self.start_button, self.stop_button, self.status])
        self.fill_button.changed.connect(self.fill_from_movie)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        connect_layer_updates(viewer, self)
        self.reset_choices()
        self.worker = None
        self.trainer = None
        self._stop_requested = False
        self.camera = None
        self.losses: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.best_checkpoint = None
        self._add_plot()
        # Closing the widget (or napari) ends a running training after its batch.
        self.native.destroyed.connect(self._on_destroyed)

    def _add_plot(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.5, 3.0), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.ax_loss = self.figure.add_subplot(211)
        self.ax_val = self.figure.add_subplot(212)
        self.native.layout().addWidget(self.canvas)

    # ------------------------------------------------------------------ fill
    def fill_from_movie(self, *_):
        """PSF width, photons, background and camera from the chosen movie."""
        import torch

        from ..core.camera import Camera, estimate_camera
        from ..core.config import CameraConfig, from_dict
        from ..core.estimate import estimate_movie_parameters

        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            known = layer.metadata.get("camera") if hasattr(layer, "metadata") else None
            if known:  # e.g. the simulated sample carries its camera
                camera, how = Camera.from_config(from_dict(CameraConfig, dict(known), "camera")), "from the layer's metadata"
            else:
                try:
                    camera, report = estimate_camera(movie, baseline=None)
                    how = f"estimated: baseline {report['baseline']:.1f} ADU, {report['adu_per_e']:.3g} ADU/e-"
                except ValueError as exc:
                    camera, how = Camera.from_config(self.config().simulation.camera), f"the preset's ({exc})"
            sample = np.asarray(movie[: min(len(movie), 50)], np.float32)
            photons = camera.to_photons(torch.from_numpy(sample)).numpy()
            est = estimate_movie_parameters(photons, self.pixel_size.value)
        except Exception as exc:
            notify_error(f"fill from movie: {exc}")
            return None
        self.camera = camera
        self.camera_from_movie.value = True
        self.bg_min.value, self.bg_max.value = (max(0.0, est["background"][0] * 0.8), est["background"][1] * 1.2 + 1)
        if "photons" in est:
            self.photons_min.value, self.photons_max.value = est["photons"][0] * 0.5, est["photons"][1] * 2
            self.sigma_min.value, self.sigma_max.value = est["sigma_nm"][0] * 0.9, est["sigma_nm"][1] * 1.1
        notify_info(f"from the movie: {est['spots']} spots; camera {how}")
        return est

    # ------------------------------------------------------------------ config
    def config(self):
        from ..cli import CONFIG_DIR
        from ..core.config import load_config

        o = [
            f"simulation.pixel_size_nm={self.pixel_size.value}",
            f"simulation.psf.sigma_nm=[{self.sigma_min.value},{self.sigma_max.value}]",
            f"simulation.emitters.photons=[{self.photons_min.value},{self.photons_max.value}]",
            f"simulation.emitters.background=[{self.bg_min.value},{self.bg_max.value}]",
            f"simulation.emitters.density_per_um2=[0.0,{self.density_max.value}]",
            f"training.epochs={self.epochs.value}", f"training.steps_per_epoch={self.steps.value}",
            f"training.batch_size={self.batch_size.value}", f"optimizer.lr={self.lr.value}",
            f"output.run_dir={self.output.value}",
        ]
        config = PRESETS[self.preset.value]
        arch = self.architecture.value
        if arch != "(preset)":
            if ARCHITECTURES[arch]:
                config = ARCHITECTURES[arch]
            else:
                o.append(f"model.architecture={arch}")
                if arch != "sigma_munet":  # no σ outputs: the per-pixel loss
                    o.append("loss.terms=[{name: ppxyzb, kwargs: {pos_weight: 2.0}}]")
                if arch == "simple_smlm_net":
                    o.append("model.kwargs={depth: 2, initial_features: 32}")
        if self.camera_from_movie.value and self.camera is not None:
            c = self.camera.to_dict()
            o.append("simulation.camera={" + ", ".join(f"{k}: {v}" for k, v in c.items()) + "}")
        if self.from_bundled.value:
            o.append("training.init_weights=default")
        return load_config(CONFIG_DIR / f"{config}.yaml", o)

    # ------------------------------------------------------------------ run
    def start(self, *_):
        from napari.qt.threading import create_worker

        from ..core.training import Trainer

        if self.worker is not None:
            return
        try:
            cfg = self.config()
            resume = self.resume.value
            resume = str(resume) if resume is not None and Path(str(resume)).is_file() else None
        except Exception as exc:
            notify_error(exc)
            return
        self._stop_requested = False
        self.losses, self.val = [], []
        widget = self

        def build_and_fit(progress):
            trainer = Trainer(cfg, resume=resume, progress=progress)
            widget.trainer = trainer
            if widget._stop_requested:
                trainer.request_stop()
            try:
                trainer.fit()
            finally:
                trainer.close()
            return trainer.run_dir

        def work():
            return (yield from iterate_callback(build_and_fit, "progress"))

        self.worker = create_worker(work)
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(lambda e: notify_error(f"training stopped: {e}"))
        self.worker.finished.connect(self._on_finished)
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.status.value = "building the model and the validation set..."
        self.worker.start()

    def stop(self, *_):
        """End the run after the current batch; checkpoints stay intact."""
        self._stop_requested = True
        trainer = self.__dict__.get("trainer")
        if trainer is not None:
            trainer.request_stop("stopped from napari")

    def _on_destroyed(self, *_):
        # May run during interpreter shutdown, when the instance is half torn down.
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - nothing left to stop
            pass

    def _on_event(self, event):
        kind = event.get("event")
        if kind == "start":
            self.status.value = f"training {event['architecture']} on {event['device']}"
        elif kind == "batch":
            self.losses.append((event["step"], event["loss"]))
            if event["batch"] % 5 == 0 or event["batch"] + 1 == event["steps_per_epoch"]:
                self._draw()
        elif kind == "validation":
            m = event["metrics"]
            self.val.append((event["epoch"] + 1, m["jaccard"]))
            if event.get("improved") and self.trainer is not None:
                self.best_checkpoint = str(self.trainer.run_dir / "best.pt")
            self.status.value = (f"epoch {event['epoch'] + 1}: Jaccard {m['jaccard']:.3f}, RMSE {m['rmse_lat']:.1f} nm"
                                 + (f"\nbest: {self.best_checkpoint}" if self.best_checkpoint else ""))
            self._draw()
        elif kind == "end":
            self.status.value += f"\n{event['reason']}"

    def _draw(self):
        self.ax_loss.clear()
        if self.losses:
            s, v = zip(*self.losses)
            self.ax_loss.plot(s, v, lw=0.8)
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_val.clear()
        if self.val:
            e, j = zip(*self.val)
            self.ax_val.plot(e, j, "o-", color="tab:green")
        self.ax_val.set_ylabel("val. Jaccard", fontsize=8)
        self.ax_val.set_xlabel("epoch", fontsize=8)
        self.canvas.draw_idle()

    def _on_done(self, run_dir):
        notify_info(f"training finished; checkpoints in {run_dir}")

    def _on_finished(self):
        self.worker = None
        self.trainer = None
        self.start_button.enabled = True
        self.stop_button.enabled = False

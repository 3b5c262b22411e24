"""Train dock widget: simulate data like the movie (2D, or 3D from a PSF calibration), train
with live curves, stop, resume, within a time box."""

import time
from pathlib import Path
from typing import Optional

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton,
                              SpinBox)
from napari.viewer import Viewer

from ..core.utils import duration
from ._common import (DockForm, MovieFields, Task, add_plot, connect_layer_updates, describe_camera, existing_file,
                      file_metadata, file_value, iterate_callback, layer_choices, movie_from_layer, notify_error,
                      notify_info, style_figure, user_message, wrap_label)

PRESETS = {"quick (CPU minutes)": "smoke", "default 2D": "default_2d", "fast 2D": "fast_2d",
           "DECODE (GPU)": "decode_reference", "astigmatic 3D": "astig_3d"}
PRESET_3D = "astigmatic 3D"
PRESET_TIP = ("Choosing a preset fills the fields below with its values.\n"
              "quick (CPU minutes): the smoke config, a small model for trying things\n"
              "default 2D: the bundled model's config\n"
              "fast 2D: the bundled fast model's config (a network several times quicker to run and to train)\n"
              "DECODE (GPU): DECODE's reference settings, for a GPU\n"
              "astigmatic 3D: z from the PSF's shape, fine-tuned from the bundled model; with a PSF calibration "
              "its spline PSF, else a typical cylindrical lens")
PSF_TIP = ("a 3D PSF calibration (.h5 from Calibrate or napari-smlm calibrate, or a SMAP *_3dcal.mat): training "
           "simulates its spline PSF, its pixel size and z over its calibrated range; empty: 2D, a Gaussian PSF "
           "of σ min..max")
# Architectures whose loss differs from the presets' train from their own config.
ARCHITECTURES = {"sigma_munet": None, "double_munet": None, "simple_smlm_net": None, "fast_net": "fast_2d",
                 "multiscale_munet": None, "multiscale_var": "multiscale_var", "fusion_unet": "fusion_unet"}
# Multi-scale models have not yet beaten sigma_munet at any density with the same training
# budget (docs/benchmarks/architectures/multiscale.md): offered, and said to be experimental.
EXPERIMENTAL = {"multiscale_munet", "multiscale_var"}
ARCHITECTURE_TIP = ("the network; '(preset)' keeps the preset's. Marked experimental: multi-scale models that "
                    "have not yet beaten sigma_munet with the same training (docs/benchmarks/architectures)")


class TrainWidget(MovieFields, DockForm, Container):
    """Train a network on simulated data like the user's movie, with live curves."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.preset = ComboBox(label="preset", choices=list(PRESETS), value=list(PRESETS)[0], tooltip=PRESET_TIP)
        self.image = ComboBox(label="movie", choices=layer_choices(viewer, "Image"), nullable=True,
                              tooltip="the movie that Fill from movie measures")
        self.fill_button = PushButton(text="Fill from movie", tooltip="camera, background, photons and PSF width "
                                                                      "from the movie")
        self.pixel_size = FloatSpinBox(label="pixel [nm]", value=100.0, min=1, max=10000)
        self.sigma_min = FloatSpinBox(label="PSF σ min [nm]", value=120.0, min=10, max=2000)
        self.sigma_max = FloatSpinBox(label="PSF σ max [nm]", value=140.0, min=10, max=2000)
        self.photons_min = FloatSpinBox(label="photons min", value=1000.0, min=1, max=1e6, step=100)
        self.photons_max = FloatSpinBox(label="photons max", value=5000.0, min=1, max=1e6, step=100)
        self.bg_min = FloatSpinBox(label="background min", value=40.0, min=0, max=1e5)
        self.bg_max = FloatSpinBox(label="background max", value=60.0, min=0, max=1e5)
        self.density_max = FloatSpinBox(label="density max", value=1.0, min=0.01, max=20, step=0.1,
                                        tooltip="molecules per µm²")
        self.camera_from_movie = CheckBox(label="camera from movie", value=False,
                                          tooltip="simulate the camera that Fill from movie found (else the preset's)")
        self.camera_info = wrap_label(Label(value="", visible=False))
        self.architecture = ComboBox(label="architecture", value="(preset)", tooltip=ARCHITECTURE_TIP,
                                     choices=[("(preset)", "(preset)")] + [(f"{a} (experimental)" if a in EXPERIMENTAL else a, a)
                                                                           for a in ARCHITECTURES])
        self.epochs = SpinBox(label="epochs", value=8, min=1, max=100000)
        self.steps = SpinBox(label="steps/epoch", value=60, min=1, max=100000, tooltip="batches per epoch")
        self.batch_size = SpinBox(label="batch size", value=16, min=1, max=4096)
        self.lr = FloatSpinBox(label="learning rate", value=1e-3, min=1e-7, max=1.0, step=1e-4)
        self.lr.native.setDecimals(6)  # the presets' 6e-4 survives
        self.max_minutes = FloatSpinBox(label="max minutes", value=0.0, min=0, max=1e6, step=5,
                                        tooltip="time box: after this many minutes the epoch in progress is cut "
                                                "short, validated and checkpointed, and training ends; 0: no limit")
        self.max_minutes.native.setSpecialValueText("no limit")
        self.psf_file = FileEdit(label="PSF calibration", filter="*.h5 *.hdf5 *.mat", tooltip=PSF_TIP)
        self.psf_info = wrap_label(Label(value="", visible=False))
        self.output = FileEdit(label="output", mode="d", value=str(Path("runs") / "napari"),
                               tooltip="folder for last.pt, best.pt and the metrics")
        self.resume = FileEdit(label="resume from", filter="*.pt", tooltip="optional: a last.pt to continue")
        self.from_bundled = CheckBox(label="start from bundled", value=False,
                                     tooltip="fine-tune the bundled model's weights (the architecture of 'default 2D' "
                                             "and 'astigmatic 3D')")
        self.start_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False, tooltip="end after the current batch; "
                                                                         "checkpoints stay intact")
        buttons = Container(layout="horizontal", labels=False, widgets=[self.start_button, self.stop_button])
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=100)
        self.status = wrap_label(Label(value=""))
        self.extend([self.preset, self.psf_file, self.image, self.fill_button, self.pixel_size, self.sigma_min,
                     self.sigma_max, self.photons_min, self.photons_max, self.bg_min, self.bg_max, self.density_max,
                     self.camera_from_movie, self.architecture, self.epochs, self.steps, self.batch_size, self.lr,
                     self.max_minutes, self.output, self.resume, self.from_bundled, buttons, self.progress])
        self._full_width(self.psf_info, after=self.psf_file)
        self._full_width(self.camera_info, after=self.camera_from_movie)
        self._full_width(self.status)
        self.fill_button.changed.connect(self.fill_from_movie)
        self.preset.changed.connect(self._preset_changed)
        self.psf_file.changed.connect(lambda *_: self._psf_changed())
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.image.changed.connect(self._image_changed)
        connect_layer_updates(viewer, self, self._pick_default)
        self.reset_choices()
        self._pick_default()
        self.task: Optional[Task] = None
        self.trainer = None
        self._stop_requested = False
        self.camera = None
        self.losses: list[tuple[int, float]] = []
        self.val: list[tuple[int, float, float]] = []  # epoch, Jaccard at the threshold, at its best one
        self.best_checkpoint = None
        self._t0 = 0.0
        self._steps_total = 0
        self._first_step = 0
        self._epochs = self._steps = 1
        self._head = self._val_text = ""
        self._psf_text = ""
        self._add_plot()
        self._fit_dock()
        # Closing the widget (or napari) ends a running training after its batch.
        self.native.destroyed.connect(self._on_destroyed)

    def _add_plot(self):
        self.figure, self.canvas = add_plot(self, self.viewer, figsize=(3.2, 2.8), min_height=200)
        self.ax_loss = self.figure.add_subplot(211)
        self.ax_val = self.figure.add_subplot(212)
        self._draw()

    # ------------------------------------------------------------------ preset, PSF
    def _preset_changed(self, value):
        """Fill the fields with the preset's values (what it simulates and how long it trains)."""
        from ..cli import CONFIG_DIR
        from ..core.config import load_config

        try:
            cfg = load_config(CONFIG_DIR / f"{PRESETS[value]}.yaml")
        except Exception as exc:  # noqa: BLE001 - a broken preset file: say so, keep the fields
            notify_error(f"preset {value}: {user_message(exc)}")
            return
        sim, e, tr = cfg.simulation, cfg.simulation.emitters, cfg.training
        self.sigma_min.value, self.sigma_max.value = sim.psf.sigma_nm
        self.photons_min.value, self.photons_max.value = e.photons
        self.bg_min.value, self.bg_max.value = e.background
        self.density_max.value = e.density_per_um2[1]
        self.epochs.value, self.steps.value, self.batch_size.value = tr.epochs, tr.steps_per_epoch, tr.batch_size
        self.lr.value = cfg.optimizer.lr
        self.max_minutes.value = tr.max_minutes or 0.0
        self.from_bundled.value = tr.init_weights in ("default", "fast")
        self._show_sigma()

    def _show_sigma(self):
        """PSF σ min/max only where the PSF is the 2D Gaussian they describe."""
        gaussian = PRESETS[self.preset.value] != "astig_3d" and file_value(self.psf_file) is None
        self.sigma_min.visible = self.sigma_max.visible = gaussian

    def _psf_changed(self):
        """A calibration chosen: say what it holds, and make the 3D preset the default."""
        from ..core.calibration import load_calibration

        path = file_value(self.psf_file)
        self.psf_info.visible = path is not None
        if path is None:
            self.psf_info.value = ""
            self._show_sigma()
            return
        try:
            cal = load_calibration(path)
        except Exception as exc:  # noqa: BLE001 - shown in place; Train reports it again
            self.psf_info.value = f"not usable: {user_message(exc)}"
            return
        if self.preset.value != PRESET_3D:
            self.preset.value = PRESET_3D
        self.pixel_size.value = cal.pixel_size_nm  # the spline's grid is the calibration's camera pixel
        self.psf_info.value = f"PSF: spline from {path} ({cal.summary()})"
        self._show_sigma()

    # ------------------------------------------------------------------ fill
    def fill_from_movie(self, *_):
        """PSF width, photons, background and camera from the chosen movie."""
        import torch

        from ..core.camera import Camera, camera_for_movie
        from ..core.config import camera_config
        from ..core.estimate import estimate_movie_parameters

        try:
            layer = self.image.value
            movie = movie_from_layer(layer)
            known = layer.metadata.get("camera") if hasattr(layer, "metadata") else None
            from_movie = True
            if known:  # e.g. the simulated sample carries its camera
                camera = Camera.from_config(camera_config(dict(known), "the layer's camera", required=False))
                how = "camera from the layer's metadata: " + describe_camera(camera)
            else:
                try:
                    camera, report = camera_for_movie(movie, file_metadata(layer))
                    how = "camera " + describe_camera(camera, report)
                except ValueError as exc:
                    from_movie = False
                    camera = Camera.from_config(self.config().simulation.camera)
                    how = (f"camera NOT estimated ({user_message(exc)}); the preset's camera is used: "
                           + describe_camera(camera))
            sample = np.asarray(movie[: min(len(movie), 50)], np.float32)
            photons = camera.to_photons(torch.from_numpy(sample)).numpy()
            est = estimate_movie_parameters(photons, self.pixel_size.value)
        except Exception as exc:
            notify_error(f"fill from movie: {exc}")
            return None
        self.camera = camera if from_movie else None
        self.camera_from_movie.value = from_movie
        self.camera_info.value = how
        self.camera_info.visible = True
        self.bg_min.value, self.bg_max.value = (max(0.0, est["background"][0] * 0.8), est["background"][1] * 1.2 + 1)
        if "photons" in est:
            self.photons_min.value, self.photons_max.value = est["photons"][0] * 0.5, est["photons"][1] * 2
            self.sigma_min.value, self.sigma_max.value = est["sigma_nm"][0] * 0.9, est["sigma_nm"][1] * 1.1
        notify_info(f"from the movie: {est['spots']} spots; {how}")
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
            f"training.max_minutes={self.max_minutes.value or 'null'}", f"output.run_dir={self.output.value}",
        ]
        config = PRESETS[self.preset.value]
        arch = self.architecture.value
        if arch != "(preset)":
            if ARCHITECTURES[arch]:
                config = ARCHITECTURES[arch]
            else:
                o.append(f"model.architecture={arch}")
                if arch not in ("sigma_munet", "multiscale_munet"):  # no σ outputs: the per-pixel loss
                    o.append("loss.terms=[{name: ppxyzb, kwargs: {pos_weight: 2.0}}]")
                if arch == "simple_smlm_net":
                    o.append("model.kwargs={depth: 2, initial_features: 32}")
        if self.camera_from_movie.value and self.camera is not None:
            c = self.camera.to_dict()
            o.append("simulation.camera={" + ", ".join(f"{k}: {v}" for k, v in c.items()) + "}")
        bundled = "fast" if config == "fast_2d" else "default"  # the bundled weights of the same network
        o.append(f"training.init_weights={bundled if self.from_bundled.value else 'null'}")
        cfg = load_config(CONFIG_DIR / f"{config}.yaml", o)
        psf = existing_file(self.psf_file, "PSF calibration", "calibration file")
        self._psf_text = ""
        if psf is not None:
            from ..core.calibration import use_calibration

            self._psf_text = use_calibration(cfg, psf)
        return cfg

    # ------------------------------------------------------------------ run
    def start(self, *_):
        """Build the trainer and fit in a worker; curves and progress follow its events."""
        from ..core.training import Trainer
        from ..core.training.trainer import existing_run
        from . import _common

        if self.task is not None:
            return
        try:
            cfg = self.config()
            resume = existing_file(self.resume, "resume from", "checkpoint file")
            resume = str(resume) if resume is not None else None
            run_dir = Path(cfg.output.run_dir)
            held = existing_run(run_dir) if resume is None else None
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error(exc)
            return
        overwrite = False
        if held is not None:  # never replaced without a word: the user is asked
            if not _common.ask(self.native, f"The output folder {run_dir} already holds a training run ({held}).\n\n"
                                            f"Replace it with a new run? (No: choose another output folder, or "
                                            f"continue that run with resume from {run_dir / 'last.pt'}.)"):
                self.status.value = (f"not started: {run_dir} holds a run; choose another output folder, or resume "
                                     f"from its last.pt")
                return
            overwrite = True
        self._stop_requested = False
        self._end_reason = ""
        self.losses, self.val = [], []
        self.best_checkpoint = None
        self._steps_total = cfg.training.epochs * cfg.training.steps_per_epoch
        widget = self

        def build_and_fit(progress):
            trainer = Trainer(cfg, resume=resume, progress=progress, overwrite=overwrite)
            widget.trainer = trainer
            if widget._stop_requested:
                trainer.request_stop("stopped from napari")
            try:
                trainer.fit()
            finally:
                trainer.close()
            return {"run_dir": str(trainer.run_dir), "epoch": trainer.epoch, "epochs": cfg.training.epochs,
                    "stopped": bool(widget._stop_requested)}

        def work():
            return (yield from iterate_callback(build_and_fit, "progress"))

        self.task = Task(work, desc="napari-smlm: training", total=self._steps_total, on_yield=self._on_event,
                         on_return=self._on_done, on_error=self._on_error, on_finish=self._on_finished)
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.progress.value = 0
        self._draw()
        self.status.value = "\n".join(x for x in (self._psf_text, "building the model and the validation set…") if x)
        self.task.start()

    def stop(self, *_):
        """End the run after the current batch; checkpoints stay intact."""
        self._stop_requested = True
        trainer = self.__dict__.get("trainer")
        if trainer is not None:
            trainer.request_stop("stopped from napari")
        if self.task is not None:
            self.status.value = "stopping after this batch…"

    def _on_destroyed(self, *_):
        # May run during interpreter shutdown, when the instance is half torn down.
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - nothing left to stop
            pass

    def _progress_text(self, epoch: int, epochs: int, batch: int, steps: int, step: int) -> str:
        done = step - self._first_step
        left = self._steps_total - step
        elapsed = time.perf_counter() - self._t0
        eta = f", {duration(elapsed / done * left)} left" if done > 0 and left > 0 else ""
        return f"epoch {epoch + 1} of {epochs}, step {batch + 1} of {steps}{eta}"

    def _on_event(self, event):
        kind = event.get("event")
        if kind == "start":
            self._epochs, self._steps = event["epochs"], event["steps_per_epoch"]
            self._steps_total = self._epochs * self._steps
            self._first_step = event["epoch"] * self._steps
            self._t0 = time.perf_counter()
            self._head = "\n".join(x for x in (f"training {event['architecture']} on {event['device']}",
                                                self._psf_text) if x)
            self.status.value = f"{self._head}\nepoch {event['epoch'] + 1} of {self._epochs}"
            if self.task is not None:
                self.task.step(self._first_step, self._steps_total)
        elif kind == "batch":
            self.losses.append((event["step"], event["loss"]))
            step = event["epoch"] * self._steps + event["batch"] + 1
            self.progress.max = max(self._steps_total, 1)
            self.progress.value = min(step, self.progress.max)
            if self.task is not None:
                self.task.step(step, self._steps_total)
            lines = [self._head, self._progress_text(event["epoch"], self._epochs, event["batch"], self._steps, step)]
            if self.val:
                lines.append(self._val_text)
            self.status.value = "\n".join(lines)
            if event["batch"] % 5 == 0 or event["batch"] + 1 == event["steps_per_epoch"]:
                self._draw()
        elif kind == "validation":
            m = event["metrics"]
            self.val.append((event["epoch"] + 1, m["jaccard"], m["jaccard_tuned"]))
            if event.get("improved") and self.trainer is not None:
                self.best_checkpoint = str(self.trainer.run_dir / "best.pt")
            axial = f", axial {m['rmse_ax']:.1f} nm" if "efficiency_3d" in m else ""
            self._val_text = (f"epoch {event['epoch'] + 1}: validation Jaccard {m['jaccard']:.3f} "
                              f"({m['jaccard_tuned']:.3f} at its best threshold {m['threshold_tuned']:g}), "
                              f"RMSE {m['rmse_lat']:.1f} nm{axial}")
            self._draw()
        elif kind == "end":
            self._end_reason = event["reason"]

    def _draw(self):
        self.ax_loss.clear()
        if self.losses:
            s, v = zip(*self.losses)
            self.ax_loss.plot(s, v, lw=0.8, color="tab:orange")
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_loss.set_xlabel("step", fontsize=8)
        self.ax_val.clear()
        if self.val:
            e, j, tuned = zip(*self.val)
            self.ax_val.plot(e, j, "o-", color="tab:green", label="at the threshold")
            self.ax_val.plot(e, tuned, ".--", color="tab:olive", label="at its best threshold")
            self.ax_val.legend(fontsize=7, loc="lower right")
        self.ax_val.set_ylim(0, 1)
        self.ax_val.set_ylabel("val. Jaccard", fontsize=8)
        self.ax_val.set_xlabel("epoch", fontsize=8)
        style_figure(self.figure, self.viewer)
        self.canvas.draw_idle()

    def _on_done(self, info):
        best = f"; best: {self.best_checkpoint}" if self.best_checkpoint else ""
        reason = getattr(self, "_end_reason", "")
        if info["stopped"]:
            text = f"training stopped after epoch {info['epoch']} of {info['epochs']}; checkpoints in {info['run_dir']}"
        elif reason.startswith("time box"):
            text = (f"training ended ({reason}) after epoch {info['epoch']} of {info['epochs']}; checkpoints in "
                    f"{info['run_dir']}; resume from its last.pt to continue")
        else:
            text = f"training finished ({info['epochs']} epochs); checkpoints in {info['run_dir']}"
        self.status.value = "\n".join(x for x in (text + best, getattr(self, "_val_text", ""), self._psf_text) if x)
        notify_info(text)

    def _on_error(self, exc):
        self.status.value = f"training failed: {user_message(exc)}"
        notify_error(f"training failed: {user_message(exc)}")

    def _on_finished(self):
        self.task = None
        self.trainer = None
        self.start_button.enabled = True
        self.stop_button.enabled = False

"""Simulate dock widget: a movie with known molecules, for trying models."""

from typing import Generator, Optional

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox
from napari.viewer import Viewer

from ._common import DockForm, Task, notify_error, notify_info, plural, user_message, wrap_label


def simulate_steps(n_frames: int, seed: int, overrides: list[str], chunk_frames: int = 16) -> Generator:
    """Yield (frames done, total) while simulating; return the layer data tuples of
    the movie and its ground truth (as :func:`napari_smlm._sample_data.simulated_layers`)."""
    from .._layers import table_to_points
    from ..core.config import load_config
    from ..core.simulation import Simulator

    cfg = load_config(None, list(overrides))
    sim = Simulator(cfg.simulation, "cpu", seed)
    chunks, table, _ = sim.simulate_movie(n_frames, chunk_frames=chunk_frames)
    h, w = cfg.simulation.frame_size
    movie = np.empty((n_frames, h, w), np.uint16)
    done = 0
    yield done, n_frames
    for chunk in chunks:
        movie[done:done + len(chunk)] = chunk.numpy()
        done += len(chunk)
        yield done, n_frames
    px = cfg.simulation.pixel_size_nm
    gt = {"frame": table.frame.numpy(), "x": table.x_px.numpy() * px, "y": table.y_px.numpy() * px,
          "z": table.z_nm.numpy(), "photons": table.photons.numpy(), "prob": np.ones(len(table))}
    points, features = table_to_points(gt, px)
    labels = ("frame", "y", "x")
    return [
        (movie, {"name": "simulated movie", "colormap": "gray", "axis_labels": labels,
                 "metadata": {"pixel_size_nm": px, "camera": sim.camera.to_dict()}}, "image"),
        (points, {"name": "ground truth", "features": features, "face_color": "transparent", "border_color": "lime",
                  "size": 2.5, "symbol": "ring", "border_width": 0.1, "out_of_slice_display": False,
                  "axis_labels": labels, "metadata": {"pixel_size_nm": px, "napari_smlm": "ground truth"}}, "points"),
    ]


class SimulateWidget(DockForm, Container):
    """Simulate a blinking-emitter movie (our EMCCD camera) with its ground truth."""

    def __init__(self, viewer: Viewer):
        super().__init__(labels=True, scrollable=True)
        self.viewer = viewer
        self.frames = SpinBox(label="frames", value=200, min=1, max=100000)
        self.size = SpinBox(label="size [px]", value=64, min=8, max=2048, tooltip="frame width and height")
        self.pixel_size = FloatSpinBox(label="pixel [nm]", value=100.0, min=1, max=10000)
        self.density = FloatSpinBox(label="density [/µm²]", value=0.5, min=0, max=20, step=0.1)
        self.photons_min = FloatSpinBox(label="photons min", value=1000.0, min=1, max=1e6, step=100)
        self.photons_max = FloatSpinBox(label="photons max", value=5000.0, min=1, max=1e6, step=100)
        self.background = FloatSpinBox(label="background", value=50.0, min=0, max=1e5, tooltip="photons per pixel")
        self.sigma = FloatSpinBox(label="PSF σ [nm]", value=130.0, min=10, max=2000)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.button = PushButton(text="Simulate")
        self.stop_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(layout="horizontal", labels=False, widgets=[self.button, self.stop_button])
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=100)
        self.status = wrap_label(Label(value=""))
        self.extend([self.frames, self.size, self.pixel_size, self.density, self.photons_min, self.photons_max,
                     self.background, self.sigma, self.seed, buttons, self.progress])
        self._full_width(self.status)
        self.button.changed.connect(self.run)
        self.stop_button.changed.connect(self.cancel)
        self.task: Optional[Task] = None
        self.layers: list = []
        self._cancelled = False
        self._fit_dock()

    def overrides(self) -> list[str]:
        return [
            f"simulation.frame_size=[{self.size.value},{self.size.value}]",
            f"simulation.pixel_size_nm={self.pixel_size.value}",
            f"simulation.emitters.density_per_um2=[{self.density.value},{self.density.value}]",
            f"simulation.emitters.photons=[{self.photons_min.value},{self.photons_max.value}]",
            f"simulation.emitters.background=[{self.background.value},{self.background.value}]",
            f"simulation.psf.sigma_nm=[{self.sigma.value},{self.sigma.value}]",
        ]

    def run(self, *_):
        """Simulate in a worker; the movie and ground-truth layers are added when done."""
        if self.task is not None:
            return
        if self.photons_min.value > self.photons_max.value:
            notify_error("photons min is larger than photons max")
            return
        n, seed, overrides = int(self.frames.value), int(self.seed.value), self.overrides()
        self._cancelled = False

        def work():
            return (yield from simulate_steps(n, seed, overrides))

        self.task = Task(work, desc="napari-smlm: simulating", total=n, on_yield=self._on_progress,
                         on_return=self._on_done, on_error=self._on_error, on_finish=self._on_finished)
        self.button.enabled = False
        self.stop_button.enabled = True
        self.progress.value = 0
        self.status.value = f"simulating {plural(n, 'frame')}…"
        self.task.start()

    def cancel(self, *_):
        """Stop after the current chunk of frames; nothing is added."""
        if self.task is not None:
            self._cancelled = True
            self.task.worker.quit()

    def _on_progress(self, event):
        done, total = event
        self.progress.value = int(100 * done / max(total, 1))
        if self.task is not None:
            self.task.step(done, total)

    def _on_done(self, layer_data):
        self.layers = [getattr(self.viewer, f"add_{kind}")(data, **kwargs) for data, kwargs, kind in layer_data]
        movie, gt = self.layers
        self.status.value = (f"{plural(movie.data.shape[0], 'frame')} of {movie.data.shape[2]}×{movie.data.shape[1]} "
                             f"px, {plural(len(gt.data), 'ground-truth localization')}")

    def _on_error(self, exc):
        self.status.value = f"failed: {user_message(exc)}"
        notify_error(exc)

    def _on_finished(self):
        if self._cancelled:
            self.status.value = "cancelled; nothing added"
            notify_info("simulation cancelled")
        self.task = None
        self.button.enabled = True
        self.stop_button.enabled = False

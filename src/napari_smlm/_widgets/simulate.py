"""Simulate dock widget: a movie with known molecules, for trying models."""

from __future__ import annotations

from magicgui.widgets import Container, FloatSpinBox, PushButton, SpinBox

from ._common import notify_error


class SimulateWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__(labels=True)
        self.viewer = viewer
        self.frames = SpinBox(label="frames", value=200, min=1, max=100000)
        self.size = SpinBox(label="frame size [px]", value=64, min=8, max=2048)
        self.pixel_size = FloatSpinBox(label="pixel size [nm]", value=100.0, min=1, max=10000)
        self.density = FloatSpinBox(label="density [/µm²]", value=0.5, min=0, max=20, step=0.1)
        self.photons_min = FloatSpinBox(label="photons min", value=1000.0, min=1, max=1e6, step=100)
        self.photons_max = FloatSpinBox(label="photons max", value=5000.0, min=1, max=1e6, step=100)
        self.background = FloatSpinBox(label="background [photons/px]", value=50.0, min=0, max=1e5)
        self.sigma = FloatSpinBox(label="PSF σ [nm]", value=130.0, min=10, max=2000)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.button = PushButton(text="Simulate")
        self.extend([self.frames, self.size, self.pixel_size, self.density, self.photons_min, self.photons_max,
                     self.background, self.sigma, self.seed, self.button])
        self.button.changed.connect(self.run)

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
        from .._sample_data import simulated_layers

        try:
            layers = simulated_layers(self.frames.value, self.seed.value, self.overrides())
        except Exception as exc:
            notify_error(exc)
            return []
        return [self.viewer._add_layer_from_data(*ld)[0] for ld in layers]

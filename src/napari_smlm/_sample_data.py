"""napari sample data: a short simulated movie with its ground-truth emitters."""

from __future__ import annotations

import numpy as np

DEFAULT_OVERRIDES = ["simulation.frame_size=[64,64]", "simulation.emitters.density_per_um2=[0.3,0.3]",
                     "simulation.emitters.photons=[1000,5000]", "simulation.emitters.background=[50,50]",
                     "simulation.psf.sigma_nm=[130,130]", "simulation.emitters.structure=filaments"]


def simulated_layers(n_frames: int = 100, seed: int = 0, overrides=None):
    """Layer data tuples: the movie (uint16 ADU, EMCCD camera of the default config)
    and its ground truth as a Points layer in the movie's pixel-index coordinates
    (see :mod:`napari_smlm._layers`), with every table column as a feature."""
    from ._layers import table_to_points
    from .core.config import load_config
    from .core.simulation import Simulator

    cfg = load_config(None, list(overrides if overrides is not None else DEFAULT_OVERRIDES))
    sim = Simulator(cfg.simulation, "cpu", seed)
    chunks, table, bg = sim.simulate_movie(n_frames)
    movie = np.concatenate([c.numpy() for c in chunks]).astype(np.uint16)
    px = cfg.simulation.pixel_size_nm
    gt = {"frame": table.frame.numpy(), "x": table.x_px.numpy() * px, "y": table.y_px.numpy() * px,
          "z": table.z_nm.numpy(), "photons": table.photons.numpy(), "prob": np.ones(len(table))}
    points, features = table_to_points(gt, px)
    return [
        (movie, {"name": "simulated movie", "colormap": "gray", "metadata": {"pixel_size_nm": px, "camera": sim.camera.to_dict()}}, "image"),
        (points, {"name": "ground truth", "features": features, "face_color": "transparent", "border_color": "lime",
                  "size": 2.5, "symbol": "ring", "border_width": 0.1, "out_of_slice_display": False,
                  "metadata": {"pixel_size_nm": px, "napari_smlm": "ground truth"}}, "points"),
    ]


def simulated_movie(n_frames: int = 100, seed: int = 0):
    """The sample in napari's File > Open Sample menu."""
    return simulated_layers(n_frames, seed)

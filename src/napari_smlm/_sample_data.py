"""napari sample data: a short simulated movie with its ground-truth emitters."""

from __future__ import annotations

import numpy as np


def simulated_movie(n_frames: int = 100, seed: int = 0):
    """Return napari layer data: the movie (ADU) and the ground truth as points.

    Points are (frame, y_px, x_px) in the movie's pixel grid, converted from the
    table's nm (pixel centres at (i + 0.5) · px) at this boundary only.
    """
    from .core.config import load_config
    from .core.simulation import Simulator

    cfg = load_config(None, ["simulation.frame_size=[64,64]", "simulation.emitters.density_per_um2=[0.3,0.3]"])
    sim = Simulator(cfg.simulation, "cpu", seed)
    chunks, table, _ = sim.simulate_movie(n_frames)
    movie = np.concatenate([c.numpy() for c in chunks]).astype(np.uint16)
    # Layer data in pixel units: a point at continuous pixel coordinate (x_px, y_px)
    # is drawn by napari at index (y_px - 0.5, x_px - 0.5), since napari puts pixel
    # centres at integers.
    points = np.stack([table.frame.numpy(), table.y_px.numpy() - 0.5, table.x_px.numpy() - 0.5], axis=1)
    features = {"photons": table.photons.numpy()}
    return [
        (movie, {"name": "simulated movie", "colormap": "gray"}, "image"),
        (points, {"name": "ground truth", "features": features, "face_color": "transparent",
                  "border_color": "lime", "size": 3, "symbol": "ring"}, "points"),
    ]

import numpy as np

from .conftest import ROOT


def test_manifest_is_valid_npe2():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(ROOT / "src" / "napari_smlm" / "napari.yaml")
    assert pm.name == "napari-smlm"
    assert [s.key for s in pm.contributions.sample_data] == ["simulated_movie"]


def test_sample_data_points_sit_on_molecules():
    from napari_smlm._sample_data import simulated_movie

    (movie, _, kind_m), (points, meta, kind_p) = simulated_movie(n_frames=20)
    assert kind_m == "image" and kind_p == "points"
    assert movie.shape == (20, 64, 64) and movie.dtype == np.uint16
    assert points.shape[1] == 3 and len(points) == len(meta["features"]["photons"])
    bright = meta["features"]["photons"] > 2000
    f, r, c = (np.round(points[bright]).astype(int)).T
    assert np.median(movie[f, r, c]) > np.median(movie) + 200

"""The independent astigmatic PSF of the 3D benchmark (benchmarks/pupil_psf.py): normalised,
elongated along y above focus and along x below, round in focus; the bead stack and the
test movie have the announced layout."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def pp():
    sys.path.insert(0, str(BENCH))
    try:
        import pupil_psf

        yield pupil_psf
    finally:
        sys.path.remove(str(BENCH))


def test_normalised_and_astigmatic(pp):
    z = np.array([-400.0, 0.0, 400.0])
    big = pp.psf_images(np.full(3, 32.3), np.full(3, 32.7), z, 64)
    assert big.sum(axis=(1, 2)) == pytest.approx(1.0, abs=1e-6)  # the whole period: all photons
    assert (big >= 0).all()
    small = pp.psf_images(np.full(3, 7.5), np.full(3, 7.5), z, 15)
    assert (small.sum(axis=(1, 2)) > 0.8).all()
    (sx_m, sy_m), (sx_0, sy_0), (sx_p, sy_p) = (pp.gaussian_widths(im) for im in small)
    assert sx_m > 2 * sy_m  # below focus (towards the coverslip): elongated along x
    assert sy_p > 2 * sx_p  # above focus: elongated along y
    assert sx_0 == pytest.approx(sy_0, rel=0.01) and 1.2 < sx_0 < 2.0  # round in focus
    assert sx_m == pytest.approx(sy_p, rel=0.01)  # PSF(x, y, -z) = PSF(y, x, z)
    # the centroid is the emitter's position (pixel j spans [j, j+1)), at every z
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    assert np.allclose((big * xx).sum(axis=(1, 2)), 32.3, atol=0.02)
    assert np.allclose((big * yy).sum(axis=(1, 2)), 32.7, atol=0.02)


def test_bead_stack_and_movie_layout(pp, tmp_path):
    truth = pp.bead_stack(tmp_path / "beads", n_beads=2, size=64, seed=3)
    stack = tifffile.imread(tmp_path / "beads" / "beads.tif")
    assert stack.shape == (151, 64, 64) and stack.dtype == np.uint16
    saved = json.loads((tmp_path / "beads" / "beads.json").read_text())
    assert saved["frames"] == 151 and len(saved["z_nm"]) == 151 and len(saved["beads"]) == 2
    assert saved["z_nm"][0] == -750.0 and saved["z_nm"][75] == 0.0 and saved["z_nm"][-1] == 750.0
    assert truth["camera"]["baseline_adu"] == 100.0
    # the bead is brightest (peak) in focus, and a spot at all
    b = saved["beads"][0]
    i, j = int(b["y_nm"] // 100), int(b["x_nm"] // 100)
    peaks = stack[:, i - 2:i + 3, j - 2:j + 3].max(axis=(1, 2)).astype(float)
    assert abs(int(np.argmax(peaks)) - 75) < 30

    meta = pp.movie(tmp_path / "movie", frames=4, size=32, density_per_um2=1.0, seed=5)
    mov = tifffile.imread(tmp_path / "movie" / "movie.tif")
    assert mov.shape == (4, 32, 32) and mov.dtype == np.uint16
    from napari_smlm.core.io.tables import read_table

    gt = read_table(tmp_path / "movie" / "emitters.csv")  # our reader: frames 1-based in the file
    assert len(gt["x"]) == meta["gt_rows"] > 0
    assert gt["frame"].min() >= 0 and gt["frame"].max() <= 3
    assert (np.abs(gt["z"]) <= 600).all() and (gt["x"] >= 0).all() and (gt["x"] <= 3200).all()
    assert json.loads((tmp_path / "movie" / "camera.json").read_text())["pixel_size_nm"] == 100.0

"""Camera estimation from the movie alone: kind, baseline and gain from the background's noise."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_smlm.core.camera import describe_estimate, estimate_camera
from napari_smlm.core.config import load_config
from napari_smlm.core.simulation import Simulator

FOREIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "foreign"


def movie(*overrides, frames=200, seed=0):
    cfg = load_config(None, ["simulation.emitters.density_per_um2=[0.5,0.5]", *overrides])
    sim = Simulator(cfg.simulation, seed=seed)
    chunks, _, _ = sim.simulate_movie(frames)
    return np.concatenate([c.numpy() for c in chunks]).astype(np.uint16), sim.camera


@pytest.mark.parametrize("gain, e_per_adu, baseline, background", [
    (100, 45, 100, 50),    # our default camera, uniform background (the mean-variance fit failed here)
    (300, 12, 400, 30),    # high gain, high baseline
    (30, 5, 500, 100),     # low gain
])
def test_emccd_on_a_uniform_background(gain, e_per_adu, baseline, background):
    m, cam = movie("simulation.camera.kind=emccd", f"simulation.camera.em_gain={gain}",
                   f"simulation.camera.e_per_adu={e_per_adu}", f"simulation.camera.baseline={baseline}",
                   f"simulation.emitters.background=[{background},{background}]")
    est, report = estimate_camera(m)
    assert report["kind"] == "emccd"
    assert report["adu_per_e"] == pytest.approx(gain / e_per_adu, rel=0.10)
    # The baseline's error is the background level (ADU above it) times the gain's relative error.
    assert report["baseline"] == pytest.approx(baseline, abs=0.1 * 0.9 * background * gain / e_per_adu + 3)
    assert np.isfinite(report["adu_per_e_err"]) and 0 < report["adu_per_e_err"] < 0.1 * report["adu_per_e"]
    # The background in photoelectrons (QE 1 is assumed; the simulated camera's is 0.9): within
    # 15 %, or within twice the error the stated baseline and gain give it (EM gain 30 on 100
    # photons/px: the baseline's bound alone is ±8 photoelectrons, read noise unknown).
    photons = est.to_photons(__import__("torch").tensor(float(np.median(m)))).item()
    err = np.hypot(report["baseline_err"], photons * report["adu_per_e_err"]) / report["adu_per_e"]
    assert abs(photons - 0.9 * background) <= max(0.15 * 0.9 * background, 2 * err)


def test_an_emccd_whose_read_noise_the_movie_cannot_tell_states_errors_that_cover_it():
    """EM gain 30, 5 e-/ADU, 50 photons/px: the read noise (15 ADU) is 7 % of the
    background's variance, and 200 frames of 64×64 cannot tell it from shot noise (the
    fits with and without it differ by less than one unit of log-likelihood), while the
    gain and the baseline move with it. The errors stated were the likelihood's curvature,
    which leaned on the read noise's prior: ±7.4 ADU for a baseline 38 ADU low (measured,
    this movie). They are now at least what the values allow with the read noise unknown."""
    m, cam = movie("simulation.camera.kind=emccd", "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=5",
                   "simulation.camera.baseline=500", "simulation.emitters.background=[50,50]")
    _, rep = estimate_camera(m)
    assert rep["kind"] == "emccd"
    assert abs(rep["baseline"] - 500) <= 2 * rep["baseline_err"]
    assert abs(rep["adu_per_e"] - 6.0) <= 2 * rep["adu_per_e_err"]
    assert rep["baseline_err"] > 15  # said: this movie cannot give the baseline to a few ADU
    assert f"this movie leaves the baseline ±{rep['baseline_err']:.0f} ADU: give it if you know it" in describe_estimate(rep)


def test_a_dim_emccd_with_its_baseline_given_tells_read_noise_from_shot_noise():
    """EM gain 30, 5 e-/ADU (6 ADU per photoelectron), read noise 14.9 ADU, 10 photons/px:
    with the baseline given the gain came from κ2 / 2(κ1 − b), read noise taken for shot
    noise — 8.00 on this movie (+33 %, measured before). The likelihood with the baseline
    fixed sees the read noise in the pixels with no photoelectron. On bright backgrounds the
    moments stay (+6.5 % at 50 photons/px here; the fit read the foreign gradient movie's
    read noise 9 times too high)."""
    m, cam = movie("simulation.camera.kind=emccd", "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=5",
                   "simulation.camera.baseline=100", "simulation.emitters.background=[10,10]", frames=100)
    _, rep = estimate_camera(m, baseline=100)
    assert rep["method"] == "background noise likelihood (baseline given)"
    assert rep["baseline"] == 100 and not np.isfinite(rep["baseline_err"])
    assert rep["adu_per_e"] == pytest.approx(6.0, rel=0.03)
    assert rep["read_noise_adu"] == pytest.approx(cam.read_noise_e / cam.e_per_adu, rel=0.15)
    m, cam = movie("simulation.camera.kind=emccd", "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=5",
                   "simulation.camera.baseline=100", "simulation.emitters.background=[50,50]", frames=100)
    _, rep = estimate_camera(m, baseline=100)
    assert rep["method"] == "background noise statistics" and rep["adu_per_e"] == pytest.approx(6.0, rel=0.10)


def test_scmos_is_recognised_and_its_gain_found():
    m, cam = movie("simulation.camera.kind=scmos", "simulation.camera.e_per_adu=0.5", "simulation.camera.read_noise_e=1.5",
                   "simulation.camera.baseline=100", "simulation.emitters.background=[100,100]")
    est, report = estimate_camera(m)
    assert report["kind"] == "scmos", report["kind_reason"]
    assert report["adu_per_e"] == pytest.approx(2.0, rel=0.10)
    assert report["baseline"] == pytest.approx(100, abs=15)


def test_whole_adu_rounding_is_not_taken_for_shot_noise():
    """An sCMOS at 3 e-/ADU on a dim background (10 photons/px): the noise is ~1.2 ADU,
    and rounding to whole ADU adds 1/12 ADU² to its variance. Taken for shot noise it put
    the gain 11 % low (0.296 against 0.333 ADU per photoelectron, measured before the
    correction); the movie has no molecules, so nothing else biases it."""
    rng = np.random.default_rng(0)
    k = 1 / 3
    shape = (100, 128, 128)
    movie = np.round(rng.poisson(10.0, shape) * k + rng.normal(0, 1.5 * k, shape) + 100).astype(np.uint16)
    _, rep = estimate_camera(movie, kind="scmos")
    assert rep["adu_per_e"] == pytest.approx(k, rel=0.03)
    assert rep["baseline"] == pytest.approx(100.0, abs=0.3)


def test_a_movie_with_an_offset_taken_off_is_refused_with_the_reason():
    """A float movie from which an offset was subtracted (negative values): no camera has
    a negative baseline; said, instead of a camera 95 ADU off (the estimate was clamped to 0)."""
    rng = np.random.default_rng(0)
    movie = (rng.poisson(50.0, (40, 64, 64)) * 2.0 + 100 - 200).astype(np.float32)
    with pytest.raises(ValueError, match=r"negative values and its baseline would be -(9\d|10\d)\.\d ADU, which no camera has"):
        estimate_camera(movie, kind="scmos")
    from napari_smlm._widgets._common import user_message

    assert "the camera 'photons (no conversion)'" in user_message("… or give --photons if it is in photons already")


def test_bright_scmos_gain_from_the_censored_likelihood_where_the_sample_is_large(monkeypatch):
    """An sCMOS at 1 ADU per photoelectron on 200 photons/px, 160 frames of 256x256: the
    moments take up the signal of molecules no mask finds (+15 % here); the likelihood with
    the top fifth censored does not, and states an error its result is within."""
    import napari_smlm.core.camera as camera

    cfg = load_config(None, ["simulation.frame_size=[256,256]", "simulation.emitters.density_per_um2=[0.5,0.5]",
                             "simulation.camera.kind=scmos", "simulation.camera.e_per_adu=1.0",
                             "simulation.camera.baseline=100", "simulation.camera.em_gain=1",
                             "simulation.camera.read_noise_e=1.5", "simulation.emitters.background=[200,200]"])
    chunks, _, _ = Simulator(cfg.simulation, seed=1).simulate_movie(160)
    m = np.concatenate([c.numpy() for c in chunks]).astype(np.uint16)
    _, rep = estimate_camera(m)
    assert rep["method"] == "background noise likelihood (top fifth censored)"
    assert rep["adu_per_e"] == pytest.approx(1.0, rel=0.08)
    assert abs(rep["adu_per_e"] - 1.0) <= 2 * rep["adu_per_e_err"]
    monkeypatch.setattr(camera, "SCMOS_FIT_MIN_SAMPLES", 10 ** 12)  # the moments
    _, moments = estimate_camera(m)
    # what the frames beside bright spots hold (their molecules' dim partial blinks) is out of
    # the sample: the moments read 1.024 here, and 1.104 with those frames in
    assert moments["method"] == "background noise statistics" and moments["neighbour_frames"] == 1.0
    assert moments["adu_per_e"] == pytest.approx(1.0, rel=0.05)
    monkeypatch.setattr(camera, "NEIGHBOUR_KEEP", 2.0)  # never: the mask of spots alone, as before
    _, spots_only = estimate_camera(m)
    assert spots_only["neighbour_frames"] == 0.0 and spots_only["adu_per_e"] > 1.08


def test_a_bright_scmos_on_a_short_movie_states_what_molecules_leave_in_the_sample(monkeypatch):
    """An sCMOS at 1 ADU per photoelectron on 200 photons/px, 200 frames of 64×64, molecules of
    200–20,000 photons. With the mask of found spots alone the moments read 1.130 (+13 %) with
    ±0.066 from the jackknife alone (2.0σ; measured, this movie) — the signal of molecules too
    dim to mask, which no error from the noise covers. Read again from what the mask keeps at
    4σ, the estimate moves by +0.085; that shift is added to the ± in quadrature: ±0.107
    (1.2σ). Masking the frames beside bright spots as well (their molecules' partial blinks)
    takes most of the bias away: 1.037 ± 0.070, the shift +0.012."""
    import napari_smlm.core.camera as camera

    m, cam = movie("simulation.camera.kind=scmos", "simulation.camera.e_per_adu=1.0", "simulation.camera.read_noise_e=1.5",
                   "simulation.camera.baseline=100", "simulation.camera.em_gain=1",
                   "simulation.emitters.background=[200,200]", seed=1)
    _, rep = estimate_camera(m)
    assert rep["method"] == "background noise statistics" and rep["neighbour_frames"] == 1.0
    assert abs(rep["adu_per_e"] - 1.0) < 0.05 and abs(rep["mask_shift"][0]) < 0.03
    assert abs(rep["adu_per_e"] - 1.0) <= 2 * rep["adu_per_e_err"]
    monkeypatch.setattr(camera, "NEIGHBOUR_KEEP", 2.0)  # never: the mask of found spots alone
    _, spots = estimate_camera(m)
    err, stated, shift = spots["adu_per_e"] - 1.0, spots["adu_per_e_err"], spots["mask_shift"][0]
    assert spots["neighbour_frames"] == 0.0
    assert err > 0.08 and shift > 0.05  # the bias, and its measure, both up
    assert abs(err) <= 1.5 * stated and stated >= abs(shift)
    monkeypatch.setattr(camera, "_alt_estimate", lambda *a, **k: None)  # the ± from the noise alone
    _, noise_only = estimate_camera(m)
    assert noise_only["adu_per_e"] == spots["adu_per_e"] and abs(err) > 1.5 * noise_only["adu_per_e_err"]
    assert np.isnan(noise_only["mask_shift"]).all()


def test_the_frames_beside_a_bright_spot_are_masked_where_that_leaves_enough():
    """A molecule bright in frames 8-11 of 20 whose partial blinks in frames 7 and 12 are too dim
    to be found there: with ``bright_threshold`` the neighbourhood of the spot (where it is above
    that, widened by 3 px) is left out of those two frames too: at least 7×7 pixels in each, and
    no more than two frames can hold. Where bright spots are so many that this would leave less
    than ``neighbour_keep`` of the samples, it is not done."""
    from napari_smlm.core.camera import _background_sums

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    spot = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 2.0) / (2 * np.pi)  # 1 ADU in all, σ = 1 px
    x = 1000.0 + rng.normal(0.0, 1.0, (20, 64, 64))
    x[8:12] += 3000 * spot
    x[[7, 12]] += 10 * spot  # 1.6 ADU at the centre: 2σ of the smoothed noise, not found
    plain, nb_plain = _background_sums(x, alt_threshold=4.0)
    beside, nb = _background_sums(x, alt_threshold=4.0, bright_threshold=6.0)
    assert not nb_plain and nb
    for t in (3.5, 4.0):
        n_plain = sum(r[0] for r in plain[t][0])
        n_beside = sum(r[0] for r in beside[t][0])
        assert 2 * 7 * 7 <= n_plain - n_beside <= 2 * 17 * 17
    crowded = x.copy()
    crowded[1::2] += 3000 * np.roll(spot, (-32 + 8, -32 + 8), (0, 1))  # bright in every other frame
    crowded[1::2] += 3000 * np.roll(spot, (-32 + 24, -32 + 40), (0, 1))
    crowded[1::2] += 3000 * np.roll(spot, (-32 + 44, -32 + 16), (0, 1))
    crowded[1::2] += 3000 * np.roll(spot, (-32 + 50, -32 + 50), (0, 1))
    sums, nb = _background_sums(crowded, alt_threshold=4.0, bright_threshold=6.0, neighbour_keep=0.99)
    assert not nb and sums[3.5][0] == _background_sums(crowded, alt_threshold=4.0)[0][3.5][0]


def test_the_line_asks_for_the_gain_where_its_error_is_over_ten_percent():
    rep = {"kind": "emccd", "kind_reason": "given", "baseline": 100.0, "baseline_err": 2.0, "adu_per_e": 10.0,
           "adu_per_e_err": 1.5, "em_gain": 100.0, "e_per_adu": 10.0, "qe": 1.0}
    assert describe_estimate(rep).endswith("; this movie leaves the ADU per photoelectron ±15 %: give the camera's "
                                           "e-/ADU and EM gain if you know them")
    assert "leaves" not in describe_estimate({**rep, "adu_per_e_err": 0.9})
    assert describe_estimate({**rep, "kind": "scmos", "adu_per_e": 1.0, "adu_per_e_err": 0.12}).endswith(
        "±12 %: give the camera's e-/ADU if you know it")


def test_gradient_background_and_given_baseline():
    m, cam = movie("simulation.emitters.background_gradient=0.8", "simulation.emitters.background=[60,60]")
    _, report = estimate_camera(m)
    assert report["adu_per_e"] == pytest.approx(cam.em_gain / cam.e_per_adu, rel=0.10)
    _, given = estimate_camera(m, baseline=100.0, kind="emccd")
    assert given["baseline"] == 100.0 and given["kind_reason"] == "given"
    assert given["adu_per_e"] == pytest.approx(cam.em_gain / cam.e_per_adu, rel=0.10)
    assert "baseline" in describe_estimate(given) and "ADU per photoelectron" in describe_estimate(given)


def test_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="at least 3 frames"):
        estimate_camera(np.full((2, 32, 32), 100, np.uint16))
    flat = np.full((40, 32, 32), 100, np.uint16)  # no noise at all
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refusal alone, no numpy warning printed before it
        with pytest.raises(ValueError, match="give the camera"):
            estimate_camera(flat)


@pytest.mark.skipif(not FOREIGN.is_dir(), reason="../shared/data/foreign not present")
@pytest.mark.parametrize("name", ["emccd_160nm", "scmos_108nm", "emccd_gradient"])
def test_foreign_movies(name):
    """Movies from an independent simulator: kind right, gain within 10 %."""
    truth = json.loads((FOREIGN / name / "camera.json").read_text())["camera"]
    _, report = estimate_camera(tifffile.imread(FOREIGN / name / "movie.tif"))
    assert report["kind"] == truth["kind"], report["kind_reason"]
    assert report["adu_per_e"] == pytest.approx(truth["adu_per_photoelectron"], rel=0.10)


def test_read_noise_on_a_dim_emccd_background():
    """EM gain 30, 5 e-/ADU, 10 photons/px: read noise (74.4 e-, 15 ADU) is a quarter of the
    background's variance. The moments read it as shot noise (gain -25 to -28 %); the
    likelihood of the whole distribution tells them apart and reports the read noise."""
    m, cam = movie("simulation.camera.kind=emccd", "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=5",
                   "simulation.camera.baseline=100", "simulation.emitters.background=[10,10]",
                   "simulation.emitters.density_per_um2=[0.2,0.2]", seed=3)
    est, report = estimate_camera(m)
    assert report["kind"] == "emccd" and report["method"] == "background noise likelihood"
    assert report["adu_per_e"] == pytest.approx(6.0, rel=0.10)
    assert report["baseline"] == pytest.approx(100, abs=10)
    assert report["read_noise_adu"] == pytest.approx(74.4 / 5, rel=0.25)
    assert est.read_noise_e == pytest.approx(report["read_noise_adu"] * est.e_per_adu)
    assert "read noise" in describe_estimate(report)


def test_low_gain_emccd_is_told_from_an_scmos_by_its_noise_shape():
    """0.6 ADU per photoelectron (EM gain 30, 50 e-/ADU): no sCMOS rule can tell; the
    likelihoods of the two noise models can at a moderate background."""
    m, cam = movie("simulation.camera.kind=emccd", "simulation.camera.em_gain=30", "simulation.camera.e_per_adu=50",
                   "simulation.camera.baseline=500", "simulation.emitters.background=[50,50]", seed=11)
    _, report = estimate_camera(m)
    assert report["kind"] == "emccd", report["kind_reason"]
    assert "log-likelihood" in report["kind_reason"]
    assert report["adu_per_e"] == pytest.approx(0.6, rel=0.10)


def test_an_undecidable_kind_is_said():
    """An sCMOS at 1 e-/ADU on a bright background: its noise fits an EMCCD at a third of the
    gain as well; the estimate says so and how to fix it, instead of a silent guess."""
    m, cam = movie("simulation.camera.kind=scmos", "simulation.camera.e_per_adu=1", "simulation.camera.read_noise_e=1.5",
                   "simulation.camera.baseline=100", "simulation.emitters.background=[200,200]", seed=5)
    _, report = estimate_camera(m)
    assert report["kind"] == "scmos"
    assert "cannot tell" in report["kind_reason"] and "give the kind" in report["kind_reason"]


def _dim_emccd_background(frames, seed=3):
    """Pure background through the simulator's camera: EM gain 300, 5 e-/ADU (60 ADU per
    photoelectron), read noise 74.4 e- (15 ADU), 10 photons/px at QE 0.9 (λ = 9)."""
    import torch

    from napari_smlm.core.camera import Camera

    cfg = load_config(None, ["simulation.camera.e_per_adu=5", "simulation.camera.em_gain=300"])
    cam = Camera.from_config(cfg.simulation.camera)
    adu = cam.forward(torch.full((frames, 64, 64), 10.0), torch.Generator().manual_seed(seed)).numpy().ravel()
    return adu, cam


def test_likelihood_fit_reaches_the_bound_on_a_dim_emccd():
    """One Nelder–Mead run stalled here 17 log-units short of the truth's likelihood (gain
    -2.3 %, baseline -11 ADU: 7 bounds off); restarted, the fit lands within 3 bounds, and
    its stated errors are the Cramér–Rao bound's size."""
    from napari_smlm.core.camera_likelihood import cramer_rao, fit_background_noise

    adu, cam = _dim_emccd_background(200)
    fit = fit_background_noise(adu, "emccd", 60.0, 9.0)
    bound_g, bound_b = cramer_rao("emccd", 60.0, 9.0, 100.0, 74.4 / 5, adu.size)
    assert 0.1 < bound_g < 0.5 and 0.5 < bound_b < 4  # 4 unknowns from 819,200 values
    assert abs(fit.gain - 60.0) < 3 * bound_g
    assert abs(fit.baseline - 100.0) < 3 * bound_b
    assert fit.read_free and fit.read_adu == pytest.approx(74.4 / 5, rel=0.3)
    err_g, err_b = fit.errors()
    assert 0.5 < err_g / bound_g < 2 and 0.5 < err_b / bound_b < 2


def test_read_noise_is_fitted_on_a_dim_background_even_where_it_gains_little():
    """60 frames: the read noise improves the likelihood by about one log-unit only, but
    leaving it out puts a hard edge at the baseline (it came out 8.6 ADU low); on a dim
    background it is kept, and the stated errors are those of the fit with read noise."""
    from napari_smlm.core.camera_likelihood import fit_background_noise

    adu, cam = _dim_emccd_background(60)
    fit = fit_background_noise(adu, "emccd", 60.0, 9.0)
    assert fit.read_free and 5 < fit.read_adu < 25
    err_g, err_b = fit.errors()
    assert abs(fit.baseline - 100.0) < max(3.0, 2 * err_b) and err_b > 1.0


def test_the_estimate_of_a_large_frame_holds_its_crop_not_the_frames():
    """A 2048x2048 camera's movie: the estimate reads a central 256x256 crop of groups of
    frames spread over the movie; a view of that crop had kept every group's whole frames
    (7.1 GB at 400 frames of 2048x2048, measured). Here 100 frames of 1024x1024, 5 groups:
    ~420 MB held before, the crops and a group or two in flight now."""
    import tracemalloc

    rng = np.random.default_rng(0)
    e = rng.poisson(40, (20, 1024, 1024))
    pool = (100 + rng.gamma(np.maximum(e, 1e-9), 2.0) * (e > 0)).astype(np.uint16)
    del e

    class Movie:  # frames as a reader returns them, new arrays each time
        shape, ndim, dtype = (100, 1024, 1024), 3, np.uint16

        def __len__(self):
            return 100

        def __getitem__(self, index):
            return pool[: len(range(*index.indices(100)))].copy()

    tracemalloc.start()
    try:
        _, report = estimate_camera(Movie(), kind="emccd")
        peak = tracemalloc.get_traced_memory()[1] - pool.nbytes
    finally:
        tracemalloc.stop()
    assert report["adu_per_e"] == pytest.approx(2.0, rel=0.05)
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB"

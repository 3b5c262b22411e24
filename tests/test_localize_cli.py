import numpy as np
import pytest
import tifffile

from napari_smlm.core.io import read_table

from .conftest import run_cli


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    out = tmp_path_factory.mktemp("movie")
    run_cli("simulate", "--frames", 40, "--out", out, "--seed", 2, "--set", "simulation.frame_size=[48,48]",
            "--set", "simulation.emitters.density_per_um2=[0.3,0.3]", "--set", "simulation.emitters.background_gradient=0.6")
    return out


def test_localize_writes_csv_and_picasso(movie, tmp_path):
    out = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "l.csv", "--baseline", 100, "--e-per-adu", 45,
                  "--em-gain", 100, "--qe", 0.9, "--batch-size", 8).stdout
    assert "40/40 frames" in out and "localized" in out and "molecules in 40 frames" in out
    assert "pixel size 100 nm from the file's napari-smlm metadata" in out  # simulate writes it
    t = read_table(tmp_path / "l.csv")
    from napari_smlm.core.inference import LocalizationModel

    threshold = LocalizationModel.load("default").detection_threshold  # the bundled model's own
    assert len(t["x"]) > 0 and (t["prob"] >= threshold - 1e-6).all() and t["frame"].max() <= 39
    assert ((t["x"] > 0) & (t["x"] < 4800)).all()
    out = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "l.h5", "--frames", "5:10", "--threshold", 0.8,
                  "--estimate-camera", "--baseline", 100).stdout
    assert "camera estimated from the movie" in out and "6/6 frames" in out
    h = read_table(tmp_path / "l.h5")
    assert set(np.unique(h["frame"])) <= set(range(4, 10)) and (h["prob"] >= 0.8).all()
    assert (tmp_path / "l.yaml").is_file()


def test_a_movie_that_does_not_say_its_pixel_size_is_told_so(movie, tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, tifffile.imread(movie / "movie.tif")[:6])  # no pixel size in it
    out = run_cli("localize", plain, "--out", tmp_path / "l.csv", "--baseline", 100, "--e-per-adu", 45,
                  "--em-gain", 100, "--qe", 0.9).stdout
    # the one used is said, not assumed silently
    assert "pixel size 100 nm: the model's, as the movie does not say its own; give --pixel-size" in out
    out = run_cli("localize", plain, "--out", tmp_path / "l2.csv", "--baseline", 100, "--e-per-adu", 45,
                  "--em-gain", 100, "--qe", 0.9, "--pixel-size", 100).stdout
    assert "pixel size" not in out


def test_localize_merges_repeated_localizations(movie, tmp_path):
    """--merge: a molecule on in consecutive frames (the simulation's mean on-time is 1.5
    frames) is written once, with n_frames and its photons summed."""
    cam = ["--baseline", 100, "--e-per-adu", 45, "--em-gain", 100, "--qe", 0.9]
    run_cli("localize", movie / "movie.tif", "--out", tmp_path / "all.csv", *cam)
    out = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "merged.csv", "--merge", *cam).stdout
    every, merged = read_table(tmp_path / "all.csv"), read_table(tmp_path / "merged.csv")
    assert "merged them into" in out and f"localized {len(every['x'])} molecules" in out
    assert len(merged["x"]) < 0.9 * len(every["x"])
    assert merged["n_frames"].sum() == len(every["x"]) and merged["n_frames"].max() >= 2
    assert merged["photons"].sum() == pytest.approx(every["photons"].sum(), rel=1e-3)
    bad = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "x.csv", "--merge", "--merge-gap", -1, *cam,
                  check=False)
    assert bad.returncode != 0 and "--merge-gap" in bad.stderr and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("model", ["default", "fast"])
def test_a_2d_model_reports_the_focal_plane(movie, tmp_path, model):
    """A 2D model's z head is noise (it only saw z = 0): z is 0 and has no uncertainty,
    so nothing downstream mistakes a 2D table for 3D; x and y come as before."""
    from napari_smlm.core.localize import localize

    res = localize(movie / "movie.tif", model=model, camera="estimate", frame_range=(0, 10))
    t = res.table()
    assert len(t["x"]) > 20
    assert (t["z"] == 0).all() and np.isnan(t["sigma_z"]).all()
    assert np.isfinite(t["sigma_x"]).all() and np.ptp(t["x"]) > 1000


def _bad(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    tifffile.imwrite(d / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(d / "tiny.tif", np.zeros((5, 4, 4), np.uint16), photometric="minisblack")
    nan = np.full((5, 32, 32), 200.0, np.float32)
    nan[0, 3, 3] = np.nan
    tifffile.imwrite(d / "nan.tif", nan)
    tifffile.imwrite(d / "ok.tif", np.random.default_rng(0).poisson(200, (5, 32, 32)).astype(np.uint16))
    (d / "notckpt.pt").write_text("hello")
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["rgb.tif"], "rgb.tif: expected a single frame (Y, X) or a stack (T, Y, X), got shape (32, 32, 3)"),
        (["tiny.tif"], "tiny.tif: frames of 4x4 px are smaller than the minimum 8x8"),
        (["nan.tif", "--baseline", "100", "--e-per-adu", "45"], "nan.tif: frame 1 holds NaN or infinite pixels"),
        (["ok.tif", "--model", "notckpt.pt"], "notckpt.pt: not a napari-smlm checkpoint"),
        (["ok.tif", "--model", "fancy"], "--model fancy: neither a bundled model (default, fast) nor an existing checkpoint file"),
        (["ok.tif", "--baseline", "1000", "--e-per-adu", "45"], "most pixels become negative photons"),
        (["missing.tif"], "missing.tif: movie file not found"),
    ],
)
def test_bad_input_stops_with_one_message_and_no_output(tmp_path, args, message):
    d = _bad(tmp_path)
    args = [str(d / a) if a.endswith((".tif", ".pt")) else a for a in args]
    out = tmp_path / "out.csv"
    proc = run_cli("localize", *args, "--out", out, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".out.csv*"))


def test_camera_from_yaml(movie, tmp_path):
    (tmp_path / "cam.yaml").write_text("camera: {kind: emccd, baseline: 100, e_per_adu: 45, em_gain: 100, qe: 0.9}\n")
    out = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "l.csv", "--camera", tmp_path / "cam.yaml", "--frames", "1:5").stdout
    assert "localized" in out and (tmp_path / "l.csv").is_file()
    (tmp_path / "bad.yaml").write_text("camera: {qe: 2}\n")
    proc = run_cli("localize", movie / "movie.tif", "--out", tmp_path / "m.csv", "--camera", tmp_path / "bad.yaml", check=False)
    assert proc.returncode == 1 and "bad.yaml: camera.qe: expected a positive number <= 1, got 2" in proc.stderr
    assert not (tmp_path / "m.csv").exists()


FOREIGN = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "foreign"


@pytest.mark.skipif(not (FOREIGN / "scmos_108nm").is_dir(), reason="../shared/data/foreign not present")
def test_no_camera_option_on_a_movie_we_did_not_make(tmp_path):
    """An sCMOS movie from an independent simulator, uniform background, no camera
    option: the estimate is printed and scores as well as the true camera."""
    import json

    from napari_smlm.core.evaluation import evaluate

    d = FOREIGN / "scmos_108nm"
    cam = json.loads((d / "camera.json").read_text())["camera"]
    gt_rows = np.loadtxt(d / "emitters.csv", delimiter=",", skiprows=1, ndmin=2)
    gt = {"frame": gt_rows[:, 0] - 1, "x": gt_rows[:, 1], "y": gt_rows[:, 2], "z": gt_rows[:, 3]}
    scores = {}
    for tag, extra in (("estimated", []), ("true", ["--camera-kind", "scmos", "--baseline", cam["baseline_adu"],
                                                    "--e-per-adu", cam["e_per_adu"], "--qe", cam["qe"]])):
        out = run_cli("localize", d / "movie.tif", "--out", tmp_path / f"{tag}.csv", "--pixel-size", 108, *extra).stdout
        t = read_table(tmp_path / f"{tag}.csv")
        scores[tag] = evaluate(t, gt, 250.0, np.inf)[0]["jaccard"]
        if tag == "estimated":
            assert "camera estimated from the movie's background noise: scmos" in out
            assert "ADU per photoelectron" in out and "±" in out
    assert scores["true"] > 0.8
    assert scores["estimated"] >= scores["true"] - 0.02, scores

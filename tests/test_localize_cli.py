import re

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
    assert re.search(r"8/40 frames \(\d+ frames/s, 0:\d\d left\)", out), out  # the time left while it runs
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


def _emccd():
    from napari_smlm.core.camera import Camera

    return Camera(kind="emccd", baseline=100, e_per_adu=45, em_gain=100, qe=0.9)


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_a_streamed_table_is_the_table_of_a_run_held_in_memory(movie, tmp_path, suffix):
    """localize streams each batch's rows to the file (memory does not grow with the
    movie); the file holds exactly what the table held in memory gives, across batch
    edges and with a pixel size that is not the model's (positions rescaled per piece)."""
    from napari_smlm.core.io.tables import TableWriter, write_table
    from napari_smlm.core.localize import localize

    kw = dict(camera=_emccd(), pixel_size_nm=110, batch_size=3, threshold=0.5)
    held = localize(movie / "movie.tif", **kw)
    write_table(held.table(), tmp_path / f"held{suffix}", pixel_size_nm=110, movie_shape=held.movie_shape)
    pieces = []
    with TableWriter(tmp_path / f"streamed{suffix}") as writer:
        writer.FLUSH_ROWS = 40  # pieces gathered and written several times
        append = writer.append
        writer.append = lambda t: (pieces.append(len(t["frame"])), append(t))
        streamed = localize(movie / "movie.tif", sink=writer, **kw)
    assert len(streamed.candidates["frame"]) == 0  # nothing kept in memory
    assert len(pieces) >= 10 and writer.rows == len(held.table()["frame"]) == sum(pieces) > 50
    a, b = read_table(tmp_path / f"held{suffix}"), read_table(tmp_path / f"streamed{suffix}")
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert np.abs(b["x"]).max() > 4000  # in nm at 110 nm per pixel (48 px frames: up to 5280)
    if suffix == ".h5":
        assert (tmp_path / "streamed.yaml").read_text() == (tmp_path / "held.yaml").read_text().replace("held", "streamed")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}{s}" for n in ("held", "streamed") for s in ([suffix] if suffix == ".csv" else [".h5", ".yaml"]))


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_a_cancelled_streamed_run_leaves_the_old_table_and_no_half_file(movie, tmp_path, suffix):
    from napari_smlm.core.inference import InferenceCancelled
    from napari_smlm.core.io.tables import TableWriter, write_table
    from napari_smlm.core.localize import localize

    old = {"frame": np.array([0, 1]), "x": np.array([10.0, 20.0]), "y": np.array([5.0, 6.0]),
           "z": np.zeros(2), "photons": np.ones(2), "bg": np.ones(2), "prob": np.ones(2)}
    write_table(old, tmp_path / f"l{suffix}", pixel_size_nm=100)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = []
    with pytest.raises(InferenceCancelled):
        with TableWriter(tmp_path / f"l{suffix}") as writer:
            writer.FLUSH_ROWS = 1
            localize(movie / "movie.tif", camera=_emccd(), batch_size=4, sink=writer,
                     cancel=lambda: calls.append(1) or len(calls) > 3)
    assert writer.rows > 0  # rows had been written when it was cancelled
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # old files as they were, no temporary

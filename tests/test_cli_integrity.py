"""The command line under a careful probe (issue 11): no exit-0 data loss, every
message names the file and the cause, checks before long work, interruptions told."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch

from napari_smlm.core.io import read_table, write_localizations_csv

from .conftest import CONFIGS, run_cli

CAMERA = ["--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    run_cli("simulate", "--frames", 20, "--out", out, "--seed", 3, "--set", "simulation.frame_size=[32,32]",
            "--set", "simulation.emitters.density_per_um2=[0.5,0.5]")
    return out


class Proc:
    """What a run of the CLI left: like subprocess.CompletedProcess."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli_in_process(capsys, *args):
    """The CLI in this process (no second torch import: fast for checks that end early)."""
    from napari_smlm import cli

    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return Proc(rc, out, err)


def cli_ok(capsys, *args):
    proc = cli_in_process(capsys, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def one_error_line(proc, *fragments):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "weights_only=False" not in proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------- item 1


def test_frame_by_frame_tiff_is_localized_whole_and_truncated_is_refused(sim, tmp_path, capsys):
    movie = tifffile.imread(sim / "movie.tif")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for f in movie:
            tw.write(f)
    out = cli_ok(capsys, "localize", tmp_path / "pages.tif", "--out", tmp_path / "l.csv", *CAMERA).stdout
    assert "20/20 frames" in out and "molecules in 20 frames" in out
    whole = read_table(tmp_path / "l.csv")
    assert whole["frame"].max() >= 15  # molecules found in the late frames too
    tifffile.imwrite(tmp_path / "ij.tif", movie, imagej=True)
    with tifffile.TiffFile(tmp_path / "ij.tif") as tif:
        offset = tif.series[0].dataoffset
    data = (tmp_path / "ij.tif").read_bytes()
    (tmp_path / "ij.tif").write_bytes(data[: offset + int(14.5 * movie[0].nbytes)])  # cut inside frame 15
    proc = cli_in_process(capsys, "localize", tmp_path / "ij.tif", "--out", tmp_path / "t.csv", *CAMERA)
    one_error_line(proc, f"{tmp_path / 'ij.tif'}: truncated file: the last readable frame is 14 of the 20 frames",
                   "--allow-truncated")
    assert not (tmp_path / "t.csv").exists() and "model:" not in proc.stdout  # before the model was loaded
    proc = cli_ok(capsys, "localize", tmp_path / "ij.tif", "--out", tmp_path / "t.csv", *CAMERA, "--allow-truncated")
    assert "molecules in 14 frames" in proc.stdout and "localizing frames 1..14 only" in proc.stdout + proc.stderr
    assert read_table(tmp_path / "t.csv")["frame"].max() <= 13


@pytest.mark.parametrize("layout", ["imagej TCYX", "ome CTYX", "ome TCYX zlib"])
def test_a_file_with_channels_is_localized_one_channel_at_a_time(sim, tmp_path, capsys, layout):
    """A two-channel acquisition (molecules in channel 2 only; channel 1 the same frames
    shifted in time, so the channels differ): refused without --channel, naming the
    channels; --channel 2 localizes exactly what the single-channel movie gives; the
    truncation of a channel is found as for a plain stack."""
    movie = tifffile.imread(sim / "movie.tif")
    both = np.stack([np.roll(movie, 7, axis=0), movie], 1)  # T, C, Y, X
    path = tmp_path / "two.tif"
    if layout == "imagej TCYX":
        tifffile.imwrite(path, both, imagej=True, metadata={"axes": "TCYX"})
    elif layout == "ome CTYX":
        tifffile.imwrite(path, both.transpose(1, 0, 2, 3).copy(), ome=True, metadata={"axes": "CTYX"})
    else:
        tifffile.imwrite(path, both, ome=True, metadata={"axes": "TCYX"}, compression="zlib")
    proc = cli_in_process(capsys, "localize", path, "--out", tmp_path / "l.csv", *CAMERA)
    one_error_line(proc, f"{path}: holds 2 channels", "20 frames of 32x32 each", "--channel 1 to --channel 2")
    proc = cli_in_process(capsys, "localize", path, "--out", tmp_path / "l.csv", *CAMERA, "--channel", 3)
    one_error_line(proc, f"{path}: has no channel 3: it holds 2 channels")
    out = cli_ok(capsys, "localize", path, "--out", tmp_path / "l.csv", *CAMERA, "--channel", 2).stdout
    assert "channel 2 of 2: 20 frames of 32x32" in out
    cli_ok(capsys, "localize", sim / "movie.tif", "--out", tmp_path / "plain.csv", *CAMERA)
    assert (tmp_path / "l.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    from napari_smlm.core.io import open_movie

    first = open_movie(path, channel=0)
    assert first.shape == (20, 32, 32) and first.channels == 2 and np.array_equal(first[3:9], both[3:9, 0])


def test_napari_opens_each_channel_as_a_layer(sim, tmp_path):
    from napari_smlm._io import get_reader

    movie = tifffile.imread(sim / "movie.tif")
    both = np.stack([movie // 2, movie], 1)
    tifffile.imwrite(tmp_path / "two.tif", both, imagej=True, metadata={"axes": "TCYX"})
    layers = get_reader(str(tmp_path / "two.tif"))(str(tmp_path / "two.tif"))
    assert [kw["name"] for _, kw, _ in layers] == ["two channel 1", "two channel 2"]
    assert [kw["metadata"]["channel"] for _, kw, _ in layers] == [0, 1]
    for c, (data, _, kind) in enumerate(layers):
        assert kind == "image" and data.shape == (20, 32, 32) and np.array_equal(np.asarray(data), both[:, c])
        assert isinstance(data, np.memmap)  # a view into the file, not a copy of the movie


def test_camera_command_estimates_before_localizing_and_writes_a_yaml_localize_reads(sim, tmp_path, capsys):
    """`napari-smlm camera MOVIE --out cam.yaml`: the estimate with its ± before any
    network runs; localize --camera cam.yaml then gives the table of a run without a camera
    option (the same camera); a YAML napari-smlm did not write is refused before the work."""
    yaml_path = tmp_path / "cam.yaml"
    out = cli_ok(capsys, "camera", sim / "movie.tif", "--out", yaml_path).stdout
    assert "20 frames of 32x32" in out and "camera: " in out and " ± " in out and f"wrote {yaml_path}" in out
    text = yaml_path.read_text()
    assert text.startswith("# napari-smlm camera of movie.tif") and "ADU per photoelectron" in text
    cli_ok(capsys, "localize", sim / "movie.tif", "--out", tmp_path / "est.csv")
    cli_ok(capsys, "localize", sim / "movie.tif", "--out", tmp_path / "yaml.csv", "--camera", yaml_path)
    a, b = read_table(tmp_path / "est.csv"), read_table(tmp_path / "yaml.csv")
    assert len(a["x"]) == len(b["x"]) > 0 and np.allclose(a["x"], b["x"], atol=0.01)
    # written by us: replaced; anyone else's: refused before the estimate
    cli_ok(capsys, "camera", sim / "movie.tif", "--out", yaml_path, "--camera-kind", "emccd")
    assert "kind: emccd" in yaml_path.read_text()
    (tmp_path / "mine.yaml").write_text("kind: scmos\n")
    proc = cli_in_process(capsys, "camera", sim / "movie.tif", "--out", tmp_path / "mine.yaml")
    one_error_line(proc, f"{tmp_path / 'mine.yaml'}: exists and is not a camera file written by napari-smlm")
    assert "camera:" not in proc.stdout and (tmp_path / "mine.yaml").read_text() == "kind: scmos\n"


# ----------------------------------------------------------------------------- item 2 (and 12, 13)


def test_train_refuses_to_replace_a_finished_run(tmp_path, capsys):
    common = ["--config", "smoke", "--out", tmp_path / "run", "--set", "simulation.frame_size=[16,16]",
              "--set", "training.steps_per_epoch=2", "--set", "training.validation_size=4", "--set", "training.batch_size=2",
              "--set", "training.epochs=1", "--set", "output.tensorboard=false"]
    cli_ok(capsys, "train", *common)
    best = (tmp_path / "run" / "best.pt").read_bytes()
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    proc = cli_in_process(capsys, "train", *common)
    one_error_line(proc, f"{tmp_path / 'run'}: already holds a training run (last.pt, best.pt, metrics.csv; 1 epoch(s)",
                   f"--resume {tmp_path / 'run' / 'last.pt'}", "--overwrite")
    assert (tmp_path / "run" / "best.pt").read_bytes() == best and (tmp_path / "run" / "metrics.csv").read_text() == metrics
    out = cli_ok(capsys, "train", *common, "--overwrite").stdout
    assert "epoch 1:" in out and "done: finished" in out


def test_empty_training_config_is_refused(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    proc = cli_in_process(capsys, "train", "--config", tmp_path / "empty.yaml", "--dry-run")
    one_error_line(proc, f"{tmp_path / 'empty.yaml'}: empty config file", "--config default_2d")


def _wait_for(proc, text, timeout=120):
    """Read proc's stdout until ``text`` appears; returns what was read."""
    seen = ""
    t0 = time.time()
    while text not in seen and time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
    assert text in seen, seen
    return seen


@pytest.mark.parametrize("sig, rc, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_train_interrupted_says_where_the_last_checkpoint_is(tmp_path, sig, rc, word):
    args = ["train", "--config", "smoke", "--out", tmp_path / "run", "--set", "simulation.frame_size=[16,16]",
            "--set", "training.steps_per_epoch=2", "--set", "training.validation_size=4", "--set", "training.batch_size=2",
            "--set", "training.epochs=500", "--set", "output.tensorboard=false"]
    proc = subprocess.Popen([sys.executable, "-m", "napari_smlm.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = _wait_for(proc, "epoch 1:")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err
    assert f"{word}; the last complete epoch" in err and f"--resume {tmp_path / 'run' / 'last.pt'}" in err
    assert "done:" not in seen + out and "Traceback" not in err
    assert (tmp_path / "run" / "last.pt").is_file()


def test_failed_checkpoint_save_is_no_finished_run(tmp_path, tiny_overrides, monkeypatch):
    from napari_smlm.core.config import load_config
    from napari_smlm.core.training import PrintProgress, Trainer
    from napari_smlm.core.utils import WriteError

    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, "training.epochs=3", "output.tensorboard=false"])
    printed = []
    trainer = Trainer(cfg, progress=PrintProgress(printer=printed.append))
    real_save, calls = torch.save, []

    def full_disk(obj, f, *a, **k):
        calls.append(f)
        if len(calls) > 2:  # epoch 1 wrote last.pt and best.pt; epoch 2 finds the disk full
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError) as e:
        trainer.fit()
    assert "last.pt: cannot write (the write failed (disk full?))" in str(e.value) and "enforce fail" not in str(e.value)
    assert not any(line.startswith("done:") for line in printed)
    monkeypatch.undo()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1
    # what the CLI adds to the error: where training can continue from
    assert f"the last complete epoch (epoch 1) is in {tmp_path / 'run' / 'last.pt'}" in trainer.last_good_checkpoint()
    assert not list((tmp_path / "run").glob(".*.tmp"))


# ----------------------------------------------------------------------------- items 3, 5, 10: outputs


def test_localize_never_overwrites_the_camera_yaml(sim, tmp_path, capsys):
    cam = "kind: emccd\nbaseline: 100\ne_per_adu: 45\nem_gain: 100\nqe: 0.9\n"
    (tmp_path / "run.yaml").write_text(cam)
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", "--camera", tmp_path / "run.yaml", "--out", tmp_path / "run.h5")
    one_error_line(proc, f"--out {tmp_path / 'run.h5'}: its Picasso sidecar {tmp_path / 'run.yaml'} is the --camera file")
    assert (tmp_path / "run.yaml").read_text() == cam and not (tmp_path / "run.h5").exists()
    (tmp_path / "other.yaml").write_text("some: notes\n")
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", *CAMERA, "--out", tmp_path / "other.h5")
    one_error_line(proc, "would replace an existing file that napari-smlm did not write")
    assert (tmp_path / "other.yaml").read_text() == "some: notes\n"


def test_output_problems_are_found_before_the_network_pass(sim, tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", *CAMERA, "--out", tmp_path / "dir.csv")
    one_error_line(proc, f"--out {tmp_path / 'dir.csv'}: is a folder; expected a file name")
    assert "model:" not in proc.stdout
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", *CAMERA, "--out", sim / "movie.csv", "--model", sim / "movie.tif")
    assert proc.returncode == 1
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        proc = cli_in_process(capsys, "localize", sim / "movie.tif", *CAMERA, "--out", tmp_path / "ro" / "l.csv")
        one_error_line(proc, "is not writable")
        assert "model:" not in proc.stdout


def test_evaluate_json_to_stdout_and_through_a_symlink(sim, tmp_path, capsys):
    # Our own link to this process's stdout (what /dev/stdout is): a regression that replaced
    # links or pipes replaces only this one, never the system's /dev/stdout (as root it could).
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    proc = run_cli("evaluate", sim / "emitters.csv", sim / "emitters.csv", "--json", stdout)
    start = proc.stdout.index("{")
    metrics = json.loads(proc.stdout[start:proc.stdout.rindex("}") + 1])
    assert metrics["jaccard"] == 1.0 and f"wrote {stdout}" in proc.stderr and stdout.is_symlink()
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    cli_ok(capsys, "evaluate", sim / "emitters.csv", sim / "emitters.csv", "--json", tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink() and json.loads((tmp_path / "real.json").read_text())["tp"] > 0


def test_simulate_failure_between_movie_and_truth_changes_neither(sim, tmp_path, monkeypatch):
    import napari_smlm.core.io as io
    from napari_smlm import cli

    args = ["simulate", "--frames", "5", "--out", str(tmp_path), "--set", "simulation.frame_size=[16,16]"]
    assert cli.main(args) == 0
    movie, truth = (tmp_path / "movie.tif").read_bytes(), (tmp_path / "emitters.csv").read_text()

    def no_space(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_localizations_csv", no_space)
    assert cli.main([*args, "--seed", "7"]) == 1
    assert (tmp_path / "movie.tif").read_bytes() == movie and (tmp_path / "emitters.csv").read_text() == truth


# ----------------------------------------------------------------------------- items 6, 7, 11: inputs


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--baseline", "100", "--e-per-adu", "0"], "--e-per-adu: expected a positive number, got 0.0"),
        (["--baseline", "100", "--e-per-adu", "45", "--qe", "1.5"], "--qe: expected a positive number <= 1, got 1.5"),
        (["--baseline", "100", "--e-per-adu", "45", "--qe", "0"], "--qe: expected a positive number <= 1, got 0.0"),
        (["--baseline", "100", "--e-per-adu", "45", "--em-gain", "0"], "--em-gain: expected a number >= 1, got 0.0"),
        (["--baseline", "100", "--e-per-adu", "45", "--em-gain", "-50"], "--em-gain: expected a number >= 1, got -50.0"),
        ([*CAMERA, "--frames=5"], "--frames 5: expected FIRST:LAST, 1-based and inclusive"),
        ([*CAMERA, "--frames=abc:3"], "--frames abc:3: expected FIRST:LAST"),
        ([*CAMERA, "--frames=10:5"], "--frames 10:5: the first frame (10) is after the last (5)"),
        ([*CAMERA, "--frames=1:50"], "--frames 1:50: the movie has only 20 frames"),
        ([*CAMERA, "--pixel-size", "nan"], "--pixel-size: expected a finite number > 0, got nan"),
        ([*CAMERA, "--threshold", "1.5"], "--threshold: expected a finite number > 0 and <= 1, got 1.5"),
    ],
)
def test_impossible_parameters_stop_before_work_and_keep_the_old_output(sim, tmp_path, capsys, extra, message):
    (tmp_path / "l.csv").write_text("previous result\n")
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", "--out", tmp_path / "l.csv", *extra)
    one_error_line(proc, message)
    assert (tmp_path / "l.csv").read_text() == "previous result\n" and "model:" not in proc.stdout


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty camera file"),
        ("kind: scmos\n", "camera: missing baseline, e_per_adu"),
        ("camera: {kind: emccd, baseline: 100, e_per_adu: 45}\n", "camera: missing em_gain"),
        (b"\x89\xff\xfe binary", "not a text file"),
    ],
)
def test_camera_yaml_must_state_the_camera(sim, tmp_path, capsys, text, message):
    p = tmp_path / "cam.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", "--camera", p, "--out", tmp_path / "l.csv")
    one_error_line(proc, f"{p}:", message)


def test_camera_used_is_printed(sim, tmp_path, capsys):
    (tmp_path / "cam.yaml").write_text("kind: emccd\nbaseline: 100\ne_per_adu: 45\nem_gain: 100\n")
    out = cli_ok(capsys, "localize", sim / "movie.tif", "--camera", tmp_path / "cam.yaml", "--out", tmp_path / "l.csv", "--frames", "1:3").stdout
    assert "camera: emccd, baseline 100 ADU, 45 e-/ADU, EM gain 100, QE 1" in out


def _broken_checkpoints(d):
    from napari_smlm.core.inference.runner import BUNDLED_MODELS

    src = torch.load(BUNDLED_MODELS["default"], weights_only=True)

    def variant(name, change):
        state = {**src, "inference": dict(src["inference"]), "state_dict": dict(src["state_dict"])}
        change(state)
        torch.save(state, d / name)

    first = next(iter(src["state_dict"]))
    variant("nan.pt", lambda s: s["state_dict"].__setitem__(first, s["state_dict"][first] * float("nan")))
    variant("nowindow.pt", lambda s: s["inference"].pop("frame_window"))
    variant("badpx.pt", lambda s: s["inference"].__setitem__("pixel_size_nm", -100.0))
    variant("badthr.pt", lambda s: s["inference"].__setitem__("detection_threshold", 7.0))
    variant("cut.pt", lambda s: s["state_dict"].pop(first))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(d / "pwned"),))

    torch.save({"state_dict": Evil()}, d / "evil.pt")


@pytest.mark.parametrize(
    "name, message",
    [
        ("nan.pt", "the weights hold NaN or infinite values"),
        ("nowindow.pt", "the checkpoint's inference settings lack frame_window"),
        ("badpx.pt", "invalid inference setting pixel_size_nm: expected a positive number of nm, got -100.0"),
        ("badthr.pt", "invalid inference setting detection_threshold: expected a probability in (0, 1], got 7.0"),
        ("cut.pt", "the weights do not fit architecture 'sigma_munet': 1 missing"),
        ("evil.pt", "cannot be read safely: it holds Python objects"),
    ],
)
def test_broken_checkpoints_name_the_file_and_the_cause(sim, tmp_path, capsys, name, message):
    _broken_checkpoints(tmp_path)
    proc = cli_in_process(capsys, "localize", sim / "movie.tif", *CAMERA, "--model", tmp_path / name, "--out", tmp_path / "l.csv")
    line = one_error_line(proc, f"{tmp_path / name}: ", message)
    assert "--pixel-size" not in line and "--threshold" not in line
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "l.csv").exists()


def test_unreadable_frame_in_a_folder_named_before_the_model(sim, tmp_path, capsys):
    movie = tifffile.imread(sim / "movie.tif")
    (tmp_path / "frames").mkdir()
    for i, f in enumerate(movie):
        tifffile.imwrite(tmp_path / "frames" / f"f{i:03d}.tif", f)
    (tmp_path / "frames" / "f013.tif").write_bytes(b"garbage" * 100)
    proc = cli_in_process(capsys, "localize", tmp_path / "frames", *CAMERA, "--out", tmp_path / "l.csv")
    one_error_line(proc, f"{tmp_path / 'frames' / 'f013.tif'}: not a readable TIFF")
    assert "model:" not in proc.stdout


@pytest.mark.parametrize("sig, rc, said", [(signal.SIGINT, 130, "interrupted; no output was written or changed"),
                                            (signal.SIGTERM, 143, "terminated (SIGTERM); no output was written or changed")])
def test_interrupting_localize_is_one_line(sim, tmp_path, sig, rc, said):
    big = np.concatenate([tifffile.imread(sim / "movie.tif")] * 40)  # 800 frames
    tifffile.imwrite(tmp_path / "big.tif", big)
    proc = subprocess.Popen([sys.executable, "-m", "napari_smlm.cli", "localize", str(tmp_path / "big.tif"), *CAMERA,
                             "--out", str(tmp_path / "l.csv"), "--batch-size", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, "model:")
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == rc and "Traceback" not in err, err
    assert said in err and not (tmp_path / "l.csv").exists()


# ----------------------------------------------------------------------------- items 8, 9: evaluate


def _tables(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    gt = {"frame": np.repeat(np.arange(100), 3), "x": rng.uniform(0, 6400, n), "y": rng.uniform(0, 6400, n), "z": np.zeros(n),
          "photons": np.full(n, 1000.0), "bg": np.zeros(n), "prob": np.ones(n)}
    pred = {**gt, "x": gt["x"] + rng.normal(0, 20, n), "y": gt["y"] + rng.normal(0, 20, n)}
    write_localizations_csv(pred, tmp_path / "pred.csv")
    return gt, pred


def test_evaluate_refuses_tables_that_cannot_be_compared(tmp_path, capsys):
    gt, pred = _tables(tmp_path)
    header = "frame,x_nm,y_nm,z_nm\n"
    rows = lambda t, f0, scale=1.0: "".join(  # noqa: E731
        f"{f + f0},{x * scale},{y * scale},0\n" for f, x, y in zip(t["frame"], t["x"], t["y"]))
    # 1. the common x_nm header is read, and the columns used are printed
    (tmp_path / "gt.csv").write_text(header + rows(gt, 1))
    out = cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv").stdout
    assert "columns used: frame <- 'frame', x <- 'x_nm', y <- 'y_nm', z <- 'z_nm'" in out and "Jaccard" in out
    assert float(out.split("Jaccard")[1].split()[0]) == pytest.approx(1.0)
    # 2. ground truth numbered from 0
    (tmp_path / "gt0.csv").write_text(header + rows(gt, 0))
    one_error_line(cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "gt0.csv"),
                   "gt0.csv: row 1: frame 0, but frames in a CSV table are numbered from 1", "--gt-first-frame 0")
    out = cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "gt0.csv", "--gt-first-frame", "0").stdout
    assert float(out.split("Jaccard")[1].split()[0]) == pytest.approx(1.0)
    # ... and one frame apart without a frame 0 to tell: the ±1 shift is detected
    one_error_line(cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv", "--gt-first-frame", "0"),
                   "look one frame apart", "Jaccard index is 0.99", "as numbered only 0.0")
    # 3. µm values under an nm header
    (tmp_path / "um.csv").write_text(header + rows(gt, 1, 1e-3))
    one_error_line(cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "um.csv"),
                   "um.csv span 6.188 in x/y", "µm or camera pixels under an nm header")
    # 4. NaN coordinates
    (tmp_path / "nan.csv").write_text(header + rows(gt, 1) + "5,nan,100,0\n")
    one_error_line(cli_in_process(capsys, "evaluate", tmp_path / "pred.csv", tmp_path / "nan.csv"),
                   "nan.csv: 1 row(s) have a NaN or infinite x (first: row 301)")

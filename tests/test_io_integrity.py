"""Nothing lost, nothing silently wrong: movies read whole or refused, outputs written
whole or not at all, special files and symlinks respected (issue 11, items 1, 3-5, 9, 11)."""

import errno
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from napari_smlm.core.io import MovieError, TableError, open_movie, read_table, write_localizations_csv, write_picasso_hdf5
from napari_smlm.core.utils import WriteError, atomic_write, atomic_write_group


def frames(n=100, h=16, w=16):
    return np.random.default_rng(0).integers(0, 1000, (n, h, w)).astype(np.uint16)


def truncate(path, fraction=2 / 3):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# ----------------------------------------------------------------------------- item 1: every page, or a clear refusal


def test_tiff_written_frame_by_frame_is_read_whole(tmp_path):
    movie = frames()
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for f in movie:
            tw.write(f)  # one single-page series per frame
    m = open_movie(tmp_path / "pages.tif")
    assert m.shape == (100, 16, 16)
    assert np.array_equal(m[0:100], movie) and np.array_equal(m[97:100], movie[97:])


@pytest.mark.parametrize("kind", ["imagej", "shaped", "pages", "zlib"])
def test_truncated_tiff_names_the_file_and_last_frame(tmp_path, kind):
    movie = frames()
    p = tmp_path / f"{kind}.tif"
    if kind == "pages":
        with tifffile.TiffWriter(p) as tw:
            for f in movie:
                tw.write(f)
    else:
        tifffile.imwrite(p, movie, **{"imagej": {"imagej": True}, "shaped": {}, "zlib": {"compression": "zlib"}}[kind])
    truncate(p)
    with pytest.raises(MovieError) as e:
        open_movie(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: truncated file: the last readable frame is ") and "--allow-truncated" in msg
    last = int(msg.split("the last readable frame is ")[1].split()[0].rstrip(";"))
    assert 50 <= last < 100
    m = open_movie(p, allow_truncated=True)
    assert m.shape == (last, 16, 16) and f"localizing frames 1..{last} only" in m.truncated
    assert np.array_equal(m[0:last], movie[:last])


def test_folder_with_one_odd_frame_is_named_before_reading(tmp_path):
    movie = frames(10)
    for i, f in enumerate(movie):
        tifffile.imwrite(tmp_path / f"f{i:03d}.tif", f if i != 6 else f[:15])
    with pytest.raises(MovieError, match=r"f006.tif: frame of shape \(15, 16\) and type uint16 differs from the folder's first frame f000.tif"):
        open_movie(tmp_path)
    (tmp_path / "f006.tif").write_bytes(b"garbage, not a tiff")
    with pytest.raises(MovieError, match=r"f006.tif: not a readable TIFF"):
        open_movie(tmp_path)


# ----------------------------------------------------------------------------- items 3-4: pairs written whole


def test_group_write_failure_leaves_every_old_file(tmp_path):
    a, b = tmp_path / "movie.tif", tmp_path / "emitters.csv"
    a.write_text("old movie")
    b.write_text("old truth")

    def full_disk(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"emitters.csv: cannot write \(No space left on device\)"):
        atomic_write_group({a: lambda tmp: open(tmp, "w").write("new movie"), b: full_disk})
    assert a.read_text() == "old movie" and b.read_text() == "old truth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emitters.csv", "movie.tif"]  # no temporaries left
    atomic_write_group({a: lambda tmp: open(tmp, "w").write("new movie"), b: lambda tmp: open(tmp, "w").write("new truth")})
    assert a.read_text() == "new movie" and b.read_text() == "new truth"


def test_picasso_pair_never_half_new_and_never_replaces_a_foreign_yaml(tmp_path, monkeypatch):
    t = {"frame": np.arange(4), "x": np.full(4, 500.0), "y": np.full(4, 700.0), "z": np.zeros(4),
         "photons": np.ones(4), "bg": np.ones(4), "prob": np.ones(4)}
    write_picasso_hdf5(t, tmp_path / "l.h5", 100.0, movie_shape=(4, 16, 16))
    old_h5, old_yaml = (tmp_path / "l.h5").read_bytes(), (tmp_path / "l.yaml").read_text()
    import h5py

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py, "File", no_space)
    with pytest.raises(WriteError, match="l.h5: cannot write"):
        write_picasso_hdf5(t, tmp_path / "l.h5", 160.0, movie_shape=(4, 16, 16))
    monkeypatch.undo()
    # The sidecar still says 100 nm: the old table keeps its coordinates.
    assert (tmp_path / "l.yaml").read_text() == old_yaml and (tmp_path / "l.h5").read_bytes() == old_h5
    assert read_table(tmp_path / "l.h5")["x"] == pytest.approx(np.full(4, 500.0), abs=0.01)
    # A YAML we did not write (a camera file) is never replaced.
    camera = "kind: emccd\nbaseline: 100\ne_per_adu: 45\nem_gain: 100\n"
    (tmp_path / "cam.yaml").write_text(camera)
    with pytest.raises(TableError, match=r"cam.h5: its Picasso sidecar .*cam.yaml would replace an existing file"):
        write_picasso_hdf5(t, tmp_path / "cam.h5", 100.0)
    assert (tmp_path / "cam.yaml").read_text() == camera and not (tmp_path / "cam.h5").exists()
    # Our own sidecar is ours to replace.
    write_picasso_hdf5(t, tmp_path / "l.h5", 160.0, movie_shape=(4, 16, 16))
    assert list(yaml.safe_load_all((tmp_path / "l.yaml").read_text()))[1]["Pixelsize"] == 160.0


# ----------------------------------------------------------------------------- item 5: what the user pointed at


@pytest.mark.skipif(os.name != "posix", reason="POSIX process ids")
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves a writer no chance to remove its temporary: the next write of the
    same file on this machine removes it (its PID is gone), and leaves alone those of live
    processes, of other machines, of other files and files it did not name."""
    import signal
    import subprocess
    import sys

    from napari_smlm.core.utils import _HOST

    out = tmp_path / "locs.csv"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from napari_smlm.core.utils import StagedFiles\n"
        "staged = StagedFiles([sys.argv[1]])\n"
        "open(staged[sys.argv[1]], 'w').write('half a table')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"), str(out)])
    assert writer.wait() == -signal.SIGKILL
    (left,) = tmp_path.glob(".locs.csv.*.tmp")
    assert left.name.startswith(f".locs.csv.{writer.pid}@{_HOST}.")
    keep = [tmp_path / f".locs.csv.{os.getpid()}@{_HOST}.abc123.tmp",  # a live process (this one)
            tmp_path / f".locs.csv.{writer.pid}@otherhost.abc123.tmp",  # another machine's
            tmp_path / f".other.csv.{writer.pid}@{_HOST}.abc123.tmp",  # another file's
            tmp_path / ".locs.csv.abc123.tmp"]  # not named by us
    for k in keep:
        k.write_text("x")
    atomic_write(out, lambda tmp: Path(tmp).write_text("frame,x [nm],y [nm]\n1,100,200\n"))
    assert not left.exists() and all(k.exists() for k in keep)
    assert out.read_text() == "frame,x [nm],y [nm]\n1,100,200\n"


def test_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    atomic_write(fifo, lambda tmp: open(tmp, "w").write("metrics"))
    reader.join(5)
    assert got == ["metrics"] and fifo.is_fifo()


def test_symlink_target_is_replaced_not_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "l.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    t = {"frame": np.arange(2), "x": np.ones(2), "y": np.ones(2), "z": np.zeros(2), "photons": np.ones(2),
         "bg": np.ones(2), "prob": np.ones(2)}
    write_localizations_csv(t, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("id,frame,x [nm]")


def test_full_device_is_an_error_naming_it(tmp_path):
    """A device that is always full (like /dev/full). Made in tmp_path: a regression
    that replaced device nodes must not replace the system's /dev/full (as root it could)."""
    full = tmp_path / "full"
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # the kernel's "full" device
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here (not root)")
    with pytest.raises(WriteError, match=rf"{full}: cannot write \(No space left on device\)"):
        atomic_write(full, lambda tmp: Path(tmp).write_text("x" * 10000))
    assert full.is_char_device()  # still the device node


# ----------------------------------------------------------------------------- items 8-9: tables read as meant


@pytest.mark.parametrize("header", ["x_nm,y_nm,z_nm", "x [nm],y [nm],z [nm]", "x (nm),y (nm),z (nm)", "xnano,ynano,znano",
                                    '"X_nm","Y_nm","Z_nm"'])
def test_ground_truth_coordinate_spellings(tmp_path, header):
    (tmp_path / "gt.csv").write_text(f"frame,{header}\n1,1000.5,2000,-50\n3,1500,2500,50\n")
    columns = {}
    gt = read_table(tmp_path / "gt.csv", columns=columns)
    assert gt["frame"].tolist() == [0, 2] and gt["x"].tolist() == [1000.5, 1500.0] and gt["z"].tolist() == [-50.0, 50.0]
    assert columns["x"] == header.split(",")[0].strip('"')


def test_micrometre_and_pixel_columns_are_converted(tmp_path):
    (tmp_path / "um.csv").write_text("frame,x [um],y [um]\n1,1.5,2.0\n")
    assert read_table(tmp_path / "um.csv")["x"].tolist() == [1500.0]
    (tmp_path / "px.csv").write_text("frame,x_px,y_px\n1,1.5,2.0\n")
    with pytest.raises(TableError, match="column 'x_px' is in camera pixels; give the pixel size in nm"):
        read_table(tmp_path / "px.csv")
    assert read_table(tmp_path / "px.csv", pixel_size_nm=100)["x"].tolist() == [150.0]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("1,100,200\n2,nan,300\n", r"bad.csv: 1 row\(s\) have a NaN or infinite x \(first: row 2\)"),
        ("1,100,200\n2,200,inf\n", r"bad.csv: 1 row\(s\) have a NaN or infinite y"),
        ("1,100,200\n2.5,200,300\n", r"bad.csv: row 2: frame 2.5 is not a whole number"),
        ("1,100,200\n0,200,300\n", r"bad.csv: row 2: frame 0, but frames in a CSV table are numbered from 1"),
        ("-3,100,200\n", r"bad.csv: row 1: frame -3"),
    ],
)
def test_impossible_table_values_are_refused(tmp_path, rows, message):
    (tmp_path / "bad.csv").write_text("frame,x [nm],y [nm]\n" + rows)
    with pytest.raises(TableError, match=message):
        read_table(tmp_path / "bad.csv")


def test_zero_based_table_when_said_so(tmp_path):
    (tmp_path / "gt.csv").write_text("frame,x_nm,y_nm\n0,100,200\n4,200,300\n")
    assert read_table(tmp_path / "gt.csv", first_frame=0)["frame"].tolist() == [0, 4]


def test_unit_check_spares_a_few_localizations_in_one_corner():
    from napari_smlm.core.evaluation import EvaluationError, check_comparable

    rng = np.random.default_rng(0)
    gt = {"frame": np.arange(200) % 20, "x": rng.uniform(0, 6400, 200), "y": rng.uniform(0, 6400, 200), "z": np.zeros(200)}
    corner = {"frame": np.arange(12) % 3, "x": rng.uniform(3000, 3100, 12), "y": rng.uniform(3000, 3100, 12), "z": np.zeros(12)}
    check_comparable(corner, gt, frame_check=False)  # small extent, same magnitude: nm both
    micro = {**gt, "x": gt["x"] / 1000, "y": gt["y"] / 1000}
    with pytest.raises(EvaluationError, match="a factor 1000 apart"):
        check_comparable(micro, gt, frame_check=False)
    check_comparable(micro, gt, frame_check=False, unit_check=False)


def test_a_2d_table_written_without_z_reads_back(tmp_path):
    """Our writer leaves z empty (NaN) for a table without z; reading it back gives z = 0."""
    from napari_smlm.core.io import read_table, write_table

    write_table({"frame": np.array([0, 1]), "x": np.array([10.0, 20.0]), "y": np.array([5.0, 6.0])}, tmp_path / "t.csv")
    t = read_table(tmp_path / "t.csv")
    assert t["z"].tolist() == [0.0, 0.0] and t["x"].tolist() == [10.0, 20.0]

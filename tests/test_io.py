import h5py
import numpy as np
import pytest
import tifffile
import yaml

from napari_smlm.core.io import MovieError, TableError, open_movie, read_table, write_localizations_csv, write_picasso_hdf5, write_table


def table(n=5, sigma=True):
    rng = np.random.default_rng(0)
    t = {"frame": np.arange(n) % 3, "x": rng.uniform(0, 6400, n), "y": rng.uniform(0, 6400, n), "z": rng.uniform(-300, 300, n),
         "photons": rng.uniform(500, 5000, n), "bg": rng.uniform(10, 100, n), "prob": rng.uniform(0.5, 1, n)}
    if sigma:
        t.update(sigma_x=rng.uniform(5, 20, n), sigma_y=rng.uniform(5, 20, n), sigma_z=rng.uniform(20, 50, n), sigma_photons=rng.uniform(10, 50, n))
    return t


def test_csv_round_trip_and_header(tmp_path):
    t = table()
    write_localizations_csv(t, tmp_path / "l.csv")
    lines = (tmp_path / "l.csv").read_text().splitlines()
    assert lines[0].startswith("id,frame,x [nm],y [nm],z [nm],intensity [photon],offset [photon],uncertainty_xy [nm],uncertainty_z [nm],prob")
    assert lines[1].split(",")[1] == "1"  # frames 1-based in CSV
    back = read_table(tmp_path / "l.csv")
    for k in ("frame", "x", "y", "z", "photons", "bg", "prob", "sigma_x", "sigma_y", "sigma_z"):
        assert np.allclose(back[k], t[k], rtol=1e-5), k


def test_picasso_round_trip_and_convention(tmp_path):
    t = table()
    write_picasso_hdf5(t, tmp_path / "l.h5", 100.0, movie_shape=(3, 64, 64))
    with h5py.File(tmp_path / "l.h5") as f:
        locs = f["locs"][...]
    assert locs["frame"].dtype == np.uint32
    assert np.allclose(locs["x"], t["x"] / 100.0 - 0.5, atol=1e-4)  # pixel centres at integers
    info = list(yaml.safe_load_all((tmp_path / "l.yaml").read_text()))
    assert info[0]["Frames"] == 3 and info[0]["Width"] == 64 and info[0]["Height"] == 64
    back = read_table(tmp_path / "l.h5")  # pixel size from the sidecar
    for k in ("frame", "x", "y", "photons", "prob", "sigma_x"):
        assert np.allclose(back[k], t[k], rtol=1e-4, atol=1e-2), k


def test_picasso_load_locs_reads_our_file(tmp_path):
    io = pytest.importorskip("picasso.io", reason="picassosr is not installed (optional: pip install picassosr)")
    write_picasso_hdf5(table(), tmp_path / "l.h5", 100.0, movie_shape=(3, 64, 64))
    locs, info = io.load_locs(str(tmp_path / "l.h5"))
    assert len(locs) == 5 and info[0]["Frames"] == 3


def test_other_table_formats(tmp_path):
    (tmp_path / "ts.csv").write_text('"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]","bkgstd [photon]","uncertainty [nm]"\n'
                                     "1,1,100.5,200.5,120,1000,10,3,12\n2,4,300,400,130,2000,12,3,8\n")
    ts = read_table(tmp_path / "ts.csv")
    assert ts["frame"].tolist() == [0, 3] and ts["x"].tolist() == [100.5, 300.0] and ts["sigma_x"].tolist() == [12.0, 8.0]
    (tmp_path / "gt.csv").write_text("Ground-truth,frame,xnano,ynano,znano,intensity\n1,1,1000,2000,-50,3000\n2,2,1500,2500,50,4000\n")
    gt = read_table(tmp_path / "gt.csv")
    assert gt["frame"].tolist() == [0, 1] and gt["z"].tolist() == [-50.0, 50.0] and gt["photons"].tolist() == [3000.0, 4000.0]
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["image"] = np.zeros((8, 8))
        f["positions"] = np.array([[100.0, 200.0, 0.0]])
        f["photons"] = np.array([1000.0])
    tr = read_table(tmp_path / "train.h5")
    assert tr["x"].tolist() == [100.0] and tr["frame"].tolist() == [0]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(TableError, match=r"bad.csv: missing column\(s\) \['frame', 'x', 'y'\]"):
        read_table(tmp_path / "bad.csv")
    with pytest.raises(TableError, match="unknown table format '.txt'"):
        (tmp_path / "l.txt").write_text("")
        read_table(tmp_path / "l.txt")
    with pytest.raises(TableError, match="unknown output format"):
        write_table(table(), tmp_path / "l.xlsx")


def test_movies_of_every_layout(tmp_path):
    data = (np.arange(5 * 16 * 20) % 1000).reshape(5, 16, 20).astype(np.uint16)
    tifffile.imwrite(tmp_path / "multi.tif", data)
    tifffile.imwrite(tmp_path / "big.tif", data, bigtiff=True)
    tifffile.imwrite(tmp_path / "ome.ome.tif", data, ome=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "zlib.tif", data, compression="zlib")
    (tmp_path / "folder").mkdir()
    for i in range(5):
        tifffile.imwrite(tmp_path / "folder" / f"f{i:03d}.tif", data[i])
    for name in ("multi.tif", "big.tif", "ome.ome.tif", "zlib.tif", "folder"):
        m = open_movie(tmp_path / name)
        assert m.shape == (5, 16, 20) and len(m) == 5, name
        assert np.array_equal(m[1:4], data[1:4]), name
    tifffile.imwrite(tmp_path / "single.tif", data[0])
    assert open_movie(tmp_path / "single.tif").shape == (1, 16, 20)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: tifffile.imwrite(p, np.zeros((16, 16, 3), np.uint8), photometric="rgb"), "got shape (16, 16, 3)"),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 3, 16, 16), np.uint16), photometric="minisblack"), "expected a single frame (Y, X) or a stack (T, Y, X), got shape (2, 3, 16, 16)"),
        (lambda p: p.write_text("hello"), "not a readable TIFF"),
    ],
)
def test_bad_movies_are_rejected(tmp_path, make, message):
    p = tmp_path / "bad.tif"
    make(p)
    with pytest.raises(MovieError) as e:
        open_movie(p)
    assert message in str(e.value) and "bad.tif" in str(e.value)
    with pytest.raises(MovieError, match="movie file not found"):
        open_movie(tmp_path / "missing.tif")

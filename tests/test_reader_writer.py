import numpy as np
import pytest
import tifffile

from napari_smlm._io import get_reader, write_points
from napari_smlm._layers import points_to_table, render_layer_kwargs, table_to_points
from napari_smlm.core.io import read_table, write_localizations_csv


def test_pixel_centre_convention_round_trip():
    table = {"frame": np.array([0, 3]), "x": np.array([50.0, 1234.0]), "y": np.array([150.0, 10.0]), "prob": np.array([0.9, 0.6])}
    data, features = table_to_points(table, 100.0)
    # x = 50 nm is the centre of pixel column 0, which napari draws at index 0.
    assert data[0].tolist() == [0.0, 1.0, 0.0]
    back = points_to_table(data, features, 100.0)
    assert np.allclose(back["x"], table["x"]) and np.allclose(back["y"], table["y"]) and back["frame"].tolist() == [0, 3]
    kw = render_layer_kwargs(10.0, 100.0)
    # render pixel 0 (0-10 nm) has its centre at 5 nm = camera index 5/100 - 0.5
    assert np.allclose(kw["translate"], (-0.45, -0.45)) and np.allclose(kw["scale"], (0.1, 0.1))


def test_reader_movies_and_tables(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.ones((3, 16, 16), np.uint16))
    (layer,) = get_reader(str(tmp_path / "m.tif"))(str(tmp_path / "m.tif"))
    assert layer[2] == "image" and layer[0].shape == (3, 16, 16)
    assert layer[1]["metadata"]["camera_metadata"] == {}  # nothing stated
    assert layer[1]["axis_labels"] == ("frame", "y", "x")
    tifffile.imwrite(tmp_path / "ij.tif", np.ones((5, 16, 16), np.uint16), imagej=True, resolution=(10.0, 10.0),
                     metadata={"unit": "um", "axes": "TYX"})
    (layer,) = get_reader(str(tmp_path / "ij.tif"))(str(tmp_path / "ij.tif"))
    assert layer[1]["metadata"]["camera_metadata"] == {"pixel_size_nm": pytest.approx(100.0), "source": "ImageJ"}
    write_localizations_csv({"frame": np.array([0, 1]), "x": np.array([150.0, 250.0]), "y": np.array([50.0, 50.0]),
                             "z": np.zeros(2), "photons": np.ones(2), "bg": np.ones(2), "prob": np.array([0.7, 0.9])}, tmp_path / "l.csv")
    (layer,) = get_reader(str(tmp_path / "l.csv"))(str(tmp_path / "l.csv"))
    assert layer[2] == "points" and layer[0].tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 2.0]]
    assert layer[1]["features"]["prob"].tolist() == [0.7, 0.9]
    assert layer[1]["face_color"] == "prob"  # 2D: coloured by probability
    write_localizations_csv({"frame": np.array([0, 1]), "x": np.array([150.0, 250.0]), "y": np.array([50.0, 50.0]),
                             "z": np.array([-300.0, 250.0]), "photons": np.ones(2), "bg": np.ones(2),
                             "prob": np.array([0.7, 0.9])}, tmp_path / "l3.csv")
    (layer,) = get_reader(str(tmp_path / "l3.csv"))(str(tmp_path / "l3.csv"))
    assert layer[1]["face_color"] == "z" and layer[1]["face_contrast_limits"] == (-300.0, 250.0)
    (tmp_path / "other.csv").write_text("name,value\na,1\n")
    assert get_reader(str(tmp_path / "other.csv")) is None
    assert get_reader(str(tmp_path / "x.png")) is None


@pytest.mark.parametrize("ext", [".csv", ".h5"])
def test_writer_keeps_features_and_writes_shown_points(tmp_path, ext):
    table = {"frame": np.array([0, 0, 1]), "x": np.array([150.0, 250.0, 350.0]), "y": np.array([50.0, 60.0, 70.0]),
             "z": np.zeros(3), "photons": np.array([1000.0, 2000.0, 3000.0]), "bg": np.full(3, 50.0),
             "prob": np.array([0.9, 0.3, 0.8]), "sigma_x": np.full(3, 10.0), "sigma_y": np.full(3, 12.0)}
    data, features = table_to_points(table, 100.0)
    path = str(tmp_path / f"out{ext}")
    write_points(path, data, {"features": features, "shown": features["prob"] >= 0.5, "metadata": {"pixel_size_nm": 100.0}})
    back = read_table(path, pixel_size_nm=100.0)
    assert back["photons"].tolist() == [1000.0, 3000.0] and np.allclose(back["x"], [150.0, 350.0])
    assert np.allclose(back["sigma_y"], 12.0, rtol=1e-4)

"""Camera settings and pixel size read from a TIFF's own metadata, and used by localize."""

import json

import numpy as np
import pytest
import tifffile

from napari_smlm.core.camera import camera_for_movie
from napari_smlm.core.config import load_config
from napari_smlm.core.io.metadata import read_movie_metadata
from napari_smlm.core.simulation import Simulator

OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
<Instrument ID="Instrument:0"><Detector ID="Detector:0" Type="{kind}"/></Instrument>
<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="{w}" SizeY="{h}" SizeZ="1"
 SizeC="1" SizeT="{t}" PhysicalSizeX="0.16" PhysicalSizeXUnit="&#181;m" BigEndian="false">
<Channel ID="Channel:0:0" SamplesPerPixel="1"><DetectorSettings ID="Detector:0" Gain="{gain}"{offset}/></Channel>
<TiffData IFD="0" PlaneCount="{t}"/></Pixels></Image></OME>"""


def write_ome(path, data, kind="EMCCD", gain=300, offset=None):
    xml = OME.format(kind=kind, gain=gain, t=data.shape[0], h=data.shape[1], w=data.shape[2],
                     offset="" if offset is None else f' Offset="{offset}"')
    tifffile.imwrite(path, data, description=xml.encode(), metadata=None)


OME_TWO_CAMERAS = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
<Instrument ID="Instrument:0"><Detector ID="Detector:0" Type="EMCCD"/><Detector ID="Detector:1" Type="CMOS"/></Instrument>
<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="{w}" SizeY="{h}" SizeZ="1"
 SizeC="2" SizeT="{t}" PhysicalSizeX="0.1" PhysicalSizeXUnit="&#181;m" BigEndian="false">
<Channel ID="Channel:0:0" SamplesPerPixel="1"><DetectorSettings ID="Detector:0" Gain="300" Offset="400"/></Channel>
<Channel ID="Channel:0:1" SamplesPerPixel="1"><DetectorSettings ID="Detector:1" Offset="100"/></Channel>
<TiffData IFD="0" PlaneCount="{n}"/></Pixels></Image></OME>"""


def test_each_channel_of_an_ome_file_has_its_own_camera(tmp_path):
    """A two-camera acquisition (an EMCCD on channel 1, an sCMOS on channel 2): each
    channel's movie is read with its own detector's settings."""
    from napari_smlm._io import get_reader
    from napari_smlm.core.io import open_movie

    d = np.random.default_rng(0).poisson(100, (6, 2, 16, 16)).astype(np.uint16)
    xml = OME_TWO_CAMERAS.format(t=6, h=16, w=16, n=12)
    tifffile.imwrite(tmp_path / "two.ome.tif", d, description=xml.encode(), metadata=None)
    assert np.array_equal(open_movie(tmp_path / "two.ome.tif", channel=1)[:], d[:, 1])
    first = read_movie_metadata(tmp_path / "two.ome.tif", channel=0)
    second = read_movie_metadata(tmp_path / "two.ome.tif", channel=1)
    assert first == {"pixel_size_nm": pytest.approx(100.0), "kind": "emccd", "em_gain": 300.0, "baseline": 400.0,
                     "source": "OME-XML"}
    assert second == {"pixel_size_nm": pytest.approx(100.0), "kind": "scmos", "baseline": 100.0, "source": "OME-XML"}
    layers = get_reader(str(tmp_path / "two.ome.tif"))(str(tmp_path / "two.ome.tif"))
    assert [kw["metadata"]["camera_metadata"]["kind"] for _, kw, _ in layers] == ["emccd", "scmos"]


@pytest.fixture(scope="module")
def emccd_movie():
    cfg = load_config(None, ["simulation.emitters.density_per_um2=[0.5,0.5]", "simulation.camera.em_gain=300",
                             "simulation.camera.e_per_adu=12", "simulation.camera.baseline=400",
                             "simulation.emitters.background=[40,40]"])
    sim = Simulator(cfg.simulation, seed=3)
    chunks, _, _ = sim.simulate_movie(120)
    return np.concatenate([c.numpy() for c in chunks]).astype(np.uint16), sim.camera


def test_each_kind_of_metadata(tmp_path):
    d = np.random.default_rng(0).poisson(100, (5, 32, 32)).astype(np.uint16)  # 5 frames: tifffile would take 3 or 4 as colour planes
    tifffile.imwrite(tmp_path / "ij.tif", d, imagej=True, resolution=(1 / 0.108, 1 / 0.108),
                     metadata={"unit": "um", "axes": "TYX"})
    assert read_movie_metadata(tmp_path / "ij.tif") == {"pixel_size_nm": pytest.approx(108.0), "source": "ImageJ"}
    write_ome(tmp_path / "ome.tif", d, offset=400)
    assert read_movie_metadata(tmp_path / "ome.tif") == {"pixel_size_nm": pytest.approx(160.0), "kind": "emccd",
                                                         "em_gain": 300.0, "baseline": 400.0, "source": "OME-XML"}
    with tifffile.TiffWriter(tmp_path / "mm.tif") as tw:
        tw.write(d, metadata=None, extratags=[(51123, "s", 0, json.dumps({"PixelSizeUm": 0.1, "Andor-EMGain": "150"}), True)])
    assert read_movie_metadata(tmp_path / "mm.tif") == {"pixel_size_nm": pytest.approx(100.0), "em_gain": 150.0,
                                                        "kind": "emccd", "source": "Micro-Manager"}
    tifffile.imwrite(tmp_path / "plain.tif", d)  # tifffile's own shape description: nothing to read
    assert read_movie_metadata(tmp_path / "plain.tif") == {}
    (tmp_path / "garbage.tif").write_bytes(b"garbage")  # the movie reader reports it, not this
    assert read_movie_metadata(tmp_path / "garbage.tif") == {}


def test_partial_metadata_fixes_what_it_states(emccd_movie):
    movie, cam = emccd_movie
    meta = {"kind": "emccd", "em_gain": 300.0, "source": "OME-XML"}
    est, report = camera_for_movie(movie, meta)
    assert report["kind"] == "emccd" and report["kind_reason"] == "the file's OME-XML metadata"
    assert est.em_gain == 300.0 and est.e_per_adu == pytest.approx(12.0, rel=0.1)  # gain from the noise, EM gain stated
    assert "em_gain, kind from the file's OME-XML metadata" in report["source"]
    full = {**meta, "baseline": 400.0, "e_per_adu": 12.0, "qe": 0.9}
    est, report = camera_for_movie(movie, full)
    assert report["method"] == "file metadata" and (est.baseline, est.e_per_adu, est.qe) == (400.0, 12.0, 0.9)
    est, report = camera_for_movie(movie, full, kind="emccd", baseline=390.0)  # the user's word first
    assert report["method"] != "file metadata" and est.baseline == 390.0


def test_localize_uses_the_files_pixel_size_and_camera(emccd_movie, tmp_path):
    from napari_smlm.core.localize import localize

    movie, cam = emccd_movie
    write_ome(tmp_path / "m.tif", movie[:30], gain=300)
    lines = []
    res = localize(tmp_path / "m.tif", camera="estimate", log=lines.append)
    assert res.pixel_size_nm == pytest.approx(160.0)
    assert any("pixel size 160 nm from the file's OME-XML metadata" in s for s in lines), lines
    assert res.camera.em_gain == 300.0 and res.camera_report["kind_reason"] == "the file's OME-XML metadata"
    res = localize(tmp_path / "m.tif", camera="estimate", pixel_size_nm=100.0, log=lines.append)
    assert res.pixel_size_nm == 100.0  # the user's value wins

"""3D evaluation (axial bias/RMSE, 3D efficiency, errors against z) and 3D rendering
(z slabs, colour by z, z stacks), in the core and on the command line (issue 12)."""

import json

import matplotlib
import numpy as np
import pytest
import tifffile

from napari_smlm.core.evaluation import efficiency, evaluate, save_plots
from napari_smlm.core.evaluation.metrics import errors_by_z, z_varies
from napari_smlm.core.io import write_localizations_csv
from napari_smlm.core.render import render, render_volume, render_z_color, select_z

from .conftest import run_cli


def truth_3d(n=2000, seed=0):
    """n molecules, 4 per frame, 6.4 µm field, z uniform in ±600 nm."""
    rng = np.random.default_rng(seed)
    return {"frame": np.repeat(np.arange(n // 4), 4), "x": rng.uniform(0, 6400, n), "y": rng.uniform(0, 6400, n),
            "z": rng.uniform(-600, 600, n), "photons": np.full(n, 2000.0)}


def noisy(gt, sigma_xy=10.0, sigma_z=40.0, z_offset=30.0, seed=1):
    rng = np.random.default_rng(seed)
    n = len(gt["x"])
    pred = {k: np.array(v, float if k != "frame" else int, copy=True) for k, v in gt.items()}
    pred["x"] += rng.normal(0, sigma_xy, n)
    pred["y"] += rng.normal(0, sigma_xy, n)
    pred["z"] += z_offset + rng.normal(0, sigma_z, n)
    pred["prob"] = np.ones(n)
    return pred


def test_axial_bias_and_rmse_with_a_known_offset_and_noise():
    gt = truth_3d()
    pred = noisy(gt)
    m, match = evaluate(pred, gt)
    assert m["is_3d"] and m["tolerance_z_nm"] == 500.0  # the default for 3D ground truth
    assert (m["tp"], m["fp"], m["fn"]) == (2000, 0, 0) and m["jaccard"] == 1.0
    dz = pred["z"] - gt["z"]
    dxy2 = (pred["x"] - gt["x"]) ** 2 + (pred["y"] - gt["y"]) ** 2
    # exactly the sample's numbers (every molecule matched to its own)
    assert m["bias_z"] == pytest.approx(dz.mean(), rel=1e-9)
    assert m["rmse_ax"] == pytest.approx(np.sqrt(np.mean(dz**2)), rel=1e-9)
    assert m["rmse_lat"] == pytest.approx(np.sqrt(dxy2.mean()), rel=1e-9)
    assert m["rmse_vol"] == pytest.approx(np.sqrt(np.mean(dxy2 + dz**2)), rel=1e-9)
    # and close to what was put in: bias 30 nm (± 0.9 nm s.e.), RMSE sqrt(30² + 40²) = 50 nm, √2·10 nm lateral
    assert m["bias_z"] == pytest.approx(30.0, abs=3.0)
    assert m["rmse_ax"] == pytest.approx(50.0, abs=2.0)
    assert m["rmse_lat"] == pytest.approx(np.sqrt(2) * 10.0, abs=0.6)
    assert abs(m["bias_x"]) < 1.0 and abs(m["bias_y"]) < 1.0


def test_3d_efficiency_is_the_challenge_definition():
    gt = truth_3d(800)
    pred = noisy(gt)
    keep = np.arange(800) % 10 != 0  # 10 % missed: Jaccard 0.9
    pred = {k: v[keep] for k, v in pred.items()}
    m, _ = evaluate(pred, gt)
    assert m["jaccard"] == pytest.approx(0.9)
    # SMLM Challenge 2016: E = 100 − sqrt((100 − 100·J)² + α²·RMSE²), α = 1 /nm lateral, 0.5 /nm axial
    e_lat = 100 - np.sqrt(10.0**2 + (1.0 * m["rmse_lat"]) ** 2)
    e_ax = 100 - np.sqrt(10.0**2 + (0.5 * m["rmse_ax"]) ** 2)
    assert m["efficiency_lat"] == pytest.approx(e_lat) and m["efficiency_ax"] == pytest.approx(e_ax)
    assert m["efficiency_3d"] == m["efficiency"] == pytest.approx(0.5 * (e_lat + e_ax))
    assert efficiency(0.9, 20.0, 0.5) == pytest.approx(100 - np.sqrt(200.0))


def test_axial_tolerance_500_nm_for_3d_truth_and_none_for_2d():
    gt = {"frame": np.array([0, 0]), "x": np.array([1000.0, 3000.0]), "y": np.array([1000.0, 1000.0]),
          "z": np.array([-300.0, 300.0])}
    pred = {"frame": np.array([0, 0]), "x": np.array([1010.0, 3010.0]), "y": np.array([1000.0, 1000.0]),
            "z": np.array([-300.0 + 499.0, 300.0 - 501.0]), "prob": np.ones(2)}
    m, match = evaluate(pred, gt, check=False)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1) and list(match.gt_index) == [0]  # 501 nm off: not matched
    m, _ = evaluate(pred, gt, tolerance_z_nm=1000.0, check=False)
    assert m["tp"] == 2
    # 2D ground truth (every z the same): matched laterally whatever the predicted z
    flat = {**gt, "z": np.zeros(2)}
    m, _ = evaluate({**pred, "z": np.array([700.0, -900.0])}, flat, check=False)
    assert not m["is_3d"] and m["tp"] == 2 and np.isinf(m["tolerance_z_nm"])
    assert m["efficiency"] == m["efficiency_lat"] and m["by_z"] == []
    assert not z_varies(flat) and not z_varies({"x": np.ones(3)}) and z_varies(gt)


def test_errors_by_z_per_bin():
    # four bins of 100 nm over true z in [-200, 200): in each, 10 molecules at the bin's centre
    n_per = 10
    centres = np.array([-150.0, -50.0, 50.0, 150.0])
    z = np.repeat(centres, n_per)
    n = len(z)
    gt = {"frame": np.arange(n), "x": np.full(n, 1000.0), "y": np.full(n, 1000.0), "z": z}
    pred = {k: np.array(v, float, copy=True) for k, v in gt.items()}
    pred["frame"] = gt["frame"].copy()
    bin_of = np.repeat(np.arange(4), n_per)
    pred["z"] += np.where(bin_of == 0, 80.0, 0.0)  # the lowest bin: +80 nm off
    pred["x"] += np.where(bin_of == 1, 30.0, 0.0)  # the second: 30 nm off laterally
    pred["prob"] = np.ones(n)
    keep = ~((bin_of == 3) & (np.arange(n) % 2 == 0))  # the highest: half missed
    pred = {k: v[keep] for k, v in pred.items()}
    m, match = evaluate(pred, gt, check=False)
    rows = m["by_z"]
    assert [(r["z_lo"], r["z_hi"]) for r in rows] == [(-200, -100), (-100, 0), (0, 100), (100, 200)]
    assert [r["n_gt"] for r in rows] == [10, 10, 10, 10] and [r["tp"] for r in rows] == [10, 10, 10, 5]
    assert [r["recall"] for r in rows] == [1.0, 1.0, 1.0, 0.5]
    assert [r["bias_z"] for r in rows] == pytest.approx([80.0, 0, 0, 0])
    assert [r["rmse_ax"] for r in rows] == pytest.approx([80.0, 0, 0, 0])
    assert [r["rmse_lat"] for r in rows] == pytest.approx([0, 30.0, 0, 0])
    # other bin widths; a bin without ground truth has NaN errors
    wide = errors_by_z(pred, gt, match, bin_nm=200.0)
    assert [(r["z_lo"], r["n_gt"], r["tp"]) for r in wide] == [(-200, 20, 20), (0, 20, 15)]
    assert wide[0]["bias_z"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="bin_nm"):
        errors_by_z(pred, gt, match, bin_nm=0)


def test_save_plots_draws_errors_against_z_for_3d_only(tmp_path):
    gt = truth_3d(400)
    pred = noisy(gt)
    m, match = evaluate(pred, gt)
    files = save_plots(pred, gt, match, tmp_path / "3d")
    assert [f.name for f in files] == ["pr_curve.png", "error_histograms.png", "errors_vs_z.png"]
    assert (tmp_path / "3d" / "errors_vs_z.png").stat().st_size > 5000
    flat = {**gt, "z": np.zeros(400)}
    m, match = evaluate({**pred, "z": np.zeros(400)}, flat)
    assert [f.name for f in save_plots(pred, flat, match, tmp_path / "2d")] == ["pr_curve.png", "error_histograms.png"]


def _write(table, path):
    n = len(table["x"])
    write_localizations_csv({"photons": np.full(n, 1000.0), "bg": np.zeros(n), "prob": np.ones(n), **table}, path)


def test_evaluate_cli_prints_bias_z_and_the_per_z_table(tmp_path):
    gt = truth_3d(400)
    pred = noisy(gt, z_offset=-60.0, sigma_z=5.0)
    _write(gt, tmp_path / "gt.csv")
    _write(pred, tmp_path / "pred.csv")
    out = run_cli("evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv", "--json", tmp_path / "m.json",
                  "--plots", tmp_path / "plots", "--z-bin-nm", 200).stdout
    assert "500 nm axial" in out and "3D ground truth" in out
    line = next(s for s in out.splitlines() if "bias x / y / z" in s)
    assert float(line.split("/")[-1]) == pytest.approx(-60.0, abs=1.5)
    assert "errors against the true z (200 nm bins" in out
    table = out.split("errors against the true z")[1].splitlines()[2:]
    assert len([s for s in table if "–" in s]) == 6  # -600…600 nm in 200 nm bins
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["is_3d"] and len(metrics["by_z"]) == 6 and metrics["bias_z"] == pytest.approx(-60.0, abs=1.5)
    assert (tmp_path / "plots" / "errors_vs_z.png").is_file()
    # 2D ground truth: no axial limit, no per-z table
    _write({**gt, "z": np.zeros(400)}, tmp_path / "gt2d.csv")
    out = run_cli("evaluate", tmp_path / "pred.csv", tmp_path / "gt2d.csv").stdout
    assert "no axial limit" in out and "2D ground truth" in out and "errors against the true z" not in out


# ------------------------------------------------------------------ rendering
def slab_table():
    """Five localizations, each alone in its own 10 nm render pixel, z from -500 to 500 nm."""
    return {"x": np.array([15.0, 35.0, 55.0, 75.0, 95.0]), "y": np.full(5, 25.0),
            "z": np.array([-500.0, -250.0, 0.0, 250.0, 500.0]), "frame": np.zeros(5, int),
            "sigma_x": np.full(5, 10.0), "sigma_y": np.full(5, 10.0)}


def test_render_z_range_keeps_exactly_the_slab():
    t = slab_table()
    full = render(t, 10.0, blur="histogram")
    assert full.shape == (4, 11) and full.sum() == 5
    part = render(t, 10.0, blur="histogram", z_range_nm=(-250.0, 0.0))  # bounds included
    assert part.shape == full.shape  # the field of the whole table
    assert list(np.argwhere(part)[:, 1]) == [3, 5] and part.sum() == 2
    assert render(t, 10.0, blur="histogram", z_range_nm=(-249.0, -1.0)).sum() == 0
    g = render(t, 10.0, z_range_nm=(400.0, 600.0), shape_nm=(100.0, 200.0))
    assert g.sum() == pytest.approx(1.0, rel=0.01) and divmod(int(g.argmax()), 20) == (2, 9)
    kept = select_z({**t, "photons": np.arange(5.0)}, (0.0, 500.0))
    assert list(kept["z"]) == [0.0, 250.0, 500.0] and list(kept["photons"]) == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="LO <= HI"):
        select_z(t, (1.0, -1.0))


def test_colour_by_z_low_colour_at_minus_500_high_at_plus_500():
    t = slab_table()
    cmap = matplotlib.colormaps["rainbow"]
    rgb, limits = render_z_color(t, 10.0, blur="histogram")
    assert limits == (-500.0, 500.0) and rgb.shape == (4, 11, 3) and rgb.dtype == np.float32
    # one localization per pixel: full brightness, its own colour
    for j, frac in ((1, 0.0), (3, 0.25), (5, 0.5), (7, 0.75), (9, 1.0)):
        np.testing.assert_allclose(rgb[2, j], cmap(frac)[:3], atol=1e-5, err_msg=f"pixel {j}")
    assert rgb[0].max() == 0 and rgb[:, 0].max() == 0  # nothing where there is no localization
    # another colour map; a colour range wider than the data
    rgb, limits = render_z_color(t, 10.0, blur="histogram", colormap="viridis", z_limits_nm=(-1000.0, 1000.0))
    np.testing.assert_allclose(rgb[2, 1], matplotlib.colormaps["viridis"](0.25)[:3], atol=1e-5)
    # blurred: the hue at the molecule is still its own, the slab keeps only its molecules
    rgb, limits = render_z_color(t, 10.0, z_range_nm=(400.0, 500.0), shape_nm=(50.0, 200.0))
    assert limits == (400.0, 500.0)
    peak = rgb[2, 9]
    np.testing.assert_allclose(peak / peak.max(), np.array(cmap(1.0)[:3]) / max(cmap(1.0)[:3]), atol=1e-3)
    assert rgb[:, :5].max() == 0.0
    # two molecules in one pixel: the mean of their colours
    two = {"x": np.array([15.0, 15.0]), "y": np.array([5.0, 5.0]), "z": np.array([-500.0, 500.0])}
    rgb, _ = render_z_color(two, 10.0, blur="histogram")
    np.testing.assert_allclose(rgb[0, 1], 0.5 * (np.array(cmap(0.0)[:3]) + cmap(1.0)[:3]), atol=1e-5)


def test_colour_by_z_of_2d_data_is_one_colour():
    t = {**slab_table(), "z": np.zeros(5)}
    rgb, limits = render_z_color(t, 10.0, blur="histogram")
    assert limits == (-0.5, 0.5)
    mid = matplotlib.colormaps["rainbow"](0.5)[:3]
    for j in (1, 3, 5, 7, 9):
        np.testing.assert_allclose(rgb[2, j], mid, atol=1e-5)


def test_render_volume_slices():
    t = slab_table()
    volume, edges = render_volume(t, 10.0, 250.0, blur="histogram")
    assert list(edges) == [-500.0, -250.0, 0.0, 250.0, 500.0, 750.0]
    assert volume.shape == (5, 4, 11) and volume.sum() == 5
    for k, j in enumerate((1, 3, 5, 7, 9)):
        assert volume[k, 2, j] == 1.0 and volume[k].sum() == 1.0
    volume, edges = render_volume(t, 10.0, 100.0, z_range_nm=(-100.0, 100.0), blur="histogram")
    assert edges[0] == -100.0 and volume.sum() == 1 and volume[np.searchsorted(edges, 0.0, "right") - 1, 2, 5] == 1


def test_render_cli_colour_by_z_slab_and_volume(tmp_path):
    t = slab_table()
    _write(t, tmp_path / "l.csv")
    out = run_cli("render", tmp_path / "l.csv", "--pixel-size-nm", 10, "--blur", "histogram", "--color-by", "z",
                  "--out", tmp_path / "z.tif").stdout
    assert "coloured by z: rainbow from -500 nm to 500 nm" in out
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.RGB and page.dtype == np.uint8 and page.shape == (4, 11, 3)
        meta = json.loads(page.description)
        assert meta["color_by"] == "z" and meta["z_limits_nm"] == [-500.0, 500.0] and meta["spacing_nm"] == 10.0
        rgb = page.asarray()
    cmap = matplotlib.colormaps["rainbow"]
    np.testing.assert_allclose(rgb[2, 1], np.round(np.array(cmap(0.0)[:3]) * 255), atol=1)
    np.testing.assert_allclose(rgb[2, 9], np.round(np.array(cmap(1.0)[:3]) * 255), atol=1)
    assert (tmp_path / "z_colorbar.png").stat().st_size > 1000
    # a slab of the plain density: the same field, two molecules
    out = run_cli("render", tmp_path / "l.csv", "--pixel-size-nm", 10, "--blur", "histogram", "--z-range", -300, 0,
                  "--out", tmp_path / "slab.tif").stdout
    assert "rendered 2 localizations with z in [-300, 0] nm" in out
    slab = tifffile.imread(tmp_path / "slab.tif")
    assert slab.dtype == np.float32 and slab.shape == (4, 11) and slab.sum() == 2
    # a z stack, readable as an ImageJ hyperstack with its voxel size
    run_cli("render", tmp_path / "l.csv", "--pixel-size-nm", 10, "--blur", "histogram", "--volume-z-bin", 250,
            "--out", tmp_path / "v.tif")
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        volume = tif.asarray()
        assert volume.shape == (5, 4, 11) and volume.sum() == 5
        assert tif.imagej_metadata["spacing"] == 250.0 and tif.imagej_metadata["unit"] == "nm"
    # bad input: one clear message, non-zero exit
    for args, text in ((("--z-range", 5, -5), "--z-range"), (("--color-by", "z", "--volume-z-bin", 100), "choose one"),
                       (("--color-by", "z", "--colormap", "nonsense"), "--colormap")):
        proc = run_cli("render", tmp_path / "l.csv", "--out", tmp_path / "bad.tif", *args, check=False)
        assert proc.returncode != 0 and text in proc.stderr, proc.stderr

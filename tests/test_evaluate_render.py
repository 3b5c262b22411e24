import json

import numpy as np
import pytest
import tifffile

from napari_smlm.core.evaluation import efficiency, evaluate, match
from napari_smlm.core.io import write_localizations_csv
from napari_smlm.core.render import render

from .conftest import run_cli


def gt_and_pred():
    gt = {"frame": np.array([0, 0, 0, 1, 1]), "x": np.array([1000.0, 2000.0, 3000.0, 1000.0, 1100.0]),
          "y": np.array([1000.0, 1000.0, 1000.0, 500.0, 500.0]), "z": np.zeros(5), "photons": np.full(5, 1000.0)}
    pred = {"frame": np.array([0, 0, 1, 1, 2]), "x": np.array([1030.0, 2000.0, 1090.0, 1010.0, 50.0]),
            "y": np.array([1040.0, 1000.0, 500.0, 500.0, 50.0]), "z": np.zeros(5),
            "photons": np.array([1100.0, 900.0, 1000.0, 1000.0, 10.0]), "prob": np.array([0.9, 0.8, 0.7, 0.6, 0.5])}
    return gt, pred


def test_matching_and_metrics_by_hand():
    gt, pred = gt_and_pred()
    m, r = evaluate(pred, gt, tolerance_nm=250)
    # frame 0: (1030,1040)-(1000,1000) 50 nm, (2000,1000) exact; frame 1: optimal pairs 1010->1000, 1090->1100; frame 2: FP
    assert (m["tp"], m["fp"], m["fn"]) == (4, 1, 1)
    assert m["jaccard"] == pytest.approx(4 / 6) and m["precision"] == pytest.approx(0.8) and m["recall"] == pytest.approx(0.8)
    assert m["rmse_lat"] == pytest.approx(np.sqrt((50**2 + 0 + 10**2 + 10**2) / 4))
    assert m["bias_x"] == pytest.approx((30 + 0 + 10 - 10) / 4)
    assert m["efficiency_lat"] == pytest.approx(100 - np.sqrt((100 / 3) ** 2 + m["rmse_lat"] ** 2))
    assert efficiency(1.0, 0.0, 1.0) == 100.0
    # AP: the FP has the lowest probability, so precision is 1 until recall 0.8.
    assert m["average_precision"] == pytest.approx(0.8)
    # A tight tolerance drops the 50 nm pair.
    assert len(match(pred, gt, tolerance_nm=30).pred_index) == 3


@pytest.mark.parametrize("tolerance_z", [np.inf, 300.0])
def test_a_crowded_large_frame_is_matched_in_groups_with_the_same_optimum(tolerance_z):
    """A frame of thousands of molecules (a 2048x2048 field) is matched group by group
    (pairs within the tolerance connect a group): the pairs of one whole Hungarian problem."""
    from napari_smlm.core.evaluation import matching

    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 20000, (1000, 2))  # clusters of three: crowded groups, near ties
    pred = np.column_stack([np.repeat(centres, 3, 0)[:2900] + rng.normal(0, 150, (2900, 2)), rng.normal(0, 300, 2900)])
    truth = np.column_stack([np.repeat(centres, 3, 0) + rng.normal(0, 150, (3000, 2)), rng.normal(0, 300, 3000)])
    assert len(pred) * len(truth) > matching.DENSE_PAIRS  # the grouped path
    whole = matching._match_dense(pred, truth, 250.0, tolerance_z)
    grouped = matching.match_frame(pred, truth, 250.0, tolerance_z)
    assert len(whole[0]) > 1500
    assert set(zip(*grouped)) == set(zip(*whole))


def test_evaluate_cli_json_and_plots(tmp_path):
    gt, pred = gt_and_pred()
    write_localizations_csv(gt | {"prob": np.ones(5), "bg": np.zeros(5)}, tmp_path / "gt.csv")
    write_localizations_csv(pred | {"bg": np.zeros(5)}, tmp_path / "pred.csv")
    out = run_cli("evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv", "--json", tmp_path / "m.json", "--plots", tmp_path / "plots").stdout
    assert "Jaccard" in out and "0.6667" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["tp"] == 4
    assert (tmp_path / "plots" / "pr_curve.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "error_histograms.png").stat().st_size > 1000


def _field(rng, frames=60, per_frame=30, size_nm=10240.0, noise_nm=15.0):
    """Ground truth spread over a field counted from its corner, and localizations of it."""
    n = frames * per_frame
    gt = {"frame": np.repeat(np.arange(1, frames + 1), per_frame), "x": rng.uniform(0, size_nm, n),
          "y": rng.uniform(0, size_nm, n), "z": np.zeros(n)}
    pred = {**gt, "x": gt["x"] + rng.normal(0, noise_nm, n), "y": gt["y"] + rng.normal(0, noise_nm, n),
            "prob": np.ones(n)}
    return gt, pred


def test_a_table_made_with_the_wrong_pixel_size_is_told_by_how_much():
    """A 160 nm camera localized as 100 nm: every position 1.6x too small, almost
    nothing matches; evaluate says so and by how much (issue 10: a TIFF that does not
    state its pixel size)."""
    from napari_smlm.core.evaluation.metrics import scale_hint, scale_hint_message

    gt, pred = _field(np.random.default_rng(3))
    wrong = {**pred, "x": pred["x"] / 1.6, "y": pred["y"] / 1.6}
    m, _ = evaluate(wrong, gt)
    assert m["jaccard"] < 0.2
    hint = m["scale_hint"]
    assert hint is not None and hint["factor"] == pytest.approx(1.6, rel=0.003)
    assert hint["jaccard"] > 0.95 and hint["jaccard_as_is"] < 0.2 and hint["frames"] == 50
    text = scale_hint_message(hint, 100.0, option="--pixel-size")
    assert "1.60× smaller" in text and "--pixel-size 160 nm" in text
    # 8 % too large (a 108 nm camera as 100 nm, the other way round) is found as well
    big = evaluate({**pred, "x": pred["x"] * 1.08, "y": pred["y"] * 1.08}, gt)[0]["scale_hint"]
    assert big is not None and big["factor"] == pytest.approx(1 / 1.08, rel=0.003)
    assert "1.08× larger" in scale_hint_message(big)
    # right scale: nothing to say, even where few match for other reasons
    assert evaluate(pred, gt)[0]["scale_hint"] is None
    assert scale_hint(pred, gt) is None
    # localizations of part of the field (a crop) are not a pixel-size mistake
    part = pred["x"] < 5000
    crop = {k: v[part] for k, v in pred.items()}
    assert scale_hint(crop, gt) is None
    # nor are tables whose scales differ but whose positions do not match rescaled
    rng = np.random.default_rng(4)
    shuffled = {**wrong, "x": rng.permutation(wrong["x"]), "y": rng.permutation(wrong["y"])}
    assert scale_hint(shuffled, gt) is None


def test_evaluate_cli_warns_of_a_pixel_size_mistake(tmp_path):
    gt, pred = _field(np.random.default_rng(5))
    write_localizations_csv(gt | {"prob": np.ones(len(gt["x"])), "bg": np.zeros(len(gt["x"]))}, tmp_path / "gt.csv")
    small = pred | {"x": pred["x"] / 1.6, "y": pred["y"] / 1.6, "bg": np.zeros(len(gt["x"]))}
    write_localizations_csv(small, tmp_path / "pred.csv")
    err = run_cli("evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv").stderr
    assert "warning: few localizations match" in err and "--pixel-size 1.60 × the pixel size" in err
    write_localizations_csv(pred | {"bg": np.zeros(len(gt["x"]))}, tmp_path / "pred.csv")
    assert "warning" not in run_cli("evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv").stderr


def test_render_histogram_and_gaussian(tmp_path):
    t = {"x": np.array([15.0, 15.0, 95.0]), "y": np.array([25.0, 25.0, 5.0]), "sigma_x": np.full(3, 20.0), "sigma_y": np.full(3, 20.0)}
    h = render(t, 10.0, shape_nm=(100, 100), blur="histogram")
    assert h.shape == (10, 10) and h[2, 1] == 2 and h[0, 9] == 1 and h.sum() == 3
    t2 = {"x": np.array([75.0, 75.0, 150.0]), "y": np.array([85.0, 85.0, 40.0]), "sigma_x": np.full(3, 20.0), "sigma_y": np.full(3, 20.0)}
    g = render(t2, 10.0, shape_nm=(200, 200), blur="gaussian")
    assert g.sum() == pytest.approx(3, rel=0.01)  # blurring keeps the counts
    assert divmod(int(g.argmax()), 20) == (8, 7) and g[8, 7] < 2  # spread out, around the molecule's pixel
    write_localizations_csv({"frame": np.zeros(3, int), **t, "z": np.zeros(3), "photons": np.ones(3), "bg": np.ones(3), "prob": np.ones(3)}, tmp_path / "l.csv")
    run_cli("render", tmp_path / "l.csv", "--pixel-size-nm", 5, "--out", tmp_path / "r.tif")
    img = tifffile.imread(tmp_path / "r.tif")
    assert img.dtype == np.float32 and img.shape == (6, 20)

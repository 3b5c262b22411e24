import numpy as np
import pytest
import torch

from napari_smlm.core.config import LossConfig, LossTermConfig, ScalingConfig, load_config
from napari_smlm.core.inference import Infer, LocalizationModel
from napari_smlm.core.camera import Camera
from napari_smlm.core.losses import build_loss
from napari_smlm.core.models import build_model
from napari_smlm.core.models.multiscale import VectorQuantizer
from napari_smlm.core.targets import condition_maps, targets_at_scale
from napari_smlm.core.training import Trainer

from .conftest import CONFIGS

TINY_MS = dict(frame_window=3, base_channels=8, embed_dim=16, num_heads=2, num_layers=1, window=8)


def batch():
    return {"x_px": torch.tensor([[2.3, 9.9]]), "y_px": torch.tensor([[5.7, 1.05]]), "z_nm": torch.zeros(1, 2),
            "photons": torch.tensor([[2000.0, 1000.0]]), "mask": torch.tensor([[True, True]]),
            "background": torch.full((1, 16, 16), 50.0), "frames": torch.rand(1, 3, 16, 16) * 100}


@pytest.mark.parametrize("use_vq", [False, True])
def test_multiscale_shapes_at_every_scale(use_vq):
    m = build_model("multiscale_var", **TINY_MS, use_vq=use_vq, codebook_size=16, embedding_dim=8)
    x = torch.rand(2, 3, 20, 28)  # not multiples of the window: padded, cropped
    out = m.forward_scales(x)
    assert {s: tuple(v.shape) for s, v in out["scales"].items()} == {
        1: (2, 6, 20, 28), 2: (2, 6, 40, 56), 4: (2, 6, 80, 112), 8: (2, 6, 160, 224)}
    assert m(x).shape == (2, 6, 160, 224) and m.output_scale == 8
    assert ("vq_loss" in out) == use_vq
    assert torch.sigmoid(m(x)[:, 0]).max() < 0.05  # low initial detection probability


def test_vq_straight_through_gradient():
    vq = VectorQuantizer(codebook_size=8, embedding_dim=4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    q, loss, index = vq(z)
    assert torch.allclose(q, vq.codebook(index).permute(0, 3, 1, 2), atol=1e-6)  # forward: the codebook vectors
    (q * torch.arange(4.0).view(1, 4, 1, 1)).sum().backward()
    # backward: gradient passes straight through to z, as if q were z
    assert torch.allclose(z.grad, torch.arange(4.0).view(1, 4, 1, 1).expand_as(z))
    loss.backward()
    assert vq.codebook.weight.grad is not None and torch.isfinite(vq.codebook.weight.grad).all()


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_targets_place_emitters_in_the_right_cell(scale):
    t = targets_at_scale(batch(), (16, 16), ScalingConfig(), scale)
    assert t["p"].shape == (1, 16 * scale, 16 * scale) and t["p"].sum() == 2
    for x, y in ((2.3, 5.7), (9.9, 1.05)):
        r, c = int(y * scale), int(x * scale)
        assert t["p"][0, r, c] == 1
        assert t["x"][0, r, c] == pytest.approx(x * scale - (c + 0.5), abs=1e-4)
        assert t["y"][0, r, c] == pytest.approx(y * scale - (r + 0.5), abs=1e-4)
    assert t["bg"].shape == t["p"].shape
    maps = condition_maps(batch(), (16, 16), ScalingConfig(), [1, 2])
    assert [tuple(m.shape) for m in maps] == [(1, 6, 16, 16), (1, 6, 32, 32)]


def test_multiscale_loss_finite_under_extreme_inputs_and_progressive():
    m = build_model("multiscale_var", **TINY_MS, use_vq=True, codebook_size=16, embedding_dim=8)
    loss = build_loss(LossConfig(terms=[LossTermConfig(name="multiscale", kwargs={"warmup_epochs": 3})]), m.output_channels, ScalingConfig())
    term = loss.terms[0]
    b = batch()
    out = m.forward_scales(b["frames"] / 100, condition_maps(b, (16, 16), ScalingConfig(), m.scales[:-1]))
    for value in (-1e4, 0.0, 1e4):
        extreme = {"scales": {s: v.detach().clone().fill_(value).requires_grad_(True) for s, v in out["scales"].items()},
                   "vq_loss": out["vq_loss"], "recon": out["recon"]}
        total, _ = loss(extreme, b)
        total.backward(retain_graph=True)
        assert torch.isfinite(total), value
        assert all(torch.isfinite(v.grad).all() for v in extreme["scales"].values() if v.grad is not None)
    loss.set_epoch(0)
    assert term.active_scales() == [1]
    loss.set_epoch(2)
    assert term.active_scales() == [1, 2, 4]
    loss.set_epoch(3)
    assert term.active_scales() == [1, 2, 4, 8]
    with pytest.raises(ValueError, match="eps: expected >= 1e-4"):
        build_loss(LossConfig(terms=[LossTermConfig(name="multiscale", kwargs={"eps": 1e-6})]), m.output_channels, ScalingConfig())


@pytest.mark.parametrize("fusion, inputs, k", [("concat", "centre_context", 3), ("attention", "centre_context", 1), ("concat", "channels", 2)])
def test_fusion_unet_shapes_and_losses(fusion, inputs, k):
    m = build_model("fusion_unet", frame_window=k, initial_features=8, fusion=fusion, inputs=inputs)
    out = m(torch.rand(2, k, 20, 30))
    assert out.shape == (2, 10, 20, 30)
    for name, kwargs in (("focal", {}), ("dice", {}), ("ppxyzb", {"detection": "focal"}), ("gaussian_mm", {})):
        loss = build_loss(LossConfig(terms=[LossTermConfig(name=name, kwargs=kwargs)]), m.output_channels, ScalingConfig())
        b = {**batch(), "frames": torch.rand(1, k, 16, 16)}
        total, _ = loss(m(b["frames"]), b)
        assert torch.isfinite(total)
    with pytest.raises(ValueError, match="'channels' reads a two-channel movie"):
        build_model("fusion_unet", frame_window=3, inputs="channels")


@pytest.mark.parametrize("arch, kwargs, terms", [
    ("multiscale_var", "{base_channels: 8, embed_dim: 16, num_heads: 2, num_layers: 1, scales: [2, 4]}", "[{name: multiscale, kwargs: {scales: [1, 2, 4]}}]"),
    ("fusion_unet", "{initial_features: 8, depth: 1}", "[{name: ppxyzb, kwargs: {detection: dice}}]"),
])
def test_new_architectures_train_and_localize(tmp_path, tiny_overrides, arch, kwargs, terms):
    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, f"model.architecture={arch}", f"model.kwargs={kwargs}",
                                              f"loss.terms={terms}", "training.epochs=1"])
    Trainer(cfg).fit()
    lm = LocalizationModel.load(tmp_path / "run" / "last.pt")
    movie = np.random.default_rng(0).poisson(60, (4, 24, 24)).astype(np.float32)
    table = Infer(lm, device="cpu", batch_size=2).run(movie, camera=None, min_prob=0.0)
    assert len(table["x"]) > 0 and (table["x"] >= 0).all() and (table["x"] < 2400).all()


def test_multiscale_tiled_equals_untiled():
    torch.manual_seed(0)
    m = build_model("multiscale_var", **TINY_MS, scales=[2]).eval()
    lm = LocalizationModel(model=m, frame_window=3, scaling=ScalingConfig(), pixel_size_nm=100.0, camera=Camera())
    movie = torch.rand(1, 3, 64, 64) * 100
    whole = Infer(lm, device="cpu", tile_size=None).predict_maps(movie)
    tiled = Infer(lm, device="cpu", tile_size=16).predict_maps(movie)
    assert whole.shape == (1, 6, 128, 128)
    assert torch.allclose(tiled, whole, atol=1e-4), (tiled - whole).abs().max()


TINY_MSM = dict(frame_window=3, depth_shared=1, depth_union=1, initial_features=8, inter_features=8, fine_features=8)


@pytest.mark.parametrize("fine_mode", ["upsample", "shuffle"])
def test_multiscale_munet_scales_and_per_frame_blocks(fine_mode):
    torch.manual_seed(0)
    m = build_model("multiscale_munet", **TINY_MSM, fine_mode=fine_mode)
    x = torch.rand(2, 3, 18, 22)  # not a multiple of the stride: padded, cropped
    out = m(x)  # training mode: both grids, for the losses
    assert {s: tuple(v.shape) for s, v in out["scales"].items()} == {1: (2, 10, 18, 22), 2: (2, 10, 36, 44)}
    fine = out["scales"][2]
    # the fine grid's background is the camera grid's, repeated over each pixel's 2x2 cells
    assert torch.equal(fine[:, 9, ::2, ::2], out["scales"][1][:, 9]) and torch.equal(fine[:, 9, 1::2, 1::2], out["scales"][1][:, 9])
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 10, 36, 44) and m.output_scale == 2
        assert torch.sigmoid(m(x)[:, 0]).max() < 0.05  # low initial detection probability on the fine grid
        block, index = torch.rand(5, 18, 22), torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
        assert torch.allclose(m.forward_block(block, index), m(block[index]), atol=1e-5)
    with pytest.raises(ValueError, match="fine_scale: expected 2 or 4, got 3"):
        build_model("multiscale_munet", **TINY_MSM, fine_scale=3)
    with pytest.raises(ValueError, match="fine_mode: expected 'shuffle' or 'upsample', got 'nearest'"):
        build_model("multiscale_munet", **TINY_MSM, fine_mode="nearest")


def test_gaussian_mm_reads_a_fine_grid_in_its_own_cells():
    """On a 2x grid, a molecule at x = 2.3 camera px sits in fine cell 4 at offset +0.1:
    that encoding must score far better than reading the offsets in camera pixels."""
    channels = ("p", "photons", "x", "y", "z", "sigma_photons", "sigma_x", "sigma_y", "sigma_z", "bg")
    loss = build_loss(LossConfig(terms=[LossTermConfig(name="gaussian_mm")]), channels, ScalingConfig())
    b = batch()
    b["background"] = torch.full((1, 16, 16), 50.0)

    def fine_map(cells_per_px):
        out = torch.zeros(1, 10, 32, 32)
        out[:, 0] = -12.0
        out[:, 5:9] = 0.05
        out[:, 1] = 0.1
        out[:, 9] = 50.0 / ScalingConfig().background
        for (x, y), ph in zip(((2.3, 5.7), (9.9, 1.05)), (2000.0, 1000.0)):
            fx, fy = x * cells_per_px, y * cells_per_px
            r, c = int(fy), int(fx)
            out[0, 0, r, c] = 12.0
            out[0, 1, r, c] = ph / ScalingConfig().photons
            out[0, 2, r, c], out[0, 3, r, c] = fx - (c + 0.5), fy - (r + 0.5)
        return out

    right, wrong = loss(fine_map(2), b)[0], loss(fine_map(1), b)[0]
    assert torch.isfinite(right) and right < wrong - 40
    # the same map given as the model's training dict (with its camera grid) adds that grid's loss
    coarse = torch.zeros(1, 10, 16, 16)
    coarse[:, 5:9] = 1.0
    both = loss({"scales": {1: coarse, 2: fine_map(2)}}, b)[0]
    assert both > right
    # post-processing reads the same encoding back: positions and σ's in 50 nm cells
    from napari_smlm.core.inference.postprocess import maps_to_candidates

    t = maps_to_candidates(fine_map(2), channels, ScalingConfig(), 100.0, min_prob=0.5, scale=2)
    order = np.argsort(t["x"])
    assert np.allclose(t["x"][order], [230.0, 990.0], atol=0.5) and np.allclose(t["y"][order], [570.0, 105.0], atol=0.5)
    assert np.allclose(t["sigma_x"], 0.05 * 50.0, atol=1e-3) and np.allclose(t["photons"][order], [2000.0, 1000.0], rtol=1e-3)


def test_multiscale_munet_trains_and_localizes_on_its_fine_grid(tmp_path, tiny_overrides):
    cfg = load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, "model.architecture=multiscale_munet",
                                              "model.kwargs={depth_shared: 1, depth_union: 1, initial_features: 8, inter_features: 8, fine_features: 8}",
                                              "loss.terms=[{name: ppxyzb, until_epoch: 1}, {name: gaussian_mm, start_epoch: 1}]",
                                              "training.epochs=2"])
    trainer = Trainer(cfg)
    trainer.fit()
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in trainer.history)
    lm = LocalizationModel.load(tmp_path / "run" / "last.pt")
    assert lm.model.output_scale == 2
    movie = np.random.default_rng(0).poisson(60, (4, 24, 24)).astype(np.float32)
    table = Infer(lm, device="cpu", batch_size=2).run(movie, camera=None, min_prob=0.0)
    # (two tiny epochs: few cells above the noise floor, maybe none) the fine grid's table, whole
    assert {"frame", "x", "y", "photons", "prob", "sigma_x", "sigma_y"} <= set(table)
    assert len({len(v) for v in table.values()}) == 1
    assert ((table["x"] >= 0) & (table["x"] < 2400)).all() and ((table["frame"] >= 0) & (table["frame"] < 4)).all()


def test_mixture_modes_group_components_by_predicted_position():
    from napari_smlm.core.inference.postprocess import maps_to_candidates

    channels = ("p", "photons", "x", "y", "z", "sigma_photons", "sigma_x", "sigma_y", "sigma_z", "bg")
    out = torch.zeros(1, 10, 16, 16)
    out[:, 0] = -12.0
    out[:, 5:9] = 0.05
    # one molecule at (4.0, 4.0) cells spread over 4 cells, each pointing at it (p 0.3 each)
    for r, c in ((3, 3), (3, 4), (4, 3), (4, 4)):
        out[0, 0, r, c] = float(np.log(0.3 / 0.7))
        out[0, 2, r, c], out[0, 3, r, c] = 4.0 - (c + 0.5), 4.0 - (r + 0.5)
    # two molecules in touching cells (10, 8) and (10, 9) pointing 1.6 cells apart
    for c, tx in ((8, 8.1), (9, 9.7)):
        out[0, 0, 10, c] = 3.0
        out[0, 2, 10, c], out[0, 3, 10, c] = tx - (c + 0.5), 0.0
    t = maps_to_candidates(out, channels, ScalingConfig(), 100.0, min_prob=0.5, scale=2)
    order = np.argsort(t["y"])
    assert len(t["x"]) == 3
    assert np.allclose([t["x"][order][0], t["y"][order][0]], [200.0, 200.0], atol=0.1)  # 4.0 cells of 50 nm
    assert t["prob"][order][0] == pytest.approx(1.0)  # 4 x 0.3, at most 1
    assert sorted(np.round(t["x"][order][1:], 1)) == [405.0, 485.0]

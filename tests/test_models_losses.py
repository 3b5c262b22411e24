import math

import pytest
import torch

from napari_smlm.core.config import LossConfig, LossTermConfig, ScalingConfig
from napari_smlm.core.losses import build_loss
from napari_smlm.core.models import MODEL_REGISTRY, build_model
from napari_smlm.core.targets import pixel_targets

SMALL = dict(initial_features=8)


@pytest.mark.parametrize(
    "name, kwargs, channels",
    [
        ("simple_smlm_net", dict(frame_window=1, with_background=False, **SMALL), 5),
        ("simple_smlm_net", dict(frame_window=1, **SMALL), 6),
        ("double_munet", dict(frame_window=3, inter_features=8, **SMALL), 6),
        ("sigma_munet", dict(frame_window=3, inter_features=8, **SMALL), 10),
        ("fast_net", dict(frame_window=3, features=8, fine_features=4, head_features=8), 10),
    ],
)
def test_model_shapes_padding_and_rebuild(name, kwargs, channels):
    model = build_model(name, **kwargs)
    k = kwargs["frame_window"]
    x = torch.randn(2, k, 30, 37)  # not multiples of the stride: padded, then cropped
    out = model(x)
    assert out.shape == (2, channels, 30, 37) and len(model.output_channels) == channels
    again = build_model(name, **model.init_kwargs)
    again.load_state_dict(model.state_dict())
    assert torch.allclose(again(x), out)
    p = torch.sigmoid(out[:, 0])
    assert p.max() < 0.05  # DECODE's low initial detection probability


def test_fast_net_inference_path_equals_the_training_path():
    """Inference activates the output in place; training through autograd: same maps."""
    torch.manual_seed(0)
    model = build_model("fast_net", frame_window=3, features=8, fine_features=4, head_features=8).eval()
    x = torch.rand(2, 3, 20, 24) * 3
    with torch.no_grad():
        fast = model(x)
    trained = model(x)
    assert trained.requires_grad and not fast.requires_grad
    assert torch.equal(fast, trained.detach())


def test_fast_net_reach_is_within_its_receptive_radius():
    """One bright pixel changes the output only within receptive_radius (the halo
    of tiled inference rests on it), and does change it near that distance."""
    torch.manual_seed(0)
    model = build_model("fast_net", frame_window=3, features=8, fine_features=4, head_features=8).double().eval()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    y = x.clone()
    y[0, 1, 32, 32] += 50.0
    changed = (model(y) - model(x)).abs().amax(dim=(0, 1)) > 1e-12
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max((rows - 32).abs().max().item(), (cols - 32).abs().max().item())
    assert 0.7 * model.receptive_radius <= reach <= model.receptive_radius, (reach, model.receptive_radius)


def test_sigma_channels_bounded_away_from_zero():
    model = build_model("sigma_munet", frame_window=3, inter_features=8, **SMALL)
    out = model(torch.randn(1, 3, 16, 16) * 100)
    sig = out[:, [model.channel(c) for c in ("sigma_x", "sigma_y", "sigma_z", "sigma_photons")]]
    assert sig.min() >= 0.01


def test_unknown_model_and_bad_kwargs():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet")
    with pytest.raises(ValueError, match="model.kwargs: invalid arguments for 'sigma_munet'"):
        build_model("sigma_munet", frame_window=3, depth=7)
    assert {"simple_smlm_net", "double_munet", "sigma_munet"} <= set(MODEL_REGISTRY)


def _batch(b=2, h=16, w=16):
    return {
        "x_px": torch.tensor([[2.3, 7.9], [10.5, 0.0]]),
        "y_px": torch.tensor([[5.7, 1.2], [3.5, 0.0]]),
        "z_nm": torch.tensor([[100.0, -50.0], [0.0, 0.0]]),
        "photons": torch.tensor([[2000.0, 1000.0], [3000.0, 0.0]]),
        "mask": torch.tensor([[True, True], [True, False]]),
        "background": torch.full((b, h, w), 50.0),
    }


def test_pixel_targets_place_emitters_in_the_right_pixel():
    t = pixel_targets(_batch(), (16, 16), ScalingConfig())
    assert t["p"].sum() == 3 and t["p"][0, 5, 2] == 1 and t["p"][0, 1, 7] == 1 and t["p"][1, 3, 10] == 1
    assert t["x"][0, 5, 2] == pytest.approx(-0.2, abs=1e-5) and t["y"][0, 5, 2] == pytest.approx(0.2, abs=1e-5)
    assert t["photons"][1, 3, 10] == pytest.approx(0.3) and t["z"][0, 5, 2] == pytest.approx(0.1)


def _perfect_output(model, batch, scaling=ScalingConfig()):
    t = pixel_targets(batch, (16, 16), scaling)
    out = torch.zeros(2, len(model.output_channels), 16, 16)
    out[:, model.channel("p")] = torch.where(t["p"] > 0, 12.0, -12.0)
    for c in ("x", "y", "z", "photons", "bg"):
        out[:, model.channel(c)] = t[c]
    if "sigma_x" in model.output_channels:
        for c in ("sigma_x", "sigma_y", "sigma_z", "sigma_photons"):
            out[:, model.channel(c)] = 0.05
    return out


@pytest.mark.parametrize("loss_name", ["ppxyzb", "gaussian_mm"])
def test_loss_prefers_the_right_answer(loss_name):
    model = build_model("sigma_munet", frame_window=3, inter_features=8, **SMALL)
    loss = build_loss(LossConfig(terms=[LossTermConfig(name=loss_name)]), model.output_channels, ScalingConfig())
    batch = _batch()
    good = _perfect_output(model, batch)
    bad = good.clone()
    bad[:, model.channel("x")] += 0.4  # every molecule 40 nm off
    assert loss(good, batch)[0] < loss(bad, batch)[0]
    worse = good.clone()
    worse[:, model.channel("p")] = -good[:, model.channel("p")]  # detections inverted
    assert loss(bad, batch)[0] < loss(worse, batch)[0]


def test_gaussian_mm_finite_under_extreme_inputs():
    model = build_model("sigma_munet", frame_window=3, inter_features=8, **SMALL)
    loss = build_loss(LossConfig(terms=[LossTermConfig(name="gaussian_mm")]), model.output_channels, ScalingConfig())
    batch = _batch()
    for p_logit in (-1e4, -50.0, 50.0, 1e4):
        out = _perfect_output(model, batch)
        out[:, model.channel("p")] = p_logit
        for c in ("sigma_x", "sigma_y", "sigma_z", "sigma_photons"):
            out[:, model.channel(c)] = 1e-8  # below the floor
        out.requires_grad_(True)
        total, _ = loss(out, batch)
        total.backward()
        assert torch.isfinite(total) and torch.isfinite(out.grad).all(), p_logit
    # And an empty frame batch.
    empty = {**batch, "mask": torch.zeros_like(batch["mask"])}
    assert torch.isfinite(loss(_perfect_output(model, batch), empty)[0])


def test_mixture_log_likelihood_equals_the_direct_formula():
    """The matrix-product form of the Gaussian-mixture likelihood equals the direct
    (B, M, K, D) computation, values and gradients, also with small sigmas far from
    the frame's origin (where the expanded form could cancel)."""
    from napari_smlm.core.losses.gaussian_mm import mixture_log_likelihood

    g = torch.Generator().manual_seed(0)
    b, m, k = 3, 5, 64
    target = torch.rand(b, m, 4, generator=g, dtype=torch.float64) * torch.tensor([32.0, 32.0, 1.0, 1.0], dtype=torch.float64)
    mu = (torch.rand(b, k, 4, generator=g, dtype=torch.float64) * torch.tensor([32.0, 32.0, 1.0, 1.0], dtype=torch.float64))
    mu[:, :m] = target.detach() + 0.01 * torch.randn(b, m, 4, generator=g, dtype=torch.float64)  # near components
    sigma = 0.01 + torch.rand(b, k, 4, generator=g, dtype=torch.float64) * 2
    logw = torch.log_softmax(torch.randn(b, k, generator=g, dtype=torch.float64), -1)
    for x in (mu, sigma, logw):
        x.requires_grad_(True)

    def direct(t, mu, sigma, logw):
        z = (t.unsqueeze(2) - mu.unsqueeze(1)) / sigma.unsqueeze(1)
        log_comp = -0.5 * (z * z).sum(-1) - torch.log(sigma).sum(-1).unsqueeze(1) - 2 * math.log(2 * math.pi)
        return torch.logsumexp(log_comp + logw.unsqueeze(1), dim=-1)

    ours = mixture_log_likelihood(target.float(), mu.float(), sigma.float(), logw.float())
    ref = direct(target.float().double(), mu, sigma, logw)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-3), (ours - ref).abs().max()
    g_ours = torch.autograd.grad(ours.sum(), (mu, sigma, logw))
    g_ref = torch.autograd.grad(ref.sum(), (mu, sigma, logw))
    for a, r in zip(g_ours, g_ref):
        assert torch.allclose(a, r, rtol=1e-3, atol=1e-3 * r.abs().max()), (a - r).abs().max()


def test_gaussian_mm_needs_sigma_channels():
    model = build_model("double_munet", frame_window=3, inter_features=8, **SMALL)
    with pytest.raises(ValueError, match="'gaussian_mm' needs model outputs"):
        build_loss(LossConfig(terms=[LossTermConfig(name="gaussian_mm")]), model.output_channels, ScalingConfig())


def test_unified_loss_warmup_and_dynamic_weighting():
    model = build_model("sigma_munet", frame_window=3, inter_features=8, **SMALL)
    cfg = LossConfig(terms=[LossTermConfig(name="ppxyzb", weight=2.0), LossTermConfig(name="gaussian_mm", weight=1.0, warmup_epochs=3)])
    loss = build_loss(cfg, model.output_channels, ScalingConfig())
    assert loss.effective_weights() == [2.0, 0.25]
    loss.set_epoch(3)
    assert loss.effective_weights() == [2.0, 1.0]
    batch = _batch()
    out = _perfect_output(model, batch)
    total, parts = loss(out, batch)
    assert set(parts) == {"ppxyzb", "gaussian_mm"}
    assert total.item() == pytest.approx(2 * parts["ppxyzb"].item() + parts["gaussian_mm"].item(), rel=1e-5)

    unc = build_loss(LossConfig(terms=cfg.terms, dynamic_weighting="uncertainty"), model.output_channels, ScalingConfig())
    assert sum(p.numel() for p in unc.parameters()) == 2
    t, _ = unc(out, batch)
    t.backward()
    assert unc.log_vars.grad is not None and torch.isfinite(unc.log_vars.grad).all()

    ratio = build_loss(LossConfig(terms=cfg.terms, dynamic_weighting="loss_ratio"), model.output_channels, ScalingConfig())
    ratio.set_epoch(5)
    t, parts = ratio(out, batch)
    # Each term divided by its own running mean: after the first call each weighted term is ~ weight × mean-normalised 1.
    scale = torch.tensor([1 / abs(parts["ppxyzb"].item()), 1 / abs(parts["gaussian_mm"].item())])
    scale = scale / scale.mean()
    expected = 2 * scale[0] * parts["ppxyzb"] + 1 * scale[1] * parts["gaussian_mm"]
    assert t.item() == pytest.approx(expected.item(), rel=1e-4)


def test_loss_term_schedule_switches_terms():
    model = build_model("sigma_munet", frame_window=3, inter_features=8, **SMALL)
    cfg = LossConfig(terms=[
        LossTermConfig(name="ppxyzb", until_epoch=2),
        LossTermConfig(name="gaussian_mm", start_epoch=2, warmup_epochs=1),
    ])
    loss = build_loss(cfg, model.output_channels, ScalingConfig())
    batch = _batch()
    out = _perfect_output(model, batch)
    weights = []
    for epoch in range(4):
        loss.set_epoch(epoch)
        weights.append(loss.effective_weights())
        total, parts = loss(out, batch)
        assert set(parts) == ({"ppxyzb"} if epoch < 2 else {"gaussian_mm"})
    assert weights == [[1.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 1.0]]


@pytest.mark.parametrize("arch,kwargs", [("sigma_munet", {"depth_shared": 1, "depth_union": 1, "initial_features": 8, "inter_features": 8}),
                                         ("simple_smlm_net", {"frame_window": 3, "depth": 1, "initial_features": 8}),
                                         ("fusion_unet", {"depth": 1, "initial_features": 8})])
def test_fused_inference_heads_equal_the_training_heads(arch, kwargs):
    """Without autograd the heads run as two wide convolutions: same numbers."""
    torch.manual_seed(0)
    model = build_model(arch, **kwargs).eval()
    for p in model.parameters():  # random, not the init's constants (p bias -6)
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fused = model(x)
    with torch.enable_grad():
        plain = model(x)
    assert fused.shape == plain.shape and plain.requires_grad
    torch.testing.assert_close(fused, plain.detach(), rtol=1e-4, atol=1e-5)

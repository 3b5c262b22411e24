import math

import numpy as np
import pytest
import torch

from napari_smlm.core.config import ScalingConfig
from napari_smlm.core.camera import Camera
from napari_smlm.core.inference import Infer, InferenceCancelled, LocalizationModel, non_maximum_suppression, spatial_integration
from napari_smlm.core.inference.postprocess import filter_table, maps_to_candidates
from napari_smlm.core.models import build_model


def small_model(name="sigma_munet", **kw):
    torch.manual_seed(0)
    kwargs = dict(frame_window=3, initial_features=8, inter_features=8) if name != "simple_smlm_net" else dict(frame_window=1, initial_features=8)
    kwargs.update(kw)
    model = build_model(name, **kwargs).eval()
    return LocalizationModel(model=model, frame_window=kwargs["frame_window"], scaling=ScalingConfig(), pixel_size_nm=100.0,
                             camera=Camera())


def test_tiled_equals_untiled_256_as_64():
    lm = small_model()
    movie = torch.rand(2, 3, 256, 256) * 100
    whole = Infer(lm, device="cpu", tile_size=None).predict_maps(movie)
    tiled_infer = Infer(lm, device="cpu", tile_size=64)
    assert len(tiled_infer._tiles(256, 256)) == 16
    tiled = tiled_infer.predict_maps(movie)
    assert torch.allclose(tiled, whole, atol=1e-5, rtol=0), (tiled - whole).abs().max()
    # A halo too small is detectably wrong (so the equality above is not vacuous).
    class SmallHalo(LocalizationModel):
        halo = 4

    bad = Infer(SmallHalo(**{k: getattr(lm, k) for k in ("model", "frame_window", "scaling", "pixel_size_nm", "camera")}),
                device="cpu", tile_size=64)
    assert not torch.allclose(bad.predict_maps(movie), whole, atol=1e-5)


def test_fast_net_tiled_equals_untiled_at_an_odd_frame_size():
    torch.manual_seed(0)
    model = build_model("fast_net", frame_window=3, features=8, fine_features=4, head_features=8).eval()
    lm = LocalizationModel(model=model, frame_window=3, scaling=ScalingConfig(), pixel_size_nm=100.0, camera=Camera())
    movie = torch.rand(2, 3, 150, 131) * 100  # not multiples of the stride or the tile
    whole = Infer(lm, device="cpu", tile_size=None, precision="fp32").predict_maps(movie)
    tiled = Infer(lm, device="cpu", tile_size=48, precision="fp32").predict_maps(movie)
    assert whole.shape == (2, 10, 150, 131)
    assert torch.allclose(tiled, whole, atol=1e-5, rtol=0), (tiled - whole).abs().max()


@pytest.mark.parametrize("name", ["sigma_munet", "simple_smlm_net"])
def test_forward_block_equals_forward_on_windows(name):
    lm = small_model(name)
    k = lm.frame_window
    block = torch.rand(7, 30, 36) * 10
    index = (torch.arange(5).unsqueeze(1) + torch.arange(k)).clamp(max=6)
    with torch.no_grad():
        assert torch.allclose(lm.model.forward_block(block, index), lm.model(block[index]), atol=1e-5)


def test_per_frame_features_are_computed_once_across_batches():
    lm = small_model()
    movie = (np.random.default_rng(1).random((23, 32, 32)) * 100).astype(np.float32)
    seen = []
    hook = lm.model.shared.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        # min_prob 0: every pixel of every map is in the table
        pairs = Infer(lm, device="cpu", batch_size=2, skip_empty=False, precision="fp32").run(movie, camera=None,
                                                                                               min_prob=0.0)
        frames_through_shared = sum(seen)
        seen.clear()
        whole = Infer(lm, device="cpu", batch_size=23, skip_empty=False, precision="fp32").run(movie, camera=None,
                                                                                                min_prob=0.0)
    finally:
        hook.remove()
    # 12 batches of 2 windows need 4 frames each (3 of them at the movie's edges): 45
    # without the cache; with it each of the 23 frames once.
    assert frames_through_shared == 23 and seen == [23]
    assert len(pairs["x"]) == len(whole["x"]) > 0
    for key in ("frame", "x", "y", "z", "photons", "bg", "sigma_x"):
        assert np.allclose(pairs[key], whole[key], atol=1e-4), key


def lift_p(model, block, index, above=0.33):
    """Move the p head's bias so that about ``above`` of the pixels lie above 0.1 (an
    untrained model's p is ~0.0025 everywhere: nothing would be a candidate)."""
    with torch.no_grad():
        logit = model.forward_block(block, index)[:, 0]
        model.heads["p"].net[-1].bias -= torch.quantile(logit, 1 - above) - math.log(0.1 / 0.9)


def test_heads_run_only_where_postprocessing_reads_them():
    lm = small_model()
    model = lm.model
    block = torch.rand(6, 40, 44) * 10
    index = (torch.arange(4).unsqueeze(1) + torch.arange(3)).clamp(max=5)
    lift_p(model, block, index)
    with torch.no_grad():
        dense = model.forward_block(block, index)
        sparse = model.forward_block(block, index, keep_above=0.1)
    # the fused heads (inference) are the heads' modules (training)
    assert torch.allclose(dense, model.forward_block(block, index).detach(), atol=1e-5)
    above = torch.sigmoid(dense[:, 0]) > 0.1
    assert 0.2 < above.float().mean() < 0.5
    assert torch.allclose(sparse[:, 0], dense[:, 0], atol=1e-5)  # one conv or part of the fused one
    on, off = sparse.permute(0, 2, 3, 1)[above], sparse.permute(0, 2, 3, 1)[~above]
    assert torch.allclose(on, dense.permute(0, 2, 3, 1)[above], atol=1e-5)
    assert (off[:, 1:] == 0).all() and not (dense.permute(0, 2, 3, 1)[~above][:, 1:] == 0).all()
    # so run() finds the same molecules with or without them
    movie = block.numpy() * 10
    tables = []
    for sparse_heads in (True, False):
        infer = Infer(lm, device="cpu", skip_empty=False, precision="fp32")
        infer.sparse_heads = sparse_heads
        tables.append(infer.run(movie, camera=None))
    assert len(tables[0]["x"]) == len(tables[1]["x"]) > 100
    for key in tables[0]:
        assert np.allclose(tables[0][key], tables[1][key], atol=1e-4), key


def test_tiled_run_keeps_features_per_tile_and_gives_the_untiled_table():
    lm = small_model(depth_shared=1, depth_union=1)  # a 28-px halo: tiles see different pixels
    movie = (np.random.default_rng(2).random((9, 96, 90)) * 100).astype(np.float32)
    block = torch.from_numpy(movie) / 10
    lift_p(lm.model, block, (torch.arange(7).unsqueeze(1) + torch.arange(3)), above=0.2)
    tiled_infer = Infer(lm, device="cpu", tile_size=32, batch_size=2, skip_empty=False, precision="fp32")
    assert lm.halo == 28 and len(tiled_infer._tiles(96, 90)) == 9
    tiled = tiled_infer.run(movie, camera=None)
    whole = Infer(lm, device="cpu", tile_size=None, batch_size=9, skip_empty=False, precision="fp32").run(movie, camera=None)
    assert len(tiled["x"]) == len(whole["x"]) > 100
    for key in whole:
        assert np.allclose(tiled[key], whole[key], atol=1e-4), key


def test_run_windows_progress_cancel_and_edges():
    lm = small_model()
    movie = (np.random.default_rng(0).random((23, 32, 32)) * 100).astype(np.float32)
    calls = []
    infer = Infer(lm, device="cpu", batch_size=5, skip_empty=False)  # noise: nothing above background
    out = infer.run(movie, camera=None, progress=lambda d, t: calls.append((d, t)), min_prob=0.0)
    assert calls[-1] == (23, 23) and len(calls) == 5
    assert set(np.unique(out["frame"])) <= set(range(23))
    # Frame 0 uses frames (0, 0, 1): the same as predicting on a hand-made window.
    window = torch.from_numpy(movie[[0, 0, 1]])[None]
    maps = infer.predict_maps(window)
    direct = maps_to_candidates(maps, lm.model.output_channels, lm.scaling, 100.0, min_prob=0.0)
    sel = out["frame"] == 0
    assert np.allclose(np.sort(out["x"][sel]), np.sort(direct["x"]), atol=1e-4)
    with pytest.raises(InferenceCancelled, match="cancelled after 5 of 23 frames"):
        infer.run(movie, camera=None, progress=lambda d, t: None, cancel=iter([False, True]).__next__)
    with pytest.raises(ValueError, match="frame 8 holds NaN"):  # frames counted from 1, as the user does
        bad = movie.copy()
        bad[7, 3, 3] = np.nan
        infer.run(bad, camera=None)


def test_out_of_memory_backs_off(monkeypatch):
    lm = small_model()
    infer = Infer(lm, device="cpu", batch_size=8)
    real = infer.predict_block
    sizes = []

    def flaky(block, index, *hints):
        sizes.append(len(index))
        if len(index) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(block, index, *hints)

    monkeypatch.setattr(infer, "predict_block", flaky)
    timings = {}
    movie = np.zeros((10, 16, 16), np.float32)
    infer.run(movie, camera=None, timings=timings)
    assert sizes[:3] == [8, 4, 2] and timings["batch_size"] == 2


def test_auto_batch_respects_memory_budget():
    lm = small_model()
    small = Infer(lm, device="cpu", max_memory_gb=0.05).auto_batch_size(64, 64)
    large = Infer(lm, device="cpu", max_memory_gb=1.0).auto_batch_size(64, 64)
    per = Infer(lm, device="cpu").bytes_per_window(64, 64)
    assert 1 <= small < large and small * per <= 0.05 * 2**30


def test_tiled_frames_go_one_window_a_batch_on_a_cpu():
    """A frame larger than a tile is several tiles of work and whole-frame output maps:
    one window a batch (less memory, and faster: measured at 1024x1024), where small
    frames batch several windows."""
    lm = small_model()
    movie = (np.random.default_rng(0).random((6, 80, 80)) * 100).astype(np.float32)
    for tile, expected in ((32, 1), (None, Infer(lm, device="cpu").auto_batch_size(80, 80))):
        timings = {}
        Infer(lm, device="cpu", tile_size=tile, skip_empty=False).run(movie, camera=None, timings=timings)
        assert timings["batch_size"] == expected
    assert expected >= 2


def test_spatial_integration_counts_split_molecule_once_and_keeps_neighbours():
    p = torch.zeros(1, 9, 9)
    p[0, 2, 2], p[0, 2, 3] = 0.5, 0.45  # one molecule split over two pixels
    p[0, 6, 5], p[0, 6, 6] = 0.9, 0.8  # two molecules in adjacent pixels
    out = spatial_integration(p)
    assert (out[0, 2, 2:4] > 0).sum() == 1 and out[0, 2, 2] == pytest.approx(0.95)
    assert out[0, 6, 5] > 0.5 and out[0, 6, 6] == pytest.approx(0.8)


def test_offsets_and_centroid_refinement_place_molecules():
    channels = ("p", "photons", "x", "y", "z", "bg")
    out = torch.zeros(1, 6, 8, 8)
    out[0, 0] = -10.0
    out[0, 0, 3, 5] = 10.0
    out[0, 2, 3, 5], out[0, 3, 3, 5] = 0.25, -0.1
    t = maps_to_candidates(out, channels, ScalingConfig(), 100.0)
    assert len(t["x"]) == 1 and t["x"][0] == pytest.approx(575.0) and t["y"][0] == pytest.approx(340.0)
    # A model without offset heads: probability-weighted centroid over 3x3.
    p_only = torch.full((1, 2, 8, 8), -10.0)
    p_only[0, 0, 3, 5], p_only[0, 0, 3, 6] = 10.0, 0.0  # p = 1 and 0.5 to the right
    t = maps_to_candidates(p_only, ("p", "photons"), ScalingConfig(), 100.0)
    assert t["x"][0] == pytest.approx((5.5 + 0.5 / 1.5) * 100, abs=0.5)


def test_neighbours_that_agree_pool_their_predictions_and_neighbours_that_differ_do_not():
    """A molecule at x = 5.9 px, y = 3.5 px: the pixel it is in and its right-hand neighbour both see it and
    predict 5.8 and 6.1 (p 0.9 and 0.55, so 5.91 pooled; z 100 and 200 nm, 138 pooled). Two molecules in
    adjacent pixels (predictions a pixel apart) keep their own positions."""
    channels = ("p", "photons", "x", "y", "z", "bg")
    logit = lambda q: float(np.log(q / (1 - q)))  # noqa: E731
    out = torch.zeros(1, 6, 12, 12)
    out[0, 0] = -10.0
    out[0, 0, 3, 5], out[0, 0, 3, 6] = logit(0.9), logit(0.55)
    out[0, 2, 3, 5], out[0, 2, 3, 6] = 0.3, -0.4  # 5.5 + 0.3 = 5.8, 6.5 - 0.4 = 6.1
    out[0, 4, 3, 5], out[0, 4, 3, 6] = 0.1, 0.2  # z in units of scaling.z_nm (1000 nm)
    out[0, 0, 8, 5], out[0, 0, 8, 6] = logit(0.9), logit(0.8)  # two molecules: 5.6 and 6.6 px
    out[0, 2, 8, 5], out[0, 2, 8, 6] = 0.1, 0.1
    t = maps_to_candidates(out, channels, ScalingConfig(), 100.0)
    one = np.flatnonzero(np.abs(t["y"] - 350.0) < 1)
    assert len(one) == 1
    assert t["x"][one[0]] == pytest.approx(100 * (0.9 * 5.8 + 0.55 * 6.1) / 1.45, abs=0.01)
    assert t["z"][one[0]] == pytest.approx(1000 * (0.9 * 0.1 + 0.55 * 0.2) / 1.45, abs=0.01)
    two = np.sort(t["x"][np.abs(t["y"] - 850.0) < 1])
    assert two == pytest.approx([560.0, 660.0], abs=0.01)
    # A neighbour that is a candidate itself is not pooled even where the two agree (one molecule
    # found twice: non-maximum suppression decides on the unpooled positions, or pairs drift together).
    out[0, 0, 8, 6] = logit(0.8)
    out[0, 2, 8, 5], out[0, 2, 8, 6] = 0.3, -0.3  # 5.8 and 6.2 px: within 0.75 px of each other
    t = maps_to_candidates(out, channels, ScalingConfig(), 100.0)
    assert np.sort(t["x"][np.abs(t["y"] - 850.0) < 1]) == pytest.approx([580.0, 620.0], abs=0.01)


def test_nms_and_refilter():
    table = {"frame": np.array([0, 0, 0, 1]), "x": np.array([100.0, 130.0, 500.0, 110.0]),
             "y": np.array([100.0, 100.0, 100.0, 100.0]), "prob": np.array([0.6, 0.9, 0.7, 0.3]),
             "photons": np.array([100.0, 2000.0, 3000.0, 500.0])}
    keep = non_maximum_suppression(table, 50.0)
    assert keep.tolist() == [False, True, True, True]  # the more probable of the close pair; other frame untouched
    assert len(filter_table(table, 0.65)["x"]) == 2
    assert filter_table(table, 0.5, min_photons=2500)["x"].tolist() == [500.0]


def test_batchwise_nms_equals_nms_of_the_whole_table():
    from napari_smlm.core.inference import select_rows

    lm = small_model()
    movie = (np.random.default_rng(1).random((9, 24, 24)) * 100).astype(np.float32)
    infer = Infer(lm, device="cpu", batch_size=2, skip_empty=False)  # noise: nothing above background
    whole = infer.run(movie, camera=None, min_prob=0.0)
    expected = select_rows(whole, non_maximum_suppression(whole, 150.0))
    batched = infer.run(movie, camera=None, min_prob=0.0, nms_radius_nm=150.0)
    assert len(expected["x"]) < len(whole["x"])  # the radius really suppresses something
    order = lambda t: np.lexsort((t["x"], t["frame"]))  # noqa: E731
    assert np.array_equal(batched["frame"][order(batched)], expected["frame"][order(expected)])
    assert np.allclose(batched["x"][order(batched)], expected["x"][order(expected)])


def test_fine_grid_postprocessing_integrates_spread_probability():
    """On an 8x grid one molecule's probability spreads over many cells (none above
    0.1): it is found once, with the summed probability and the weighted position;
    a second molecule 1.5 camera pixels away stays separate."""
    from napari_smlm.core.inference.postprocess import fine_grid_window

    assert [fine_grid_window(s) for s in (2, 4, 8, 16)] == [3, 3, 5, 9]
    scale, cell = 8, 12.5
    h = w = 8 * scale
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    truth = [(3.3 * scale, 5.6 * scale), (4.8 * scale, 5.6 * scale)]  # (x, y) in cells
    p = sum(0.95 * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2)) / (2 * np.pi * 1.2**2) for x, y in truth)
    assert p.max() < 0.11
    out = torch.zeros(1, 6, h, w)
    out[0, 0] = torch.logit(p.clamp(1e-6, 1 - 1e-6))
    out[0, 1] = 0.2  # photons (scaled)
    scaling = ScalingConfig(photons=10000.0)
    table = maps_to_candidates(out, ("p", "photons", "x", "y", "z", "bg"), scaling, cell * scale, min_prob=0.5, scale=scale)
    assert len(table["x"]) == 2
    order = np.argsort(table["x"])
    for (x, y), i in zip(truth, order):
        assert table["x"][i] == pytest.approx(x * cell, abs=2.0) and table["y"][i] == pytest.approx(y * cell, abs=2.0)
        assert 0.8 < table["prob"][i] <= 0.95 and table["photons"][i] == pytest.approx(2000.0, rel=1e-4)
    # per-pixel post-processing on the same map finds nothing: no cell reaches 0.1
    assert len(maps_to_candidates(out, ("p", "photons", "x", "y", "z", "bg"), scaling, cell, min_prob=0.5)["x"]) == 0


def test_precision_and_threads():
    from napari_smlm.core.inference.runner import free_cores

    cores = len(__import__("os").sched_getaffinity(0))
    assert 1 <= free_cores() <= cores
    lm = LocalizationModel.load("default")
    movie = torch.rand(2, 3, 64, 64) * 50 + 40
    fp32 = Infer(lm, device="cpu", precision="fp32", threads=1)
    assert torch.get_num_threads() == 1 and fp32.threads == 1
    with pytest.raises(ValueError, match="--precision: expected"):
        Infer(lm, device="cpu", precision="half")
    with pytest.raises(ValueError, match="CUDA only"):
        Infer(lm, device="cpu", precision="fp16")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(ValueError, match="no bfloat16"):
            Infer(lm, device="cpu", precision="bf16")
        return
    a = torch.sigmoid(fp32.predict_maps(movie)[:, 0])
    b = torch.sigmoid(Infer(lm, device="cpu", precision="bf16").predict_maps(movie)[:, 0])
    diff = (a - b).abs().max().item()
    assert 0 < diff < 0.05, diff  # reduced arithmetic, not another model


def _cell_movie(size=128, radius=14, frames=24, background=50.0, fiducial=None, seed=3, photons=(1000, 5000),
                density=3.0):
    """An EMCCD movie (ADU) whose molecules lie in a disc in the middle of the field (a
    cell; radius None: everywhere), optionally with a fiducial bead on in every frame."""
    from napari_smlm.core.config import load_config
    from napari_smlm.core.simulation import EmitterTable, Simulator

    from .conftest import CONFIGS

    cfg = load_config(CONFIGS / "default_2d_v1.yaml", [
        f"simulation.frame_size=[{size},{size}]", f"simulation.emitters.density_per_um2=[{density},{density}]",
        "simulation.psf.sigma_nm=[130,130]", f"simulation.emitters.background=[{background},{background}]",
        "simulation.emitters.background_gradient=0.5", f"simulation.emitters.photons=[{photons[0]},{photons[1]}]"])
    sim = Simulator(cfg.simulation, seed=seed)
    table = sim.sample_emitters(1, frames)
    if radius is not None:
        table = table.select((table.x_px - size / 2) ** 2 + (table.y_px - size / 2) ** 2 < radius ** 2)
    if fiducial is not None:
        n = torch.full((frames,), 1.0)
        bead = EmitterTable(seq=torch.zeros(frames, dtype=torch.long), frame=torch.arange(frames),
                            id=torch.full((frames,), -1), x_px=n * fiducial[0], y_px=n * fiducial[1], z_nm=n * 0,
                            photons=n * 3000, sigma_px=n * 1.3)
        table = EmitterTable(*[torch.cat([getattr(table, k), getattr(bead, k)]) for k in
                               ("seq", "frame", "id", "x_px", "y_px", "z_nm", "photons", "sigma_px")])
    movie = sim.camera.forward(sim.render(table, 1, frames)[0] + sim.sample_background(1)[0], sim.generator)
    return movie.numpy(), sim.camera


def test_active_region_is_the_cell_and_its_margin_and_keeps_a_fiducial():
    from napari_smlm.core.inference.runner import active_region

    movie, camera = _cell_movie()
    photons = camera.to_photons(torch.from_numpy(movie).float())
    r0, r1, c0, c1 = active_region(photons, margin=20, stride=4)
    # the disc spans 50..78 px (radius 14 about 64): grown by 20 px (+ a PSF's wings), starts on the stride
    assert 20 <= r0 <= 32 and r0 % 4 == 0 and 96 <= r1 <= 106, (r0, r1)
    assert 20 <= c0 <= 32 and 96 <= c1 <= 106, (c0, c1)
    # a bead on in every frame is in the per-pixel median, not above it: still found
    movie, camera = _cell_movie(fiducial=(115.3, 10.6))
    r0, r1, c0, c1 = active_region(camera.to_photons(torch.from_numpy(movie).float()), margin=20, stride=4)
    assert r0 == 0 and c1 == 128 and c0 <= 32 and r1 <= 106
    # too few bright molecules to map anything (noise; a dim movie), or a cell filling most
    # of the field: the whole frame
    noise = camera.to_photons(camera.forward(torch.full((24, 128, 128), 50.0), torch.Generator().manual_seed(0)))
    assert active_region(noise, margin=20, stride=4) is None
    few = torch.cat([photons[:1], noise[1:]])  # the cell's ~18 molecules of one frame only
    assert active_region(few, margin=20, stride=4) is None
    assert active_region(photons[:5], margin=20, stride=4) is None  # too few frames for a median
    big, camera = _cell_movie(radius=50)
    assert active_region(camera.to_photons(torch.from_numpy(big).float()), margin=20, stride=4) is None
    # molecules everywhere, too dim for a threshold noise never crosses (the network still
    # finds most of them), or so dense that the medians hold them: never a box (a first
    # version cut these to the few bright molecules' box and lost most of the rest)
    for kw in (dict(photons=(300, 1000), background=100.0, density=0.1), dict(density=4.0)):
        movie, camera = _cell_movie(radius=None, size=64, frames=34, **kw)
        assert active_region(camera.to_photons(torch.from_numpy(movie).float()), margin=20, stride=4) is None, kw


def test_skipping_empty_regions_gives_the_whole_frames_localizations():
    lm = LocalizationModel.load("fast")
    movie, camera = _cell_movie(size=160, radius=16, frames=40, fiducial=(140.2, 20.7))
    timings, whole_t = {}, {}
    skipped = Infer(lm, device="cpu", threads=1).run(movie, camera=camera, timings=timings)
    whole = Infer(lm, device="cpu", threads=1, skip_empty=False).run(movie, camera=camera, timings=whole_t)
    assert timings["pixels_run"] < 0.6 * timings["pixels"] and whole_t["pixels_run"] == whole_t["pixels"]
    keep = lambda t: {k: v[t["prob"] >= lm.detection_threshold] for k, v in t.items()}  # noqa: E731
    a, b = keep(skipped), keep(whole)
    assert len(b["x"]) > 300 and abs(len(a["x"]) - len(b["x"])) <= 0.01 * len(b["x"])
    assert ((np.hypot(a["x"] - 14020, a["y"] - 2070) < 100).sum() == 40)  # the bead, in every frame
    from napari_smlm.core.evaluation import evaluate

    m, _ = evaluate(a, b, tolerance_nm=5.0, check=False, frame_check=False, unit_check=False)
    assert m["jaccard"] > 0.98 and m["rmse_lat"] < 1.0, m
    # what the CLI and the Localize widget report
    from napari_smlm.core.localize import localize

    assert 0.3 < localize(movie, model=lm, camera=camera, threads=1).network_share < 0.6
    assert localize(movie, model=lm, camera=camera, threads=1, skip_empty=False).network_share is None

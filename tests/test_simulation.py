import pytest
import torch

from napari_smlm.core.config import load_config
from napari_smlm.core.simulation import Simulator


def make(overrides=(), seed=0):
    return Simulator(load_config(None, list(overrides)).simulation, "cpu", seed)


def test_batch_shapes_and_emitters_inside_frame():
    sim = make(["simulation.frame_size=[24, 40]"])
    b = sim.sample_batch(8, 3)
    assert b["frames"].shape == (8, 3, 24, 40) and b["background"].shape == (8, 24, 40)
    m = b["mask"]
    assert ((b["x_px"][m] >= 0) & (b["x_px"][m] < 40)).all() and ((b["y_px"][m] >= 0) & (b["y_px"][m] < 24)).all()
    assert (b["photons"][m] > 0).all() and (b["photons"][m] <= 5000).all()


def test_density_gives_expected_emitters_per_frame():
    sim = make(["simulation.emitters.density_per_um2=[1.0, 1.0]", "simulation.frame_size=[64, 64]"])
    table = sim.sample_emitters(1, 2000)
    per_frame = len(table) / 2000
    assert per_frame == pytest.approx(1.0 * 6.4 * 6.4, rel=0.05)


def test_blinking_spans_consecutive_frames_and_splits_photons():
    sim = make(["simulation.emitters.mean_on_frames=3.0"])
    table = sim.sample_emitters(1, 500)
    ids, counts = torch.unique(table.id, return_counts=True)
    assert counts.float().mean() > 2.0  # seen in several frames on average
    for i in ids[counts >= 3][:20]:
        frames = table.frame[table.id == i]
        assert torch.equal(frames, torch.arange(frames.min(), frames.max() + 1))  # consecutive
        ph = table.photons[table.id == i]
        assert (ph[1:-1] == ph[1:-1].max()).all()  # fully-on middle frames get the full flux


def test_reproducible_from_seed():
    a, b = make(seed=3).sample_batch(4, 3), make(seed=3).sample_batch(4, 3)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["x_px"], b["x_px"])
    c = make(seed=4).sample_batch(4, 3)
    assert not torch.equal(a["frames"], c["frames"])


def test_frames_are_photons_with_expected_mean():
    sim = make(["simulation.emitters.density_per_um2=[0, 0]", "simulation.emitters.background=[80, 80]"])
    b = sim.sample_batch(16, 1)
    assert b["frames"].mean().item() == pytest.approx(80.0, rel=0.02)


def test_background_gradient_stays_positive_and_varies():
    sim = make(["simulation.emitters.background_gradient=0.5", "simulation.emitters.background=[50, 50]"])
    bg = sim.sample_background(32)
    assert (bg >= 25 - 1e-4).all() and (bg <= 75 + 1e-4).all()
    assert (bg.amax((1, 2)) - bg.amin((1, 2))).max() > 5


@pytest.mark.parametrize("structure", ["filaments", "rings"])
def test_structured_emitters_lie_on_few_structures(structure):
    sim = make([f"simulation.emitters.structure={structure}", "simulation.emitters.n_structures=2",
                "simulation.emitters.density_per_um2=[1,1]"])
    t = sim.sample_emitters(1, 50)
    xy = torch.stack([t.x_px, t.y_px], 1)
    assert ((xy >= 0) & (xy < 64)).all()
    # Molecules cover a small part of the field: few 1-px cells are hit, unlike uniform.
    cells = torch.unique((xy.floor()[:, 0] * 64 + xy.floor()[:, 1]).long()).numel()
    uniform = make(["simulation.emitters.density_per_um2=[1,1]"]).sample_emitters(1, 50)
    cells_u = torch.unique((torch.stack([uniform.x_px, uniform.y_px], 1).floor()[:, 0] * 64 + uniform.y_px.floor()).long()).numel()
    assert cells < 0.5 * cells_u


def test_camera_jitter_trains_for_a_camera_a_little_wrong():
    """Per sequence the frames are converted with a gain off by up to ±25 % and a baseline off
    by up to ±5 ADU; the background and photon targets follow what the model is shown."""
    flat = ["simulation.emitters.density_per_um2=[0, 0]", "simulation.emitters.background=[80, 80]",
            "simulation.frame_size=[32, 32]"]
    sim = make(flat + ["simulation.camera_jitter.gain=0.25", "simulation.camera_jitter.baseline_adu=5"])
    b = sim.sample_batch(64, 1)
    shown = b["frames"].mean((1, 2, 3))
    target = b["background"].mean((1, 2))
    assert torch.allclose(shown, target, rtol=0.02)  # targets in the photons shown
    ratio = target / 80.0
    assert ratio.min() < 0.85 and ratio.max() > 1.2 and ratio.min() > 1 / 1.25 - 0.05 and ratio.max() < 1 / 0.75 + 0.05
    # photons of emitters are divided by the same scale
    sim = make(["simulation.camera_jitter.gain=0.25", "simulation.emitters.photons=[2000, 2000]",
                "simulation.emitters.mean_on_frames=100"], seed=1)
    b = sim.sample_batch(32, 3)
    ph = b["photons"][b["mask"]]
    # (a blink's first and last frames get part of the flux, so only the top is bounded)
    assert ph.max() <= 2000 / 0.75 + 1 and ph.max() > 2000 * 1.15 and ph[ph > 1600].std() > 100
    # without jitter: no extra random draws, the same data as before
    assert torch.equal(make(seed=3).sample_batch(4, 3)["frames"],
                       make(["simulation.camera_jitter.gain=0"], seed=3).sample_batch(4, 3)["frames"])


def test_scmos_share_has_poisson_noise():
    """An EMCCD's background varies twice its mean (excess noise 2); sequences drawn through
    the sCMOS of ``camera_jitter.scmos_fraction`` vary about as much as their mean."""
    flat = ["simulation.emitters.density_per_um2=[0, 0]", "simulation.emitters.background=[80, 80]",
            "simulation.frame_size=[32, 32]"]
    em = make(flat).sample_batch(16, 1)["frames"]
    sc = make(flat + ["simulation.camera_jitter.scmos_fraction=1"]).sample_batch(16, 1)["frames"]
    assert em.var().item() / em.mean().item() == pytest.approx(2 / 0.9, rel=0.1)
    assert sc.var().item() / sc.mean().item() == pytest.approx(1 / 0.9, rel=0.1)


@pytest.mark.parametrize("psf", [[], ["simulation.psf.sigma_nm=[90,200]"]])
def test_a_large_frame_renders_in_bands_and_chunks_as_one_piece_would(psf):
    """A tall frame is rendered a band of rows at a time, and a movie of large frames in
    chunks of fewer frames (256 frames of 2048x2048 in one piece had needed > 22 GB):
    the photons are those of one whole render."""
    from napari_smlm.core import simulation

    cfg = load_config(None, ["simulation.frame_size=[600,700]", "simulation.emitters.density_per_um2=[1,1]", *psf])
    sim = Simulator(cfg.simulation, "cpu", seed=0)
    table = sim.sample_emitters(1, 3)
    whole, banded = sim.render(table, 1, 3)[0], sim.render_frames(table, 3)
    assert len(table) > 3 * 300 and whole.max() > 100
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-3)
    chunks, truth, _ = sim.simulate_movie(40)
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == 40 and max(sizes) == simulation.CHUNK_PIXELS // (600 * 700)

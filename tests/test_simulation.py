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

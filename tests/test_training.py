import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_smlm.core.config import load_config
from napari_smlm.core.training import Callback, CheckpointError, Trainer, TrainingError, load_checkpoint
from napari_smlm.core.training.checkpoint import model_from_checkpoint

from .conftest import CONFIGS


def tiny(tiny_overrides, *extra):
    return load_config(CONFIGS / "smoke.yaml", [*tiny_overrides, *extra])


@pytest.mark.slow
def test_smoke_config_learns_to_localize(tmp_path):
    """The shipped smoke config (about a minute on 2 CPU cores) detects and localizes."""
    cfg = load_config(CONFIGS / "smoke.yaml", [f"output.run_dir={tmp_path}", "training.device=cpu"])
    trainer = Trainer(cfg)
    trainer.fit()
    h = trainer.history
    assert len(h) == cfg.training.epochs
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"]
    assert h[-1]["val_loss"] < h[0]["val_loss"]
    best = max(row["jaccard"] for row in h)
    assert best > 0.5, h
    assert h[-1]["rmse_lat"] < 60.0  # nm, with 100 nm pixels
    # best.pt holds the best epoch and reproduces its metric.
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["best_metric"] == pytest.approx(best)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in ("epoch", "train_loss", "val_loss", "precision", "recall", "jaccard", "rmse_lat", "rmse_ax", "lr", "seconds"):
        assert col in header
    assert any((tmp_path / "tensorboard").iterdir())

    # The trained checkpoint localizes a fresh simulated movie (64x64, larger than
    # the 32x32 training frames) through the same path as `napari-smlm localize`.
    from napari_smlm.core.evaluation import evaluate
    from napari_smlm.core.localize import localize
    from napari_smlm.core.simulation import Simulator

    sim_cfg = load_config(CONFIGS / "smoke.yaml", ["simulation.frame_size=[64,64]", "simulation.emitters.density_per_um2=[0.3,0.3]"])
    sim = Simulator(sim_cfg.simulation, "cpu", seed=123)
    chunks, truth, _ = sim.simulate_movie(100)
    movie = np.concatenate([c.numpy() for c in chunks])
    result = localize(movie, model=tmp_path / "best.pt", camera=sim.camera)
    gt = {"frame": truth.frame.numpy(), "x": truth.x_px.numpy() * 100, "y": truth.y_px.numpy() * 100, "z": truth.z_nm.numpy()}
    m, _ = evaluate(result.table(), gt, 250.0)
    assert m["jaccard"] > 0.5 and m["rmse_lat"] < 60.0, m


def test_resume_continues_exactly(tmp_path, tiny_overrides):
    """2 epochs + resume for 1 == 3 epochs straight: epoch counter, lr, weights."""
    straight = Trainer(tiny(tiny_overrides, "training.epochs=3", f"output.run_dir={tmp_path / 'a'}", "scheduler.name=step", "scheduler.step_size=1", "scheduler.gamma=0.5"))
    straight.fit()

    first = Trainer(tiny(tiny_overrides, "training.epochs=2", f"output.run_dir={tmp_path / 'b'}", "scheduler.name=step", "scheduler.step_size=1", "scheduler.gamma=0.5"))
    first.fit()
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * 3

    resumed = Trainer(
        tiny(tiny_overrides, "training.epochs=3", f"output.run_dir={tmp_path / 'b'}", "scheduler.name=step", "scheduler.step_size=1", "scheduler.gamma=0.5"),
        resume=tmp_path / "b" / "last.pt",
    )
    assert resumed.epoch == 2 and resumed.step == 6
    lr = 0.001 * 0.5**2
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k
    resumed.fit()
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.step == 9
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, straight.model.state_dict()[k], atol=1e-6), k
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=1e-5)


def test_nonfinite_losses_are_skipped_then_stop_with_checkpoint_intact(tmp_path, tiny_overrides, monkeypatch):
    cfg = tiny(tiny_overrides, "training.epochs=3", "training.max_nonfinite=2")
    trainer = Trainer(cfg)
    real = trainer.loss_fn.forward
    calls = {"n": 0}

    def flaky(output, batch):
        total, parts = real(output, batch)
        if not trainer.model.training:  # validation
            return total, parts
        calls["n"] += 1
        # Epoch 1 (steps 1-3) trains; step 4 is NaN once; from step 6 on every loss is NaN.
        if calls["n"] == 4 or calls["n"] >= 6:
            return total * float("nan"), parts
        return total, parts

    monkeypatch.setattr(trainer.loss_fn, "forward", flaky)
    with pytest.raises(TrainingError, match="non-finite losses in a row"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 2  # the last complete epoch (its NaN steps were skipped)
    before = state["state_dict"]
    assert all(torch.isfinite(v).all() for v in before.values() if v.is_floating_point())
    assert trainer.nonfinite_total == 3  # step 4, then steps 6 and 7
    assert trainer.step == 6  # the 7th step raised before it counted


def test_stop_flag_ends_cleanly_after_current_batch(tmp_path, tiny_overrides):
    class StopAt(Callback):
        def on_batch_end(self, trainer, info):
            if info["step"] == 5:
                trainer.request_stop("stopped by test")

    events = []
    trainer = Trainer(tiny(tiny_overrides, "training.epochs=10"), callbacks=[StopAt()], progress=events.append)
    trainer.fit()
    assert trainer.step == 5 and trainer.epoch == 2
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped by test"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    kinds = {e["event"] for e in events}
    assert kinds == {"start", "batch", "validation", "end"}


def test_gradient_accumulation_and_optimizers(tmp_path, tiny_overrides):
    for opt, sched in (("adam", "plateau"), ("sgd", "cosine"), ("adamw", "none")):
        cfg = tiny(tiny_overrides, "training.epochs=2", "training.accumulate_steps=2", f"optimizer.name={opt}",
                   f"scheduler.name={sched}", f"output.run_dir={tmp_path / opt}")
        trainer = Trainer(cfg)
        trainer.fit()
        assert trainer.step == 6 and math.isfinite(trainer.history[-1]["train_loss"])


def test_checkpoint_contract_and_safe_loading(tmp_path, tiny_overrides):
    trainer = Trainer(tiny(tiny_overrides, "training.epochs=1"))
    trainer.fit()
    path = tmp_path / "run" / "last.pt"
    raw = torch.load(path, weights_only=True)  # plain containers and tensors only
    for key in ("format_version", "architecture", "model_kwargs", "state_dict", "optimizer", "scheduler", "epoch",
                "step", "best_metric", "history", "inference"):
        assert key in raw
    inf = raw["inference"]
    assert inf["pixel_size_nm"] == 100.0 and inf["frame_window"] == 3 and "scaling" in inf and "camera" in inf
    model = model_from_checkpoint(raw)
    assert model.output_channels == tuple(inf["output_channels"])
    assert not list(tmp_path.joinpath("run").glob("*.tmp"))  # atomic writes leave no temp files

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt: not a napari-smlm checkpoint"):
        load_checkpoint(text)

    class Evil:
        def __reduce__(self):
            return (print, ("code from a checkpoint ran",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"x": Evil()}, fh)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(evil)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="expected keys"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="holds architecture 'double_munet', but the config asks for 'sigma_munet'"):
        load_checkpoint(path, architecture="sigma_munet")
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_with_other_architecture_is_refused(tmp_path, tiny_overrides):
    Trainer(tiny(tiny_overrides, "training.epochs=1")).fit()
    cfg = tiny(tiny_overrides, "model.architecture=sigma_munet", "training.epochs=2",
               "loss.terms=[{name: gaussian_mm}]", f"output.run_dir={tmp_path / 'b'}")
    with pytest.raises(CheckpointError, match="holds architecture 'double_munet'"):
        Trainer(cfg, resume=tmp_path / "run" / "last.pt")


def test_validation_metrics_are_real_numbers(tmp_path, tiny_overrides):
    trainer = Trainer(tiny(tiny_overrides, "training.epochs=1"), write_files=False)
    m = trainer.validate()
    assert m["tp"] + m["fn"] == sum(int(b["mask"].sum()) for b in trainer.validation)
    assert 0 <= m["jaccard"] <= 1 and np.isfinite(m["val_loss"])


def test_resume_from_inference_only_checkpoint(tmp_path, tiny_overrides):
    """The bundled (slim) checkpoint can be trained further: weights and epoch carry on."""
    from napari_smlm.core.inference.bundle import bundle

    extra = ["scheduler.name=step", "scheduler.step_size=1", "scheduler.gamma=0.5"]
    first = Trainer(tiny(tiny_overrides, "training.epochs=2", *extra))
    first.fit()
    slim = bundle(str(tmp_path / "run" / "last.pt"), str(tmp_path / "slim.pt"))
    assert "optimizer" not in slim and "rng" not in slim
    import warnings

    with warnings.catch_warnings(record=True) as seen:  # the schedule advanced without PyTorch's puzzling warning
        warnings.simplefilter("always")
        more = Trainer(tiny(tiny_overrides, "training.epochs=3", f"output.run_dir={tmp_path / 'more'}", *extra),
                       resume=tmp_path / "slim.pt")
    assert not [w for w in seen if "lr_scheduler" in str(w.message)]
    assert more.epoch == 2 and more.optimizer.param_groups[0]["lr"] == pytest.approx(0.001 * 0.25)
    for k, v in more.model.state_dict().items():
        assert torch.equal(v, first.model.state_dict()[k])
    more.fit()
    assert more.epoch == 3 and len(more.history) == 3

    from napari_smlm.core.inference.bundle import tune_threshold

    chosen, scores = tune_threshold(load_checkpoint(tmp_path / "more" / "last.pt"), thresholds=[0.3, 0.5, 0.7])
    assert [t for t, _, _ in scores] == [0.3, 0.5, 0.7]
    top = max(scores, key=lambda s: s[1])
    # the highest threshold within one standard error of the best score
    assert chosen == max(t for t, j, _ in scores if j >= top[1] - top[2]) and chosen >= top[0]
    assert all(0.0 <= j <= 1.0 and 0.0 <= se < 0.5 for _, j, se in scores)


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path, tiny_overrides):
    # nonfinite_steps stays 0: epoch 1 sets the best, epochs 2-3 do not improve it.
    cfg = tiny(tiny_overrides, "training.epochs=10", "training.early_stopping_patience=2", "training.monitor=nonfinite_steps")
    events = []
    trainer = Trainer(cfg, progress=events.append)
    trainer.fit()
    assert trainer.epoch == 3
    assert events[-1]["reason"].startswith("early stopping: nonfinite_steps did not improve for 2 epochs")


def test_init_weights_starts_a_new_run_from_other_weights(tmp_path, tiny_overrides):
    """training.init_weights (fine-tuning): the weights come over, the run starts at epoch 0."""
    first = Trainer(tiny(tiny_overrides, "training.epochs=2"))
    first.fit()
    tuned = Trainer(tiny(tiny_overrides, "training.epochs=1", f"output.run_dir={tmp_path / 'tuned'}",
                         f"training.init_weights={tmp_path / 'run' / 'last.pt'}", "optimizer.lr=0.0005"))
    assert tuned.epoch == 0 and tuned.step == 0 and tuned.history == []
    assert tuned.optimizer.param_groups[0]["lr"] == pytest.approx(0.0005)
    for k, v in tuned.model.state_dict().items():
        assert torch.equal(v, first.model.state_dict()[k])
    tuned.fit()
    assert tuned.epoch == 1 and load_checkpoint(tmp_path / "tuned" / "last.pt")["config"]["training"]["init_weights"].endswith("last.pt")

    with pytest.raises(CheckpointError, match="model kwargs"):
        Trainer(tiny(tiny_overrides, "model.kwargs={depth_shared: 1, depth_union: 1, initial_features: 4, inter_features: 4}",
                     f"training.init_weights={tmp_path / 'run' / 'last.pt'}"), write_files=False)
    with pytest.raises(CheckpointError, match=r"training.init_weights: nowhere.pt: neither a bundled model"):
        Trainer(tiny(tiny_overrides, "training.init_weights=nowhere.pt"), write_files=False)
    with pytest.raises(CheckpointError, match=r"model.scaling"):
        Trainer(tiny(tiny_overrides, "model.scaling.photons=5000", f"training.init_weights={tmp_path / 'run' / 'last.pt'}"),
                write_files=False)


def test_init_weights_from_the_bundled_model(tmp_path):
    """The shipped default_2d config fine-tunes the bundled model as it is."""
    cfg = load_config(CONFIGS / "default_2d.yaml", ["training.init_weights=default", "training.validation_size=4",
                                                    "training.device=cpu", f"output.run_dir={tmp_path}"])
    trainer = Trainer(cfg, write_files=False)
    bundled = load_checkpoint(Path(__file__).resolve().parents[1] / "src" / "napari_smlm" / "models" / "default_2d.pt")
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, bundled["state_dict"][k])


def test_validation_reports_the_jaccard_at_the_best_threshold(tmp_path, tiny_overrides):
    """jaccard_tuned: the validation Jaccard at the epoch's own best threshold, never below
    the Jaccard at the fixed detection threshold (which is one of those tried)."""
    from napari_smlm.core.training.trainer import TUNED_THRESHOLDS

    trainer = Trainer(tiny(tiny_overrides, "training.epochs=2", "training.monitor=jaccard_tuned",
                           "training.detection_threshold=0.5"))
    trainer.fit()
    assert 0.5 in TUNED_THRESHOLDS
    for row in trainer.history:
        assert row["threshold_tuned"] in TUNED_THRESHOLDS
        assert row["jaccard_tuned"] >= row["jaccard"]
    assert trainer.best_metric == max(row["jaccard_tuned"] for row in trainer.history)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["monitor"] == "jaccard_tuned"


def test_resuming_with_another_monitor_chooses_best_afresh(tmp_path, tiny_overrides, capsys):
    Trainer(tiny(tiny_overrides, "training.epochs=1", "training.monitor=val_loss")).fit()
    more = Trainer(tiny(tiny_overrides, "training.epochs=2", "training.monitor=jaccard_tuned"),
                   resume=tmp_path / "run" / "last.pt")
    assert more.best_metric == -math.inf and "chose best.pt by val_loss" in capsys.readouterr().err
    more.fit()
    assert more.best_metric == more.history[-1]["jaccard_tuned"]
    same = Trainer(tiny(tiny_overrides, "training.epochs=3", "training.monitor=jaccard_tuned"),
                   resume=tmp_path / "run" / "last.pt")
    assert same.best_metric == more.best_metric  # the same monitor: its best carries over

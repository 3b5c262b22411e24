import pytest
import yaml

from napari_smlm.core.config import Config, ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict

from .conftest import CONFIGS, ROOT


@pytest.mark.parametrize("name", ["smoke", "default_2d", "decode_reference", "multiscale_var", "fusion_unet",
                                  "default_2d_v1", "fast_2d_v2"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg, Config)
    assert cfg.model.frame_window % 2 == 1


def test_configs_named_by_scripts_exist():
    # scripts/train_bundled_model.sh named default_2d_v2.yaml for a session after that
    # config had become default_2d.yaml: every config a script names must load.
    import re

    for script in sorted((ROOT / "scripts").glob("*.sh")):
        for name in re.findall(r"configs/([\w.-]+\.yaml)", script.read_text()):
            assert (ROOT / "configs" / name).is_file(), f"{script.name} names configs/{name}, which does not exist"
            load_config(ROOT / "configs" / name)


def test_negative_batch_size_names_key_and_expectation(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  batch_size: -3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "training.batch_size: expected a positive integer, got -3" in str(e.value)
    assert str(p) in str(e.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"training": {"epochs": "ten"}}, "training.epochs: expected a positive integer, got 'ten'"),
        ({"training": {"device": "tpu"}}, "training.device: expected one of 'auto', 'cpu', 'cuda', got 'tpu'"),
        ({"training": {"amp": 1}}, "training.amp: expected a boolean"),
        ({"trainig": {}}, "trainig: unknown key"),
        ({"simulation": {"camera": {"qe": 1.5}}}, "simulation.camera.qe: expected a positive number <= 1, got 1.5"),
        ({"simulation": {"emitters": {"photons": [5000, 1000]}}}, "simulation.emitters.photons: expected low <= high"),
        ({"model": {"frame_window": 2}}, "model.frame_window: expected an odd number"),
        ({"optimizer": {"name": "lbfgs"}}, "optimizer.name: expected one of 'adamw', 'adam', 'sgd'"),
    ],
)
def test_bad_values_are_rejected_with_key_path(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(Config, data)
    assert message in str(e.value)


def test_overrides_are_typed_and_validated():
    cfg = load_config(None, ["training.epochs=1", "simulation.frame_size=[32, 48]", "optimizer.lr=1e-3"])
    assert cfg.training.epochs == 1 and cfg.simulation.frame_size == [32, 48] and cfg.optimizer.lr == 1e-3
    with pytest.raises(ConfigError, match="training.batch_size: expected a positive integer, got 0"):
        load_config(None, ["training.batch_size=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["training.epochs"])


def test_save_load_round_trip(tmp_path):
    cfg = load_config(CONFIGS / "smoke.yaml", ["training.epochs=3"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["training"]["epochs"] == 3

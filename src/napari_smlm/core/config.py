"""Typed configuration tree, loaded from YAML and validated with clear errors.

Every section is a dataclass. :func:`from_dict` walks the dataclass fields and
checks types and ranges, reporting the full key path on error, e.g.
``training.batch_size: expected a positive integer, got -3``.
Ranges are declared in field metadata (``min``, ``max``, ``exclusive_min``).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

__all__ = [
    "ConfigError",
    "Config",
    "SimulationConfig",
    "CameraConfig",
    "CameraJitterConfig",
    "PSFConfig",
    "AstigmatismConfig",
    "EmitterConfig",
    "ModelConfig",
    "ScalingConfig",
    "LossConfig",
    "LossTermConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "DataConfig",
    "OutputConfig",
    "load_config",
    "save_config",
    "camera_config",
    "load_camera_config",
    "CAMERA_FLAGS",
    "from_dict",
    "to_dict",
    "apply_overrides",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _range(min=None, max=None, exclusive_min=None):  # noqa: A002 - mirrors field names
    return {"min": min, "max": max, "exclusive_min": exclusive_min}


def _f(default=dataclasses.MISSING, *, factory=None, **rng):
    meta = _range(**rng)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- sections


@dataclass
class CameraConfig:
    """Camera that turns photons into ADU (and back). See :mod:`napari_smlm.core.camera`."""

    kind: Literal["emccd", "scmos", "ideal"] = "emccd"
    baseline: float = _f(100.0, min=0)
    e_per_adu: float = _f(45.0, exclusive_min=0)
    em_gain: float = _f(100.0, min=1)
    qe: float = _f(0.9, exclusive_min=0, max=1)
    read_noise_e: float = _f(74.4, min=0)
    max_adu: int = _f(65535, min=1)


@dataclass
class AstigmatismConfig:
    """σx(z), σy(z) of an astigmatic Gaussian (Huang et al. 2008), used when
    ``psf.kind`` is ``astigmatic`` and no calibration file is given:
    σ(z) = σ0·sqrt(1 + u² + A·u³ + B·u⁴), u = (z − γ)/d. The defaults are a typical
    cylindrical-lens setup (100 nm pixels, line foci at ∓300 nm)."""

    sigma0_x_nm: float = _f(120.0, exclusive_min=0)
    gamma_x_nm: float = -300.0
    d_x_nm: float = _f(400.0, exclusive_min=0)
    A_x: float = 0.0
    B_x: float = 0.0
    sigma0_y_nm: float = _f(120.0, exclusive_min=0)
    gamma_y_nm: float = 300.0
    d_y_nm: float = _f(400.0, exclusive_min=0)
    A_y: float = 0.0
    B_y: float = 0.0
    z_range_nm: list[float] = _f(factory=lambda: [-800.0, 800.0])


@dataclass
class PSFConfig:
    """Point-spread function. ``gaussian``: ``sigma_nm`` is a [min, max] range sampled
    per emitter (2D). ``astigmatic``: σx(z), σy(z) from ``calibration`` (a PSF.h5 from
    ``napari-smlm calibrate`` or a SMAP ``*_3dcal.mat``) or else from ``astigmatism``.
    ``spline``: the cubic spline of the bead stack in ``calibration``."""

    kind: Literal["gaussian", "astigmatic", "spline"] = "gaussian"
    sigma_nm: list[float] = _f(factory=lambda: [130.0, 130.0])
    calibration: Optional[str] = None
    astigmatism: AstigmatismConfig = field(default_factory=AstigmatismConfig)


@dataclass
class EmitterConfig:
    density_per_um2: list[float] = _f(factory=lambda: [0.1, 1.0])
    photons: list[float] = _f(factory=lambda: [1000.0, 5000.0])
    photon_distribution: Literal["uniform", "lognormal"] = "uniform"
    z_range_nm: list[float] = _f(factory=lambda: [0.0, 0.0])
    mean_on_frames: float = _f(1.5, exclusive_min=0)
    background: list[float] = _f(factory=lambda: [50.0, 50.0])
    background_gradient: float = _f(0.0, min=0, max=1)
    # Where molecules sit: anywhere, or on random filaments (lines) or rings (for
    # demos and renders with visible structure; training uses uniform).
    structure: Literal["uniform", "filaments", "rings"] = "uniform"
    n_structures: int = _f(6, min=1)


@dataclass
class CameraJitterConfig:
    """Training for a camera that is not quite the one given (estimated or typed a little
    wrong). Per training sequence, the frames are turned back into photons with a gain off
    by up to ±``gain`` (relative) and a baseline off by up to ±``baseline_adu``, and a
    share ``scmos_fraction`` of the sequences is recorded by an sCMOS (0.5 e-/ADU, read
    noise 1.5 e-, QE 0.9) instead of ``camera``. The targets (photons, background) are in
    the photons the model is shown. All 0: the camera as given, and no random draws."""

    gain: float = _f(0.0, min=0, max=0.9)
    baseline_adu: float = _f(0.0, min=0)
    scmos_fraction: float = _f(0.0, min=0, max=1)


@dataclass
class SimulationConfig:
    frame_size: list[int] = _f(factory=lambda: [64, 64])
    pixel_size_nm: float = _f(100.0, exclusive_min=0)
    camera: CameraConfig = field(default_factory=CameraConfig)
    camera_jitter: CameraJitterConfig = field(default_factory=CameraJitterConfig)
    psf: PSFConfig = field(default_factory=PSFConfig)
    emitters: EmitterConfig = field(default_factory=EmitterConfig)


@dataclass
class ScalingConfig:
    """Input and output scaling of the network; travels with the checkpoint."""

    input_offset: float = 0.0
    input_scale: float = _f(100.0, exclusive_min=0)
    photons: float = _f(10000.0, exclusive_min=0)
    z_nm: float = _f(1000.0, exclusive_min=0)
    background: float = _f(200.0, exclusive_min=0)


@dataclass
class ModelConfig:
    architecture: str = "sigma_munet"
    frame_window: int = _f(3, min=1)
    kwargs: dict[str, Any] = _f(factory=dict)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)


@dataclass
class LossTermConfig:
    """One loss term. It is active from ``start_epoch`` until (not including)
    ``until_epoch`` (null: to the end); its weight ramps up linearly over its
    first ``warmup_epochs`` active epochs."""

    name: str = "gaussian_mm"
    weight: float = _f(1.0, min=0)
    warmup_epochs: int = _f(0, min=0)
    start_epoch: int = _f(0, min=0)
    until_epoch: Optional[int] = _f(None, min=1)
    kwargs: dict[str, Any] = _f(factory=dict)


@dataclass
class LossConfig:
    terms: list[LossTermConfig] = _f(factory=lambda: [LossTermConfig()])
    dynamic_weighting: Literal["none", "uncertainty", "loss_ratio"] = "none"


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = _f(6e-4, exclusive_min=0)
    weight_decay: float = _f(0.1, min=0)
    momentum: float = _f(0.9, min=0, max=1)


@dataclass
class SchedulerConfig:
    name: Literal["none", "step", "cosine", "plateau"] = "step"
    step_size: int = _f(10, min=1)
    gamma: float = _f(0.9, exclusive_min=0, max=1)
    warmup_epochs: int = _f(0, min=0)
    min_lr: float = _f(0.0, min=0)
    patience: int = _f(5, min=0)


@dataclass
class TrainingConfig:
    epochs: int = _f(10, min=1)
    steps_per_epoch: int = _f(100, min=1)
    batch_size: int = _f(32, min=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    grad_clip: Optional[float] = _f(0.03, exclusive_min=0)
    accumulate_steps: int = _f(1, min=1)
    seed: int = _f(0, min=0)
    workers: int = _f(0, min=0)
    validation_size: int = _f(256, min=1)
    validation_density_per_um2: Optional[list[float]] = None
    monitor: str = "jaccard"
    early_stopping_patience: Optional[int] = _f(None, min=1)
    # A time box (minutes of this session's training, counted from fit()'s start):
    # when it is up, the epoch in progress is cut short, validated and checkpointed
    # (last.pt, best.pt), and training stops cleanly; --resume continues it.
    max_minutes: Optional[float] = _f(None, exclusive_min=0)
    max_nonfinite: int = _f(10, min=1)
    detection_threshold: float = _f(0.5, exclusive_min=0, max=1)
    match_tolerance_nm: float = _f(250.0, exclusive_min=0)
    log_images_every: int = _f(1, min=0)
    # Start from another model's weights (a checkpoint file or a bundled model name such
    # as "default"): a new run at epoch 0 with a fresh optimizer, i.e. fine-tuning the
    # bundled model to one's microscope. Architecture and model kwargs must match.
    init_weights: Optional[str] = None


@dataclass
class DataConfig:
    """Optional labelled dataset; when ``train`` is empty, training data is simulated."""

    train: list[str] = _f(factory=list)
    emitters: list[str] = _f(factory=list)
    validation_fraction: float = _f(0.1, exclusive_min=0, max=0.9)
    augment: bool = True
    augment_noise: float = _f(0.0, min=0)
    augment_brightness: list[float] = _f(factory=lambda: [1.0, 1.0])
    units: Literal["photons", "adu"] = "adu"


@dataclass
class OutputConfig:
    run_dir: str = "runs/default"
    tensorboard: bool = True


@dataclass
class Config:
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        _check_pairs(self)


# ----------------------------------------------------------------------------- validation

_PAIRS = {
    "simulation.frame_size": (int, 1),
    "simulation.psf.sigma_nm": (float, None),
    "simulation.emitters.density_per_um2": (float, None),
    "simulation.emitters.photons": (float, None),
    "simulation.emitters.z_range_nm": (float, None),
    "simulation.psf.astigmatism.z_range_nm": (float, None),
    "simulation.emitters.background": (float, None),
    "data.augment_brightness": (float, None),
}


def _check_pairs(cfg: Config) -> None:
    """Range-valued fields are ``[low, high]`` with ``low <= high``."""
    for key, (_, min_value) in _PAIRS.items():
        value = _get(cfg, key)
        if len(value) != 2:
            raise ConfigError(f"{key}: expected a list of two numbers [low, high], got {value!r}")
        if value[0] > value[1]:
            raise ConfigError(f"{key}: expected low <= high, got {value!r}")
        if min_value is not None and value[0] < min_value:
            raise ConfigError(f"{key}: expected values >= {min_value}, got {value!r}")
    for key in ("simulation.psf.sigma_nm", "simulation.emitters.photons", "data.augment_brightness"):
        if _get(cfg, key)[0] <= 0:
            raise ConfigError(f"{key}: expected positive values, got {_get(cfg, key)!r}")
    for key in ("simulation.emitters.density_per_um2", "simulation.emitters.background"):
        if _get(cfg, key)[0] < 0:
            raise ConfigError(f"{key}: expected non-negative values, got {_get(cfg, key)!r}")
    for i, term in enumerate(cfg.loss.terms):
        if term.until_epoch is not None and term.until_epoch <= term.start_epoch:
            raise ConfigError(
                f"loss.terms[{i}].until_epoch: expected more than start_epoch ({term.start_epoch}), got {term.until_epoch}"
            )
    vd = cfg.training.validation_density_per_um2
    if vd is not None and (len(vd) != 2 or vd[0] > vd[1] or vd[0] < 0):
        raise ConfigError(
            f"training.validation_density_per_um2: expected [low, high] with 0 <= low <= high, got {vd!r}"
        )
    if cfg.model.frame_window % 2 == 0:
        raise ConfigError(
            f"model.frame_window: expected an odd number of frames (centre frame predicted), "
            f"got {cfg.model.frame_window}"
        )
    if cfg.data.emitters and len(cfg.data.emitters) != len(cfg.data.train):
        raise ConfigError(
            f"data.emitters: expected one emitter table per entry of data.train "
            f"({len(cfg.data.train)}), got {len(cfg.data.emitters)}"
        )


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _describe(tp: Any, meta: dict) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _describe(args[0], meta) + " or null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0], {})}s"
    if origin is dict:
        return "a mapping"
    name = {int: "integer", float: "number", bool: "boolean (true/false)", str: "string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )
    if meta.get("exclusive_min") == 0 or (tp is int and meta.get("min") == 1):
        name = f"positive {name}"
    elif meta.get("min") == 0:
        name = f"non-negative {name}"
    elif meta.get("min") is not None:
        name = f"{name} >= {meta['min']}"
    elif meta.get("exclusive_min") is not None:
        name = f"{name} > {meta['exclusive_min']}"
    if meta.get("max") is not None:
        name += f" <= {meta['max']}"
    return ("an " if name[0] in "aeiou" else "a ") + name


def _convert(value: Any, tp: Any, key: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    expected = _describe(tp, meta)

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section), got {value!r}")
        return from_dict(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], key, meta)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            fail()
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return copy.deepcopy(dict(value))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
    elif tp is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads "1e-3" as a string; accept it as the number it means.
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
            fail()
    elif tp is str:
        if not isinstance(value, str):
            fail()
        return value
    if meta.get("min") is not None and value < meta["min"]:
        fail()
    if meta.get("exclusive_min") is not None and value <= meta["exclusive_min"]:
        fail()
    if meta.get("max") is not None and value > meta["max"]:
        fail()
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, validating every value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], key, dict(fields[name].metadata))
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    """Plain nested dict (YAML- and ``weights_only``-safe) of a config dataclass."""
    return dataclasses.asdict(obj)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides (values parsed as YAML) to a nested dict."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=1")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        _set_dotted(data, key, value)
    return data


def read_yaml(path: Union[str, Path], what: str = "config") -> Any:
    """Parse a YAML file, naming the file in every error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a {what} YAML file is text; this one holds binary data)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def load_config(path: Union[str, Path, None] = None, overrides: Optional[list[str]] = None) -> Config:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        data = read_yaml(path, "config")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        if not data:
            # An empty file would silently mean every built-in default (a 2.5 M parameter
            # model): almost always a file that was not saved or the wrong path.
            raise ConfigError(
                f"{path}: empty config file; expected sections such as simulation, model and training "
                f"(start from a shipped config: --config default_2d or --config smoke)"
            )
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    from .utils import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False)))


# ----------------------------------------------------------------------------- cameras for inference

# Command-line flag of each camera key (errors name what the user typed).
CAMERA_FLAGS = {"kind": "--camera-kind", "baseline": "--baseline", "e_per_adu": "--e-per-adu",
                "em_gain": "--em-gain", "qe": "--qe", "read_noise_e": "--read-noise-e", "max_adu": "--max-adu"}


def camera_config(data: Any, where: str = "camera", required: bool = True, flags: bool = False) -> CameraConfig:
    """The one validator of a camera given for inference: YAML, command-line flags
    (``flags=True``: errors name ``--qe`` rather than ``camera.qe``) and the widgets.

    With ``required``, a camera must state its ``kind``, ``baseline`` and
    ``e_per_adu`` (and ``em_gain`` for an EMCCD): a camera file is never silently
    completed with another camera's defaults. ``qe`` defaults to 1 (photoelectrons
    counted as photons) and ``read_noise_e`` to 0; neither changes a conversion
    unless given.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of camera keys (kind, baseline, e_per_adu, em_gain, qe), "
                          f"got {data!r}")
    data = dict(data)
    name = (lambda k: CAMERA_FLAGS.get(k, k)) if flags else (lambda k: k)

    def build(values: dict) -> CameraConfig:
        try:
            return from_dict(CameraConfig, values, "camera")
        except ConfigError as exc:
            msg = str(exc)
            if flags:
                for key, flag in CAMERA_FLAGS.items():
                    if msg.startswith(f"camera.{key}:"):
                        msg = flag + msg[len(f"camera.{key}"):]
                        break
                raise ConfigError(msg) from None
            if where != "camera":
                raise ConfigError(f"{where}: {msg}") from None
            raise

    cfg = build(data)  # the values given, each checked against its range, first
    if required:
        kind = data.get("kind")
        needed = ["kind", "baseline", "e_per_adu"] if kind != "ideal" else ["kind"]
        needed += ["em_gain"] if kind == "emccd" else []
        missing = [k for k in needed if k not in data]
        if missing:
            raise ConfigError(
                f"{where}: missing {', '.join(name(k) for k in missing)}; a camera must state its kind "
                f"(emccd, scmos or ideal), baseline [ADU] and e_per_adu (electrons per ADU), and em_gain for an "
                f"EMCCD (or leave the camera out to have it estimated from the movie)"
            )
        defaults = {"qe": 1.0, "read_noise_e": 0.0}
        if kind != "emccd":
            defaults["em_gain"] = 1.0
        if kind == "ideal":
            defaults.update(baseline=0.0, e_per_adu=1.0)
        cfg = build({**defaults, **data})
    if "em_gain" in data and cfg.kind != "emccd" and cfg.em_gain != 1.0:
        raise ConfigError(f"{name('em_gain')}: an {cfg.kind} camera has no EM gain; expected 1 or {name('kind')} emccd, "
                          f"got {cfg.em_gain:g}")
    return cfg


def load_camera_config(path: Union[str, Path]) -> CameraConfig:
    """A camera YAML: the camera keys at the top level, under ``camera:``, or a whole
    training config (``simulation.camera``); errors name the file."""
    path = Path(path)
    data = read_yaml(path, "camera")
    if isinstance(data, dict) and "simulation" in data:
        data = (data["simulation"] or {}).get("camera", {})
    elif isinstance(data, dict) and "camera" in data:
        data = data["camera"]
    if data == {}:
        raise ConfigError(f"{path}: empty camera file; expected the keys kind, baseline, e_per_adu (and em_gain, qe)")
    try:
        return camera_config(data, "camera")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

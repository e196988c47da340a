"""Experiment configs: one frozen dataclass, experiment files that change only what differs.

An experiment file (``configs/<name>.py``) defines ``config = TrainConfig(...)`` with the
fields it changes; ``configs/base.py`` documents the defaults. The file is imported by path
(no ``exec`` into globals), and ``--set key=value`` overrides are converted to the field's type
and checked, so a misspelled key or a wrong type is a :class:`ConfigError`, never a silently
ignored setting (insightface's EasyDict pitfall).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, TypeVar

from slimface.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Schedules are counted in optimizer steps.

    ``epochs`` x ``steps_per_epoch`` is the schedule length; ``steps_per_epoch=0`` means one
    pass over the (filtered) data at the global batch size. ``milestones`` are in epochs.
    """

    # model
    backbone: str = "mobilefacenet"
    backbone_kwargs: dict = field(default_factory=dict)
    head: str = "arcface"
    head_kwargs: dict = field(default_factory=dict)
    # data: identity folders root/IDENTITY/image, relative to the data root unless absolute
    data: str = "celeba_subset/img_align_celeba_89x109"
    min_images_per_identity: int = 1
    max_identities: int = 0               # 0 = all
    template: str = ""                     # "" = the backbone's own template
    crop_pad: int = 8                      # random crops come from a canvas 2*pad larger
    detector: str = "retinaface"
    flip: bool = True
    # optimisation (the quantized Face-ResNet paper's recipe: SGD, lr 0.01 /10 at epochs 40, 70, 90)
    optimizer: str = ""                    # "" = the objective's: margin "sgd", distill "adamw"
    lr_schedule: str = ""                  # "" = the objective's: margin "step", distill "cosine"
    batch_size: int = 64                   # per process
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    epochs: int = 100
    steps_per_epoch: int = 0
    milestones: tuple = (40, 70, 90)       # "step" schedule: x gamma at each of these epochs
    gamma: float = 0.1
    max_steps: int = 0                     # 0 = the whole schedule; stops early, schedule unchanged
    # bookkeeping
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 500            # steps; also every checkpoint_minutes
    log_every: int = 20
    eval_every: int = 0                    # LFW view-1 accuracy every N steps (0 = off)
    eval_batch_size: int = 128
    channels_last: bool = True
    out: str = ""                          # "" = work_dirs/<config stem>
    checkpoint_minutes: float = 5.0        # checkpoint at least this often (0 = by steps only)
    init_from: str = ""                    # weights to start from: file or registry name
    # objective: "margin" (identity folders + margin head) or "distill" (function matching
    # against a live teacher on unlabelled faces; see slimface.train.function_matching)
    objective: str = "margin"
    teacher: str = ""                      # distill: registry name; "a+b" = an ensemble
    teacher_runtime: str = "auto"          # auto (fastest here) | litert | torch
    sources: tuple = ("utkface", "celeba", "lfw_unpaired", "att")   # distill images
    max_images: int = 0                    # distill: a seeded random subset (0 = all)
    loss_weights: dict = field(default_factory=lambda: {"embed": 1.0, "relational": 10.0})
    augment: dict = field(default_factory=dict)                   # AugmentConfig overrides
    data_pack: str = ""                    # distill: canvases from a training pack folder
    #                                        (`slimface data pack`) instead of aligning images
    device: str = "cpu"                    # "cpu", or "cuda" / "cuda:N" where torch sees a GPU
    data_workers: int = 0                  # distill: processes that augment the next steps'
    #                                        batches ahead of the loop (0 = in the loop) and,
    #                                        on the CPU, run the teacher on them

    @property
    def optimizer_name(self) -> str:
        """``optimizer``, or the objective's own when it is empty."""
        return self.optimizer or ("adamw" if self.objective == "distill" else "sgd")

    @property
    def schedule_name(self) -> str:
        """``lr_schedule``, or the objective's own when it is empty."""
        return self.lr_schedule or ("cosine" if self.objective == "distill" else "step")

    def schedule_steps(self, steps_per_epoch: int) -> int:
        return self.epochs * steps_per_epoch


def config_fields() -> dict[str, Any]:
    """Field name -> resolved type annotation."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _convert(key: str, raw: str, typ: Any) -> Any:
    """Parse ``raw`` as the field type; JSON for dicts and tuples."""
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ in (int, float, str):
            return typ(raw)
        if typ is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
        if typ is tuple:
            value = json.loads(raw if raw.strip().startswith("[") else f"[{raw}]")
            return tuple(value)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--set {key}={raw!r}: not a valid {typ.__name__}") from exc
    raise ConfigError(f"--set {key}: unsupported field type {typ}")


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys and unparsable values raise ConfigError."""
    types_by_name = config_fields()
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in types_by_name:
            raise ConfigError(f"unknown config key {key!r}; valid keys: "
                              f"{', '.join(sorted(types_by_name))}")
        changes[key] = _convert(key, raw, types_by_name[key])
    return validate(replace(config, **changes))


#: "sgd": momentum SGD; "adam": AdamW; both without weight decay on 1-d parameters (BN,
#: PReLU, biases). "adamw": AdamW decaying every parameter (the function-matching recipe).
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine")
OBJECTIVES = ("margin", "distill")
TEACHER_RUNTIMES = ("auto", "litert", "torch")
DISTILL_LOSSES = ("embed", "relational")


def validate(config: TrainConfig) -> TrainConfig:
    """Reject values that would fail later with a less helpful message."""
    positive = ("batch_size", "epochs", "checkpoint_every", "log_every", "threads",
                "eval_batch_size")
    for name in positive:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("steps_per_epoch", "max_steps", "warmup_steps", "eval_every", "crop_pad",
                 "max_identities", "min_images_per_identity", "max_images",
                 "checkpoint_minutes", "data_workers"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {config.lr}")
    _choice("optimizer", config.optimizer_name, OPTIMIZERS)
    _choice("lr_schedule", config.schedule_name, SCHEDULES)
    _choice("objective", config.objective, OBJECTIVES)
    _choice("teacher_runtime", config.teacher_runtime, TEACHER_RUNTIMES)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", config.device):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {config.device!r}")
    if config.objective != "distill" and (config.data_pack or config.data_workers):
        raise ConfigError("data_pack and data_workers serve objective='distill' only")
    if list(config.milestones) != sorted(config.milestones):
        raise ConfigError(f"milestones must ascend, got {list(config.milestones)}")
    if config.objective == "distill":
        _validate_distill(config)
    return config


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _validate_distill(config: TrainConfig) -> None:
    from slimface.data.training import SOURCES
    from slimface.train.augment import AugmentConfig

    if not config.teacher:
        raise ConfigError("objective='distill' needs a teacher (e.g. teacher="
                          "'mobilefacenet-tflite')")
    members = [m.strip() for m in config.teacher.split("+")]
    if not all(members) or len(set(members)) != len(members):
        raise ConfigError(f"teacher must be a registry name or distinct names joined by '+' "
                          f"(e.g. 'dlib-resnet+mobilefacenet-tflite'), got {config.teacher!r}")
    bad = [s for s in config.sources if s not in SOURCES]
    if bad or not config.sources:
        raise ConfigError(f"sources must name some of {', '.join(SOURCES)}, got "
                          f"{list(config.sources)}")
    unknown = sorted(set(config.loss_weights) - set(DISTILL_LOSSES))
    if unknown:
        raise ConfigError(f"unknown loss weight(s) {unknown} for objective='distill' (known: "
                          f"{', '.join(DISTILL_LOSSES)})")
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(config.augment) - known)
    if unknown:
        raise ConfigError(f"unknown augment key(s) {unknown} (known: {', '.join(sorted(known))})")


def import_config_file(path: Path) -> types.ModuleType:
    """Import an experiment file by path (no ``exec`` into globals); a dataclass built with
    an unknown key (``TypeError``) becomes a :class:`ConfigError` naming the file."""
    spec = importlib.util.spec_from_file_location(f"slimface_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python config file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except TypeError as exc:  # Config(unknown_key=...) lands here
        raise ConfigError(f"{path}: {exc}") from exc
    return module


def load_config_object(path: str | Path, cls: type[T]) -> T:
    """The ``config = cls(...)`` object of an experiment file, or a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        hint = ""
        cands = sorted(Path("configs").glob("*.py")) if Path("configs").is_dir() else []
        if cands:
            hint = f" (configs here: {', '.join(c.stem for c in cands)})"
        raise ConfigError(f"{p}: config file not found{hint}")
    config = getattr(import_config_file(p), "config", None)
    if not isinstance(config, cls):
        raise ConfigError(f"{p}: must define `config = {cls.__name__}(...)`")
    return config


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load ``configs/<name>.py`` (its ``config`` attribute) and apply ``--set`` overrides."""
    return apply_overrides(validate(load_config_object(path, TrainConfig)), overrides)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ConfigError."""
    known = config_fields()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}")
    fixed = {k: tuple(v) if known[k] is tuple else v for k, v in values.items()}
    return TrainConfig(**fixed)

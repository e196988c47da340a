"""Retired: distillation is the ``distill`` objective of the one training loop.

Write ``config = TrainConfig(objective="distill", teacher=..., backbone=..., ...)`` (see
``docs/training.md``, which maps every old field) and run ``slimface train CONFIG``;
``slimface compress distill`` is an alias of it. Config files that still build the old
``DistillConfig`` get a :class:`~slimface.errors.ConfigError` saying so.
"""
from __future__ import annotations

from typing import Any, NoReturn

from slimface.errors import ConfigError

RETIRED = ("DistillConfig and its loop were retired: distillation is objective='distill' of "
           "slimface.train.config.TrainConfig, run by `slimface train CONFIG` (docs/training.md "
           "maps the old fields)")


def DistillConfig(*_: Any, **__: Any) -> NoReturn:  # noqa: N802 - the retired class's name
    raise ConfigError(RETIRED)


def load_distill_config(*_: Any, **__: Any) -> NoReturn:
    raise ConfigError(RETIRED)

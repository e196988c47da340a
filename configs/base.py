"""The defaults every experiment starts from (see ``slimface.train.config.TrainConfig``).

Experiment files change only what differs: ``config = TrainConfig(backbone=..., ...)``.
Run one with ``slimface train configs/<name>.py [--data DIR] [--max-steps N] [--set k=v]``.
"""
from slimface.train.config import TrainConfig

config = TrainConfig()

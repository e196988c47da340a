"""``slimface compress distill CONFIG ...``: an alias of ``slimface train CONFIG ...``.

Distillation is an objective of the one training loop (``objective="distill"`` in a
``TrainConfig``); this command takes the same arguments and runs it, after a note on stderr.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from slimface.cli import train

NOTE = "slimface compress distill is an alias of `slimface train`; run that instead"


def register(sub: Any) -> None:
    p = sub.add_parser("distill", help="alias of `slimface train` (distillation configs)",
                       description=f"Alias of `slimface train`. {train.DESCRIPTION}")
    train.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"slimface: note: {NOTE}", file=sys.stderr)
    return train.run(args)

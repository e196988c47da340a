"""``slimface train CONFIG [--data DIR] [--out DIR] [--resume] [--set k=v ...]``.

Runs unchanged under ``torchrun --nproc_per_node N -m slimface.cli.main train CONFIG``.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from slimface.cli._common import add_json_arg, emit_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a backbone + head from a config file",
                       description="Train from configs/<name>.py; checkpoints, metrics.jsonl "
                                   "and backbone.pt go to --out (default work_dirs/<name>).")
    p.add_argument("config", help="experiment file, e.g. configs/mobilefacenet_arcface_celeba.py")
    p.add_argument("--data", help="data root (or the identity folder itself)")
    p.add_argument("--out", help="work dir (default work_dirs/<config stem>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (schedule unchanged)")
    p.add_argument("--batch-size", type=int, help="per-process batch size")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (type-checked; repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(func=run)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    flags = {"max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr}
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from slimface.eval.view1 import LfwView1Evaluator
    from slimface.train.run import train_from_config

    summary = train_from_config(args.config, data=args.data, out=args.out, resume=args.resume,
                                overrides=_flag_overrides(args), progress=not args.no_progress,
                                view1_check=LfwView1Evaluator)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        keys = ("steps", "loss", "train_acc", "images_per_s", "lfw_view1_acc", "seconds")
        print_table([{k: summary.get(k) for k in keys}], title=f"trained -> {summary['out']}")
        emit_json(summary, args.json)
    return 0

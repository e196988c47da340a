"""``slimface train CONFIG [--data DIR] [--out DIR] [--resume] [--set k=v ...]``.

One command for every objective (``objective="margin"`` or ``"distill"`` in the config). Runs
unchanged under ``torchrun --nproc_per_node N -m slimface.cli.main train CONFIG``.
``--export FILE`` writes the run's ``backbone.pt`` (or, with ``--last-step``, its latest
step) as a shippable safetensors file instead of training.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from slimface.cli._common import (add_json_arg, emit_result, format_table, hidden_alias,
                                  parse_meta)

DESCRIPTION = ("Train from configs/<name>.py (margin heads on identity folders, or "
               "distillation from a teacher); checkpoint.pt, log.jsonl and backbone.pt go to "
               "--out (default work_dirs/<name>).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment file, e.g. configs/distill_mobilefacenet_fm.py")
    p.add_argument("--data", help="data root (or, for margin heads, the identity folder)")
    p.add_argument("--out", help="work dir (default work_dirs/<config stem>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (schedule unchanged)")
    p.add_argument("--until-step", type=int, default=0,
                   help="stop this run at this step (checkpointed; schedule unchanged)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop this run after N minutes (checkpointed; schedule unchanged)")
    batch = p.add_argument("--batch", dest="batch_size", type=int,
                           help="per-process batch size")
    hidden_alias(p, batch, "--batch-size")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (type-checked; repeatable)")
    p.add_argument("--export", metavar="FILE",
                   help="instead of training: write OUT/backbone.pt as fp32 safetensors FILE")
    p.add_argument("--last-step", action="store_true",
                   help="with --export: write the latest step (OUT/checkpoint.pt) instead of "
                        "backbone.pt, the step with the best LFW view-1 TAR")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="extra metadata for --export (LFW figure, command...); repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(_parser=p)  # for usage errors found after parsing


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model from a config file", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    flags = {"max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr}
    return [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)


def _export(args: argparse.Namespace) -> int:
    from slimface.train.run import export_from_config

    summary = export_from_config(args.config, args.export, out=args.out,
                                 overrides=_flag_overrides(args), metadata=parse_meta(args.meta),
                                 last_step=args.last_step)
    emit_result(args.json, summary, format_table([summary], title="exported"))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.export:
        return _export(args)
    if args.last_step:
        args._parser.error("--last-step chooses what --export writes; add --export FILE")
    from slimface.eval.view1 import LfwView1Evaluator
    from slimface.train.run import train_from_config

    summary = train_from_config(args.config, data=args.data, out=args.out, resume=args.resume,
                                overrides=_flag_overrides(args), progress=not args.no_progress,
                                view1_check=LfwView1Evaluator, until_step=args.until_step,
                                max_minutes=args.max_minutes)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        keys = ("steps", "loss", "train_acc", "cos_to_teacher", "images_per_s",
                "lfw_view1_acc", "hours")
        emit_result(args.json, summary,
                    format_table([{k: summary.get(k) for k in keys if k in summary}],
                                 title=f"trained -> {summary['out']}"))
    return 0

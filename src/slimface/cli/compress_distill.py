"""``slimface compress distill CONFIG [--resume] [--out DIR] [--set k=v ...]``: train a student
from a frozen teacher (see ``slimface.compress.distill``); ``--export FILE`` writes the
trained student as a shippable safetensors file instead of training."""
from __future__ import annotations

import argparse
import json
from typing import Any

from slimface.cli._common import add_json_arg, emit_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser("distill", help="distill a student from a teacher (config file)",
                       description="Distill a student network from a frozen teacher. Data is "
                                   "aligned and the teacher's embeddings are computed once "
                                   "(cached); checkpoints, log.jsonl and model.pt go to --out "
                                   "(default work_dirs/<config stem>).")
    p.add_argument("config", help="experiment file, e.g. configs/distill_slimface_mobile.py")
    p.add_argument("--data", help="data root (default $SLIMFACE_DATA or ../shared/data)")
    p.add_argument("--out", help="work dir (default work_dirs/<config stem>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop this run after N minutes (checkpointed; schedule unchanged)")
    p.add_argument("--until-step", type=int, default=0,
                   help="stop at this step (checkpointed; schedule unchanged)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (type-checked; repeatable)")
    p.add_argument("--export", metavar="FILE",
                   help="instead of training: write OUT/model.pt as fp32 safetensors FILE")
    p.add_argument("--meta", metavar="JSON", default="{}",
                   help="extra JSON metadata for --export (LFW figure, command...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(func=run)


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slimface.compress.distill import (default_out_dir, export_student,
                                           load_distill_config)
    from slimface.errors import ConfigError

    cfg = load_distill_config(args.config, args.overrides)
    out_dir = Path(args.out or cfg.out or default_out_dir(args.config))
    try:
        extra = json.loads(args.meta)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--meta is not valid JSON ({exc})") from None
    data_json = out_dir / "data.json"
    meta = {"distilled_from": cfg.teacher, "config": Path(args.config).name,
            "training_data": json.loads(data_json.read_text()) if data_json.is_file() else {},
            **extra}
    path = export_student(out_dir / "model.pt", args.export, meta)
    summary = {"file": str(path), "size_bytes": path.stat().st_size}
    print_table([summary], title="exported")
    emit_json(summary, args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.export:
        return _export(args)
    from slimface.compress.distill import run_distillation
    from slimface.eval.view1 import LfwView1Evaluator

    summary = run_distillation(args.config, args.overrides, data=args.data, out=args.out,
                               resume=args.resume, max_minutes=args.max_minutes,
                               progress=not args.no_progress, until_step=args.until_step,
                               view1_check=LfwView1Evaluator)
    keys = ("step", "steps", "train_seconds", "best_lfw_view1", "model")
    print_table([{k: summary.get(k) for k in keys}], title=f"distilled -> {summary['out']}")
    emit_json(summary, args.json)
    return 0

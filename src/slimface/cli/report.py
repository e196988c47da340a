"""``slimface report``: the whole story on real data (what ``make demo`` runs)."""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from slimface.cli._common import add_json_arg, add_models_arg, emit_result, format_table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="evaluate, size and time every model; write report.md/json + plots",
        description="Evaluate every model slimface can make here on LFW view 2 (10-fold), "
                    "count parameters, MACs and bytes, time each against the fp32 teacher in "
                    "the same run, and write report.md, report.json and PNG plots.")
    p.add_argument("--data", metavar="DIR",
                   help="data root holding lfw/ (default: $SLIMFACE_DATA or ../shared/data)")
    p.add_argument("--out", default="reports/latest", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="demo mode: 60 pairs per fold (600 pairs) and fewer timing repeats")
    add_models_arg(p, default=[], dest="model",
                   help="also report these models (registry names or .slim/.pt/.onnx files)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every timing")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slimface.eval.report import ReportSettings, build_report

    settings = ReportSettings(quick=args.quick, threads=args.threads)
    command = "slimface " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = build_report(args.out, args.data, settings, extra=args.model, command=command)
    emit_result(args.json, report, format_table(
        [{"model": r["model"], "acc%": 100 * r["accuracy_mean"],
          "TAR@1e-4 %": _percent(r.get("all_pairs_tar_at_far_1e-4")),
          "rank-1 %": _percent(r.get("rank1")),
          "MB": r["bytes"] and r["bytes"] / 1e6, "x smaller": r["compression"],
          "ms b1": r["ms_b1"], "speed-up b1": r["speedup_b1"]} for r in report["models"]],
        title=f"report written to {args.out}/report.md"))
    return 0


def _percent(value: float | None) -> float | str:
    """A read-out as a percentage, "n/a" where the images could not resolve it. Pair
    accuracy alone hides what users see at low false-accept rates and in 1:N search, so the
    summary shows all three."""
    return "n/a" if value is None else 100 * value

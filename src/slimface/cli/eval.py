"""``slimface eval``: LFW verification accuracy of a model from raw images.

    slimface eval --model dlib-resnet --benchmark lfw --json /tmp/eval.json

prints a table (accuracy mean +- std over the 10 folds, AUC, TAR@FAR, thresholds, pair and
no-face counts, timings) and, with ``--json``, the JSON summary. Beside the pair protocol it
reads out what deployments see, over the same images: every image scored against every
other (TAR at FAR 1e-3, 1e-4, 1e-5) and a 1:N search (first image of each person with two
or more enrolled; rank-1, rank-5, and DIR at FAR 1e-2 and 1e-3 with single-image people as
impostors).
"""
from __future__ import annotations

import argparse
from typing import Any

from slimface.conventions import DEFAULT_FLIP, FLIP_MODES
from slimface.cli._common import (add_json_arg, add_model_arg, emit_result, format_table,
                                   hidden_alias, positive_int)

BENCHMARKS = {"lfw": "view2", "lfw-view1": "view1"}


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="verification accuracy on LFW (10-fold, from raw images)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, help="registry name or .slim/.pt/.onnx file (default: the best bundled)")
    p.add_argument("--benchmark", default="lfw", choices=sorted(BENCHMARKS),
                   help="lfw = view 2, 6000 pairs, 10 folds (report); lfw-view1 = tuning split")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data folder holding lfw/ (default: $SLIMFACE_DATA, ../shared/data)")
    p.add_argument("--flip", default=DEFAULT_FLIP, choices=FLIP_MODES,
                   help="add the mirror image's embedding: sum (default, as embed, verify "
                        "and the gallery), none, or concatenate")
    batch = p.add_argument("--batch", type=positive_int, default=64,
                           help="embedding batch size (default 64)")
    hidden_alias(p, batch, "--batch-size")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the crop cache")
    p.add_argument("--roc", default=None, metavar="PNG", help="write the ROC curve to PNG")
    p.add_argument("--scores", action="store_true",
                   help="include per-pair scores, labels and folds in the JSON")
    add_json_arg(p)
    p.set_defaults(func=run)


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def readout_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """All-pairs TAR, rank-k and DIR rows (n/a where the data cannot resolve a figure)."""
    if "all_pairs" not in r:
        return []
    ap, ident = r["all_pairs"], r["identification"]
    rows = [(f"all pairs TAR @ FAR {f}", _percent(v)) for f, v in r["tar_at_far"].items()]
    rows.append(("all pairs: genuine / impostor", f"{ap['n_genuine']:,} / {ap['n_impostor']:,}"))
    rows += [("1:N rank-1 / rank-5", f"{_percent(r['rank1'])} / {_percent(r['rank5'])}")]
    rows += [(f"1:N DIR @ FAR {f}", _percent(v)) for f, v in r["dir_at_far"].items()]
    rows.append(("1:N gallery / mated / impostor probes",
                 f"{ident['n_gallery']} / {ident['n_mated_probes']} / "
                 f"{ident['n_impostor_probes']}"))
    return rows


def result_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The human table: one (what, value) row per figure."""
    acc = _percent(r["accuracy_mean"])
    if r.get("accuracy_std") is not None:
        acc += f" +- {_percent(r['accuracy_std'])}"
    details = r.get("tar_at_far_details", {})
    rows = [("model", r["model"]), ("benchmark", f"{r['benchmark']} (flip {r['flip']})"),
            ("accuracy", acc), ("AUC", f"{r['auc']:.5f}")]
    for key, d in details.items():
        note = f" (n_neg {d['n_neg']}: below resolution, 0 false accepts)" \
            if d["below_resolution"] else ""
        rows.append((key.replace("tar_at_far_", "TAR @ FAR "), _percent(d["tar"]) + note))
    rows += readout_rows(r)
    thresholds = r.get("thresholds", [])
    rows += [("thresholds", " ".join(f"{t:.4f}" for t in thresholds)),
             ("pairs / images", f"{r['n_pairs']} / {r['n_images']}"),
             ("no face (centre crop)", r["no_face"]),
             (f"fallback detector ({r.get('fallback_detector_name')})", r["fallback_detector"]),
             ("seconds (align + embed)",
              f"{r['seconds']:.1f} ({r['seconds_align']:.1f} + {r['seconds_embed']:.1f})")]
    return [{"what": k, "value": v} for k, v in rows]


def run(args: argparse.Namespace) -> int:
    import torch

    from slimface.eval.run import evaluate_lfw, json_summary
    from slimface.runtime.loader import default_model_name, load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model or default_model_name())
    result = evaluate_lfw(model, args.data, flip=args.flip, batch_size=args.batch,
                          cache=not args.no_cache, progress=True,
                          pairs=BENCHMARKS[args.benchmark])
    roc = None
    if args.roc:
        from slimface.eval.plots import curves_from_results, plot_roc

        path = plot_roc(args.roc, curves_from_results([result]),
                        title=f"LFW {result['benchmark']} ROC")
        roc = f"ROC plot: {path}"
    emit_result(args.json, json_summary(result, include_scores=args.scores),
                format_table(result_rows(result)), roc)
    return 0

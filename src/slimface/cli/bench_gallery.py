"""``slimface bench gallery``: 1:N search on a large synthetic gallery, exact vs the index.

Builds ``--n`` seeded random identities (SQLite + FAISS, as ``slimface gallery`` does), sets
the query noise so exact search is right ~99% of the time, then reports single-query
latency (median, p95) of exact search, of the index, and of a full ``Gallery.identify``,
and recall@1 of the index relative to exact search, all in one run.
"""
from __future__ import annotations

import argparse
import json
import platform
from typing import Any

from slimface._provenance import git_commit
from slimface.cli._common import add_json_arg, emit_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="synthetic 1:N gallery search: latency and recall",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="enrolled identities")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--index", default=None,
                   help="index kind (default: the gallery's large-gallery kind)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="index parameter, e.g. nprobe=64, ef_search=128, nlist=4096")
    p.add_argument("--queries", type=int, default=2000, help="queries for recall@1")
    p.add_argument("--latency-queries", type=int, default=300,
                   help="single queries timed one by one")
    add_json_arg(p)
    p.set_defaults(func=run)


def _params(items: list[str]) -> dict[str, Any]:
    from slimface.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        out[key] = json.loads(value) if value.replace(".", "", 1).isdigit() else value
    return out


def run(args: argparse.Namespace) -> int:
    import os

    from slimface.gallery import index as ix
    from slimface.gallery import synthetic

    kind = args.index or ix.LARGE_KIND
    ix.SEARCH_INDEXES.get(kind)
    load_before = list(os.getloadavg())
    result = synthetic.run(n=args.n, dim=args.dim, seed=args.seed, kind=kind,
                           params=_params(args.param), n_queries=args.queries,
                           n_latency=args.latency_queries)
    result.update(commit=git_commit(), machine=platform.processor() or platform.machine(),
                  threads=int(os.environ.get("SLIMFACE_THREADS", "2")),
                  load_average_before=load_before, load_average=list(os.getloadavg()))
    rows = []
    for label, key, recall in (("exact (flat)", "exact_single_query", 1.0),
                               (f"{kind} index", "index_single_query",
                                result["recall_at_1_vs_exact"]),
                               (f"Gallery.identify ({kind})", "identify_single_query",
                                result["recall_at_1_vs_exact"])):
        stats = result[key]
        rows.append({"search": label, "median_ms": stats["median_ms"], "p95_ms": stats["p95_ms"],
                     "best3_median_ms": stats["best_of_3_median_ms"],
                     "best3_p95_ms": stats["best_of_3_p95_ms"], "recall@1": recall})
    print_table(rows, title=f"{args.n} x {args.dim}-d identities, noise sigma "
                            f"{result['noise_sigma']} (exact top-1 right "
                            f"{result['exact_top1_accuracy']:.3f})")
    emit_json(result, args.json)
    return 0

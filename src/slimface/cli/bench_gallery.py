"""``slimface bench gallery``: 1:N search on a large synthetic gallery, exact vs the index.

(``slimface bench gallery-load``, also here: identify clients and an enrolling writer in
separate processes against one gallery; latency, throughput and a check of every answer.)

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
from slimface.cli._common import add_json_arg, emit_result, format_table


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="synthetic 1:N gallery search: latency and recall",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="enrolled identities")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default 128)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random identities and queries (default 0)")
    p.add_argument("--index", default=None,
                   help="index kind (default: the gallery's large-gallery kind)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="index parameter, e.g. nprobe=64, ef_search=128, nlist=4096")
    p.add_argument("--queries", type=int, default=2000, help="queries for recall@1")
    p.add_argument("--latency-queries", type=int, default=300,
                   help="single queries timed one by one")
    add_json_arg(p)
    p.set_defaults(func=run)
    register_load(sub)


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
    emit_result(args.json, result,
                format_table(rows, title=f"{args.n} x {args.dim}-d identities, noise sigma "
                                         f"{result['noise_sigma']} (exact top-1 right "
                                         f"{result['exact_top1_accuracy']:.3f})"))
    return 0


def register_load(sub: Any) -> None:
    from slimface.cli._common import nonneg_int, positive_int

    p = sub.add_parser(
        "gallery-load", help="gallery under load: identify clients + an enrolling writer",
        description="Run N identify clients and one enrolling writer (separate processes) "
                    "against one gallery for a bounded time; report identify latency "
                    "p50/p99, throughput, and whether every answer matched the state "
                    "committed when it was asked (see slimface.gallery.loadcheck).")
    p.add_argument("--db", default=None,
                   help="gallery file to create and keep (default: a temporary one); "
                        "must not exist")
    p.add_argument("--clients", type=positive_int, default=2, help="identify processes")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the load runs")
    p.add_argument("--identities", type=nonneg_int, default=1000,
                   help="identities enrolled before the load starts")
    p.add_argument("--dim", type=positive_int, default=128, help="embedding size")
    p.add_argument("--write-interval-ms", type=float, default=20.0,
                   help="pause of the writer between two commits")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the enrolled identities and the queries (default 0)")
    add_json_arg(p)
    p.set_defaults(func=run_load)


def run_load(args: argparse.Namespace) -> int:
    import os
    import sys

    from slimface.errors import ConfigError
    from slimface.gallery.loadcheck import LoadSpec, run

    if args.seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {args.seconds}")
    if args.db is not None and os.path.exists(args.db):
        raise ConfigError(f"{args.db}: already exists; the load check creates its own "
                          f"gallery (its writer would change yours)")
    spec = LoadSpec(identities=args.identities, dim=args.dim, clients=args.clients,
                    seconds=args.seconds, write_interval_s=args.write_interval_ms / 1e3,
                    seed=args.seed)
    load_before = list(os.getloadavg())
    result = run(spec, db=args.db)
    result.update(commit=git_commit(), cpu=_cpu_model(), cpu_count=os.cpu_count(),
                  load_average_before=load_before, load_average=list(os.getloadavg()))
    lat = result["latency_ms"]
    emit_result(args.json, result, format_table(
        [{"clients": spec.clients, "seconds": spec.seconds,
          "identify/s": result["identify_per_s"], "p50 ms": lat.get("p50"),
          "p99 ms": lat.get("p99"), "writes/s": result["writes_per_s"],
          "checked": result["answers_checked"],
          "inconsistent": result["inconsistent"], "stale": result["stale"]}],
        title=f"gallery load check: {spec.identities} identities at the start, "
              f"{spec.dim}-d, {result['identities_end']} at the end"))
    if not result["consistent"]:
        print("slimface: error: some answers did not match the committed state: "
              f"{result['examples']}", file=sys.stderr)
        return 1
    return 0


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

"""Synthetic identification benchmark: a large gallery of random identity embeddings.

Identities are seeded random unit vectors (isotropic Gaussian, normalised: the hardest case
for approximate search, since there is no cluster structure to exploit). Each query is a
noisy view of one enrolled identity, ``normalise(x + sigma * g)``, with ``sigma`` found by
bisection so that *exact* search names the right identity about 99% of the time. The
approximate index is then judged by recall@1 relative to exact search (same top-1) and by
the wall time of one single-query ``Gallery.identify`` (SQLite name lookup included), all
measured in one run.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from slimface.gallery import index as ix
from slimface.gallery.gallery import Gallery, ModelInfo

log = logging.getLogger(__name__)


def identities(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def noisy_views(x: np.ndarray, sources: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((len(sources), x.shape[1]),
                                                    dtype=np.float32)
    q = x[sources] + np.float32(sigma) * g
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def exact_top1(flat: Any, q: np.ndarray) -> np.ndarray:
    return ix.search(flat, q, 1)[1][:, 0]


def calibrate_sigma(x: np.ndarray, flat: Any, target: float = 0.99, n_queries: int = 1000,
                    seed: int = 1, steps: int = 8) -> tuple[float, float]:
    """Bisection on the noise level so exact search is right ``target`` of the time."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(x), n_queries, replace=False)
    lo, hi, best = 0.0, 0.5, (0.0, 1.0)
    for _ in range(steps):
        mid = (lo + hi) / 2
        acc = float(np.mean(exact_top1(flat, noisy_views(x, sources, mid, seed)) == sources + 1))
        log.info("noise sigma %.4f: exact top-1 accuracy %.3f", mid, acc)
        if acc >= target:
            lo, best = mid, (mid, acc)
        else:
            hi = mid
    return best


def _single_query_ms(fn: Any, q: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Per query: the first call's time, and the best of ``repeats`` calls.

    On a shared, oversubscribed machine the first-call figures include time the process
    spent descheduled; the best-of-``repeats`` figures estimate the unloaded cost.
    """
    first, best = [], []
    for row in q:
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(row[None])
            runs.append((time.perf_counter() - t) * 1e3)
        first.append(runs[0])
        best.append(min(runs))
    return {"median_ms": float(np.median(first)), "p95_ms": float(np.percentile(first, 95)),
            f"best_of_{repeats}_median_ms": float(np.median(best)),
            f"best_of_{repeats}_p95_ms": float(np.percentile(best, 95)),
            "n_queries": len(first)}


def run(n: int = 1_000_000, dim: int = 128, seed: int = 0, kind: str = ix.LARGE_KIND,
        params: dict[str, Any] | None = None, n_queries: int = 2000,
        n_latency: int = 300, n_flat_latency: int = 30, workdir: str | None = None,
        target: float = 0.99, n_calibration: int = 1000) -> dict[str, Any]:
    """Build the gallery (SQLite + index) and measure exact vs ``kind`` in one run."""
    t0 = time.perf_counter()
    x = identities(n, dim, seed)
    ids = np.arange(1, n + 1, dtype=np.int64)  # = embedding ids of a fresh gallery
    flat = ix.build_index(ix.IndexSpec("flat"), x, ids)
    sigma, cal_acc = calibrate_sigma(x, flat, target=target, seed=seed + 1,
                                     n_queries=min(n_calibration, n))
    sources = np.random.default_rng(seed + 2).choice(n, n_queries, replace=False)
    q = noisy_views(x, sources, sigma, seed + 3)
    exact = exact_top1(flat, q)
    flat_ms = _single_query_ms(lambda r: ix.search(flat, r, 1), q[:n_flat_latency])
    del flat

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        info = ModelInfo("synthetic", f"synthetic-{n}x{dim}-seed{seed}", "none", dim)
        t = time.perf_counter()
        gallery = Gallery.create(Path(tmp) / "synthetic.db", info, index_kind="flat")
        gallery.store._conn.execute("PRAGMA synchronous=NORMAL")  # bulk load speed only
        with gallery.store.transaction() as conn:
            gallery.store.insert_many(conn, [f"id{i:07d}" for i in range(n)], x)
        db_s = time.perf_counter() - t
        t = time.perf_counter()
        gallery.rebuild_index(kind, **(params or {}))
        index_s = time.perf_counter() - t
        index = gallery.index
        approx = ix.search(index, q, 1)[1][:, 0]
        ident = gallery.identify(q[:200], top_k=1)  # through SQLite: names of the index hits
        names_ok = np.mean([r[0].name == f"id{i - 1:07d}" for r, i in zip(ident, approx[:200])])
        index_ms = _single_query_ms(lambda r: ix.search(index, r, 1), q[:n_latency])
        identify_ms = _single_query_ms(lambda r: gallery.identify(r, 1), q[:n_latency])
        gallery.close()

    return {"n": n, "dim": dim, "seed": seed, "noise_sigma": round(sigma, 5),
            "exact_top1_accuracy": float(np.mean(exact == sources + 1)),
            "calibration_accuracy": cal_acc, "index": kind, "params": params or {},
            "recall_at_1_vs_exact": float(np.mean(approx == exact)),
            "identify_agrees_with_index": float(names_ok),
            "exact_single_query": flat_ms, "index_single_query": index_ms,
            "identify_single_query": identify_ms,
            "build_seconds": {"sqlite": round(db_s, 1), "index": round(index_s, 1)},
            "n_queries_recall": n_queries, "seconds_total": round(time.perf_counter() - t0, 1)}

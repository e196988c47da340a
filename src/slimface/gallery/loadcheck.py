"""Load check of a gallery: N identify clients and one enrolling writer, several processes.

The writer enrolls new identities, removes some and re-enrolls removed ones, as fast as
``write_interval_s`` allows, and logs each commit: the generation it made and when COMMIT
returned. Each client is a long-lived process with the gallery open read-only (a server, as
``FaceMatcher`` would be); it identifies the exact embedding of an identity, recording when
the call began, how long it took, the generation it answered from and the top-1 name.

Afterwards every answer is checked against the committed state at its generation:

* consistent: an identity enrolled at that generation is named (its own vector is the query),
  and a removed or never-enrolled one never is;
* fresh: the generation is no older than the last commit that returned before the call began
  (so no answer misses a committed write).

Identities are seeded random unit vectors (``vector(seed, k, dim)``), so every process can
rebuild any identity's embedding from its number without sharing data. Nothing here needs a
face model: it measures the gallery (SQLite + FAISS + the freshness check).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slimface.gallery.gallery import Gallery, ModelInfo

#: Operations of the writer, with their weights (re-enroll only when something was removed).
WRITE_MIX = (("enroll", 0.5), ("remove", 0.3), ("reenroll", 0.2))


def vector(seed: int, k: int, dim: int) -> np.ndarray:
    """The unit embedding of identity ``k`` (the same in every process)."""
    v = np.random.default_rng([seed, k]).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def name_of(k: int) -> str:
    return f"id{k:07d}"


def number_of(name: str | None) -> int:
    return -1 if name is None else int(name[2:])


@dataclass(frozen=True)
class LoadSpec:
    """What to run: gallery size at the start, embedding size, clients, duration, pace."""

    identities: int = 1000
    dim: int = 128
    clients: int = 2
    seconds: float = 20.0
    write_interval_s: float = 0.02
    seed: int = 0


def prepare(db: str | os.PathLike[str], spec: LoadSpec) -> None:
    """Create the gallery with identities ``0 .. spec.identities - 1``."""
    info = ModelInfo(name="synthetic", fingerprint=f"synthetic-{spec.dim}", template="none",
                     embedding_dim=spec.dim)
    with Gallery.create(db, info) as g:
        if spec.identities:
            x = np.stack([vector(spec.seed, k, spec.dim) for k in range(spec.identities)])
            g.enroll_many([name_of(k) for k in range(spec.identities)], x)


def _wait_for_start(ready: Any, go: Any) -> float:
    ready.release()
    go.wait()
    return time.monotonic()


def writer(db: str, spec: LoadSpec, log_path: str, ready: Any, go: Any) -> None:
    """Enroll / remove / re-enroll until the time is up; one JSON line per commit."""
    rng = np.random.default_rng([spec.seed, 1])
    enrolled = set(range(spec.identities))
    removed: list[int] = []
    next_k = spec.identities
    ops, weights = zip(*WRITE_MIX)
    with Gallery.open(db) as g, open(log_path, "w") as log:
        log.write(json.dumps({"start_generation": g.store.generation}) + "\n")
        deadline = _wait_for_start(ready, go) + spec.seconds
        while time.monotonic() < deadline:
            p = np.array(weights)
            if not removed:
                p[ops.index("reenroll")] = 0
            if len(enrolled) <= 1:
                p[ops.index("remove")] = 0
            op = ops[int(rng.choice(len(ops), p=p / p.sum()))]
            if op == "enroll":
                k, next_k = next_k, next_k + 1
            elif op == "remove":
                k = sorted(enrolled)[int(rng.integers(len(enrolled)))]
            else:
                k = removed.pop(int(rng.integers(len(removed))))
            if op == "remove":
                g.remove(name_of(k))
                enrolled.discard(k)
                removed.append(k)
            else:
                g.enroll(name_of(k), vector(spec.seed, k, spec.dim)[None])
                enrolled.add(k)
            done = time.monotonic()
            log.write(json.dumps([g.store.generation, done, op, k]) + "\n")
            if spec.write_interval_s > 0:
                time.sleep(spec.write_interval_s)


def client(db: str, spec: LoadSpec, index: int, out_path: str, ready: Any, go: Any) -> None:
    """Identify one identity's exact embedding after another until the time is up.

    Half the queries ask for a starting identity, half for one the writer has probably
    enrolled lately (its pace is known), so fresh additions and removals are exercised.
    """
    rng = np.random.default_rng([spec.seed, 100 + index])
    rows = []
    per_s = 0.5 / max(spec.write_interval_s, 1e-3)  # the writer's enroll pace, roughly
    with Gallery.open(db, readonly=True) as g:
        start = _wait_for_start(ready, go)
        deadline = start + spec.seconds
        while (now := time.monotonic()) < deadline:
            newest = spec.identities + int(per_s * (now - start)) + 8
            if rng.random() < 0.5 or newest <= spec.identities:
                k = int(rng.integers(max(spec.identities, 1)))
            else:
                k = int(rng.integers(spec.identities, newest))
            q = vector(spec.seed, k, spec.dim)[None]
            began = time.monotonic()
            ranked = g.identify(q, top_k=1)[0]
            took = time.monotonic() - began
            top = ranked[0] if ranked else None
            rows.append((began, took, g.last_generation, k,
                         number_of(top.name if top else None), top.score if top else np.nan))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    np.save(out_path, arr)


def check(log_lines: Sequence[Any], start_identities: int, answers: np.ndarray) -> dict[str, Any]:
    """Judge answers (rows: began, took, generation, asked, top-1, score) against the log.

    ``log_lines``: first ``{"start_generation": g0}``, then ``[generation, done, op, k]``
    per commit, in commit order.
    """
    g0 = int(log_lines[0]["start_generation"])
    commits = [tuple(x) for x in log_lines[1:]]
    gens = np.array([c[0] for c in commits] or [g0], dtype=np.int64)
    done = np.array([c[1] for c in commits] or [-np.inf])
    state = set(range(start_identities))
    order = np.argsort(answers[:, 2], kind="stable") if len(answers) else np.array([], int)
    inconsistent, stale, unverifiable, examples = 0, 0, 0, []
    applied, gen_now = 0, g0
    last_gen = int(gens[-1]) if commits else g0
    for i in order:
        began, _, gen, asked, top, _ = answers[i]
        gen, asked, top = int(gen), int(asked), int(top)
        if gen > last_gen or gen < g0:
            unverifiable += 1
            continue
        while applied < len(commits) and commits[applied][0] <= gen:
            _, _, op, k = commits[applied]
            (state.discard if op == "remove" else state.add)(int(k))
            gen_now = commits[applied][0]
            applied += 1
        ok = top == asked if asked in state else (top != asked and (top in state or
                                                                    (top < 0 and not state)))
        if not ok:
            inconsistent += 1
            if len(examples) < 5:
                examples.append({"generation": gen, "asked": name_of(asked),
                                 "answer": name_of(top) if top >= 0 else None,
                                 "enrolled_then": asked in state})
        committed_before = np.searchsorted(done, began, side="left")  # commits done < began
        must_see = int(gens[committed_before - 1]) if committed_before > 0 else g0
        if gen < must_see:
            stale += 1
    checked = len(answers) - unverifiable
    return {"answers_checked": int(checked), "inconsistent": int(inconsistent),
            "stale": int(stale), "unverifiable": int(unverifiable),
            "consistent": bool(inconsistent == 0 and stale == 0 and checked > 0),
            "examples": examples, "generations_seen": int(gen_now - g0)}


def run(spec: LoadSpec, db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Prepare a gallery, run the writer and ``spec.clients`` clients, check every answer."""
    with tempfile.TemporaryDirectory(prefix="slimface-load-") as work:
        db_path = str(db) if db is not None else str(Path(work) / "load.db")
        prepare(db_path, spec)
        ctx = mp.get_context("spawn")
        ready, go = ctx.Semaphore(0), ctx.Event()
        log_path = str(Path(work) / "writes.jsonl")
        outs = [str(Path(work) / f"client{i}.npy") for i in range(spec.clients)]
        procs = [ctx.Process(target=writer, args=(db_path, spec, log_path, ready, go),
                             name="gallery-writer")]
        procs += [ctx.Process(target=client, args=(db_path, spec, i, outs[i], ready, go),
                              name=f"gallery-client-{i}") for i in range(spec.clients)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                if not ready.acquire(timeout=120):
                    raise RuntimeError("a load-check process did not start in 120 s")
            go.set()
            for p in procs:
                p.join(spec.seconds + 120)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
        failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"load-check processes failed: {', '.join(failed)}")
        lines = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()]
        answers = np.concatenate([np.load(o) for o in outs]) if outs else np.zeros((0, 6))
        with Gallery.open(db_path, readonly=True) as g:
            end_identities = len(g)
    took_ms = answers[:, 1] * 1e3
    ops = [c[2] for c in lines[1:]]
    result: dict[str, Any] = {
        "clients": spec.clients, "seconds": spec.seconds, "dim": spec.dim,
        "identities_start": spec.identities, "identities_end": end_identities,
        "write_interval_ms": spec.write_interval_s * 1e3,
        "writes": {op: ops.count(op) for op, _ in WRITE_MIX},
        "writes_per_s": round(len(ops) / spec.seconds, 2),
        "answers": int(len(answers)),
        "identify_per_s": round(len(answers) / spec.seconds, 1),
        "latency_ms": ({q: round(float(np.percentile(took_ms, p)), 3)
                        for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
                       if len(took_ms) else {}),
    }
    result.update(check(lines, spec.identities, answers))
    return result

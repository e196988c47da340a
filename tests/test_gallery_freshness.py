"""A gallery kept open (a server's FaceMatcher) answers from the latest committed state:
identities another process enrolled, removed or enrolled again are seen at the next search."""
from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _cli_child import run_cli
from _gallery_fakes import make_embedder, write_faces

import slimface
from slimface.gallery import loadcheck
from slimface.gallery.gallery import Gallery, ModelInfo

INFO = ModelInfo(name="tiny", fingerprint="abc123", template="arcface112", embedding_dim=8)

_WRITE = """
import sys, numpy as np
from slimface.gallery.gallery import Gallery
op, db, name = sys.argv[1:4]
with Gallery.open(db) as g:
    if op == "remove":
        g.remove(name)
    else:
        g.enroll(name, np.asarray(eval(sys.argv[4]), np.float32)[None])
"""


def _in_another_process(op: str, db: Path, name: str, vec: np.ndarray | None = None) -> None:
    args = [sys.executable, "-c", _WRITE, op, str(db), name]
    if vec is not None:
        args.append(json.dumps(vec.tolist()))
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_open_gallery_sees_enroll_remove_and_reenroll_of_another_process(tmp_path: Path):
    x = _unit(np.random.default_rng(0), 3)
    db = tmp_path / "g.db"
    with Gallery.create(db, INFO) as g:
        g.enroll("ann", x[:1])
    with Gallery.open(db) as server:  # opened before the other writes
        assert server.identify(x[1:2])[0][0].name == "ann"
        _in_another_process("enroll", db, "bob", x[1])
        assert server.identify(x[1:2])[0][0].name == "bob"
        _in_another_process("remove", db, "bob")
        assert [m.name for m in server.identify(x[1:2], top_k=5)[0]] == ["ann"]
        _in_another_process("enroll", db, "bob", x[2])
        assert server.identify(x[2:3])[0][0].name == "bob"
        assert server.identify(x[1:2])[0][0].score < 0.999  # bob's old vector is gone


def test_face_matcher_sees_identities_the_command_line_enrolled(tmp_path: Path):
    faces = write_faces(tmp_path / "img", 2, 3)
    db = tmp_path / "g.db"
    fm = slimface.FaceMatcher(embedder=make_embedder(flip="sum"), gallery=db, threshold=0.5)
    fm.enroll("p0", faces["p0"][:2])
    probe = faces["p1"][2]
    assert fm.identify(probe).candidates[0].name == "p0"  # the index is now in memory
    tiny = ["--model", "tiny-test"]  # the same weights as the matcher's
    steps = ((["enroll", "--name", "p1", *map(str, faces["p1"][:2]), *tiny], "p1"),
             (["remove", "--name", "p1"], "p0"),
             (["enroll", "--name", "p1", str(faces["p1"][0]), *tiny], "p1"))
    for command, expected in steps:
        cli = run_cli(["gallery", command[0], str(db), *command[1:]])
        assert cli.returncode == 0, cli.stderr
        assert fm.identify(probe).candidates[0].name == expected, command
    fm.close()


def test_removed_ids_are_never_given_to_new_embeddings(tmp_path: Path):
    x = _unit(np.random.default_rng(1), 3)
    db = tmp_path / "g.db"
    with Gallery.create(db, INFO) as writer, Gallery.open(db, readonly=True) as reader:
        writer.enroll("a", x[:1])
        writer.enroll("b", x[1:2])
        assert reader.identify(x[1:2])[0][0].name == "b"  # reader's index holds b's id
        high = int(writer.store.embedding_ids().max())
        writer.remove("b")
        writer.enroll("c", x[2:3])  # SQLite alone would give c the id b had
        assert int(writer.store.embedding_ids().max()) > high
        assert reader.identify(x[2:3])[0][0].name == "c"
        assert "b" not in {m.name for m in reader.identify(x[1:2], top_k=5)[0]}


def test_identify_while_another_process_enrolls_and_removes(tmp_path: Path):
    """Two processes at once: every answer matches the state committed when it was asked."""
    spec = loadcheck.LoadSpec(identities=40, dim=16, clients=1, seconds=3.0,
                              write_interval_s=0.005, seed=3)
    db = str(tmp_path / "g.db")
    loadcheck.prepare(db, spec)
    ctx = mp.get_context("spawn")
    ready, go = ctx.Semaphore(0), ctx.Event()
    log = str(tmp_path / "writes.jsonl")
    writer = ctx.Process(target=loadcheck.writer, args=(db, spec, log, ready, go))
    writer.start()
    rows = []
    rng = np.random.default_rng(0)
    with Gallery.open(db) as server:  # long-lived, opened before the writer starts
        assert ready.acquire(timeout=120)
        go.set()
        start = time.monotonic()
        while writer.is_alive() and time.monotonic() - start < 60:
            k = int(rng.integers(spec.identities + 2 * len(rows) // 50 + 10))
            began = time.monotonic()
            top = server.identify(loadcheck.vector(spec.seed, k, spec.dim)[None])[0][:1]
            rows.append((began, 0.0, server.last_generation, k,
                         loadcheck.number_of(top[0].name) if top else -1, 0.0))
    writer.join(60)
    assert writer.exitcode == 0
    lines = [json.loads(x) for x in Path(log).read_text().splitlines()]
    verdict = loadcheck.check(lines, spec.identities, np.array(rows, np.float64))
    assert verdict["consistent"], verdict
    assert verdict["answers_checked"] > 100 and verdict["generations_seen"] > 20
    ops = {line[2] for line in lines[1:]}
    assert ops == {"enroll", "remove", "reenroll"}


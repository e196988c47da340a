"""SQLite storage of a gallery: identities, their metadata and their embeddings.

The database is the single source of truth; the FAISS index beside it is a cache that can
always be rebuilt from it (see :mod:`slimface.gallery.gallery`). Every write happens in one
transaction that also bumps a ``generation`` counter, so the index can tell whether it is in
step, and a crash in the middle of an enroll leaves the database exactly as it was before
that enroll (SQLite's WAL journal + ``synchronous=FULL``).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from slimface.errors import GalleryError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id          INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source      TEXT,
    vector      BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_identity ON embeddings(identity_id);
"""

#: Meta keys every gallery records when it is created (what it was built with).
REQUIRED_META = ("schema_version", "model_name", "model_fingerprint", "template",
                 "embedding_dim", "flip", "generation")


@dataclass(frozen=True)
class Identity:
    """One enrolled person: ``n_embeddings`` images contributed to the gallery."""

    id: int
    name: str
    metadata: dict[str, Any]
    n_embeddings: int
    created_at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def vector_to_blob(vector: np.ndarray, dim: int) -> bytes:
    """float32 little-endian bytes; refuses the wrong dimension instead of storing garbage."""
    v = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
    if v.shape[0] != dim:
        raise GalleryError(f"embedding has {v.shape[0]} values, gallery expects {dim}")
    return v.tobytes()


def blobs_to_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class GalleryStore:
    """Thin typed wrapper over the SQLite file; one connection, explicit transactions."""

    def __init__(self, path: str | os.PathLike[str], conn: sqlite3.Connection):
        self.path = Path(path)
        self._conn = conn

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> "GalleryStore":
        """Create a new gallery file; refuses to overwrite an existing one."""
        p = Path(path)
        if p.exists():
            raise GalleryError(f"{p}: already exists; remove it or choose another path")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.creating")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        conn = cls._connect(tmp)
        try:
            with conn:
                conn.executescript(_SCHEMA)
                full = {"schema_version": SCHEMA_VERSION, "generation": 0,
                        "created_at": _now(), **meta}
                conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in full.items()])
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        os.replace(tmp, p)  # a half-created gallery never appears under the real name
        for leftover in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        return cls.open(p)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "GalleryStore":
        p = Path(path)
        if not p.is_file():
            raise GalleryError(f"{p}: no gallery here; create one with "
                               f"`slimface gallery create {p} --model M`")
        conn = cls._connect(p)
        store = cls(p, conn)
        store._check_schema()
        return store

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{path}: not a slimface gallery ({exc})") from None
        return conn

    def _check_schema(self) -> None:
        try:
            meta = self.meta()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise GalleryError(f"{self.path}: not a slimface gallery ({exc})") from None
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            self.close()
            raise GalleryError(f"{self.path}: not a slimface gallery (meta lacks {missing})")
        if int(meta["schema_version"]) > SCHEMA_VERSION:
            self.close()
            raise GalleryError(f"{self.path}: gallery schema {meta['schema_version']} is newer "
                               f"than this slimface understands ({SCHEMA_VERSION}); upgrade")

    def close(self) -> None:
        self._conn.close()

    # ---- transactions --------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, bumping ``generation``; any exception rolls back."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                         "WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- reads ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    @property
    def generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(json.loads(row[0]))

    @property
    def embedding_dim(self) -> int:
        return int(self.meta()["embedding_dim"])

    def count_embeddings(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def count_embeddings_of(self, identity_id: int) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE identity_id = ?",
                                      (identity_id,)).fetchone()[0])

    def count_identities(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def identities(self) -> list[Identity]:
        rows = self._conn.execute(
            "SELECT i.id, i.name, i.metadata, COUNT(e.id), i.created_at FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name"
        ).fetchall()
        return [Identity(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def identity_names(self, identity_ids: Sequence[int]) -> dict[int, str]:
        if not len(identity_ids):
            return {}
        ids = sorted({int(i) for i in identity_ids})
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(f"SELECT id, name FROM identities WHERE id IN ({marks})", ids)
        return dict(rows.fetchall())

    def find_identity(self, name: str) -> int | None:
        row = self._conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def all_embeddings(self, batch: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embedding ids, identity ids, float32 matrix) of the whole gallery, in id order."""
        dim = self.embedding_dim
        ids, owners, blobs = [], [], []
        cur = self._conn.execute("SELECT id, identity_id, vector FROM embeddings ORDER BY id")
        while rows := cur.fetchmany(batch):
            for eid, iid, blob in rows:
                ids.append(eid)
                owners.append(iid)
                blobs.append(blob)
        return (np.asarray(ids, np.int64), np.asarray(owners, np.int64),
                blobs_to_matrix(blobs, dim))

    def owners_of(self, embedding_ids: np.ndarray) -> dict[int, int]:
        """embedding id -> identity id for the ids a search returned."""
        ids = sorted({int(i) for i in np.asarray(embedding_ids).ravel() if i >= 0})
        out: dict[int, int] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(
                f"SELECT id, identity_id FROM embeddings WHERE id IN ({marks})", chunk).fetchall())
        return out

    # ---- writes (call inside ``transaction()``) ------------------------------------------
    def insert_identity(self, conn: sqlite3.Connection, name: str,
                        metadata: Mapping[str, Any] | None = None) -> int:
        cur = conn.execute("INSERT INTO identities(name, metadata, created_at) VALUES (?, ?, ?)",
                           (name, json.dumps(dict(metadata or {})), _now()))
        return int(cur.lastrowid)

    def update_metadata(self, conn: sqlite3.Connection, identity_id: int,
                        metadata: Mapping[str, Any]) -> None:
        row = conn.execute("SELECT metadata FROM identities WHERE id = ?",
                           (identity_id,)).fetchone()
        merged = {**json.loads(row[0]), **dict(metadata)}
        conn.execute("UPDATE identities SET metadata = ? WHERE id = ?",
                     (json.dumps(merged), identity_id))

    def insert_embeddings(self, conn: sqlite3.Connection, identity_id: int,
                          vectors: np.ndarray, sources: Sequence[str | None]) -> list[int]:
        dim = self.embedding_dim
        now = _now()
        ids = []
        for vec, src in zip(vectors, sources):
            cur = conn.execute("INSERT INTO embeddings(identity_id, source, vector, created_at) "
                               "VALUES (?, ?, ?, ?)", (identity_id, src, vector_to_blob(vec, dim),
                                                       now))
            ids.append(int(cur.lastrowid))
        return ids

    def insert_many(self, conn: sqlite3.Connection, names: Sequence[str],
                    vectors: np.ndarray) -> None:
        """Bulk path (benchmarks): one identity and one embedding per row of ``vectors``."""
        dim = self.embedding_dim
        now = _now()
        first = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM identities").fetchone()[0]) + 1
        conn.executemany("INSERT INTO identities(id, name, metadata, created_at) "
                         "VALUES (?, ?, '{}', ?)",
                         ((first + i, n, now) for i, n in enumerate(names)))
        conn.executemany("INSERT INTO embeddings(identity_id, source, vector, created_at) "
                         "VALUES (?, NULL, ?, ?)",
                         ((first + i, vector_to_blob(v, dim), now)
                          for i, v in enumerate(vectors)))

    def delete_identity(self, conn: sqlite3.Connection, identity_id: int) -> list[int]:
        """Delete an identity and (by cascade) its embeddings; returns the embedding ids."""
        rows = conn.execute("SELECT id FROM embeddings WHERE identity_id = ?",
                            (identity_id,)).fetchall()
        conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        return [int(r[0]) for r in rows]

"""SQLite storage of a gallery: identities, their metadata and their embeddings.

The database is the single source of truth; the FAISS index beside it is a cache that can
always be rebuilt from it (see :mod:`slimface.gallery.gallery`). Every write happens in one
transaction that also bumps a ``generation`` counter, so the index can tell whether it is in
step, and a crash in the middle of an enroll leaves the database exactly as it was before
that enroll (SQLite's WAL journal + ``synchronous=FULL``).

Readers open the file read-only (``mode=ro``): listing or searching a gallery never creates,
converts or writes a database (SQLite may leave its empty ``-wal``/``-shm`` companions
beside a WAL database, which is how readers and writers share it). Every SQLite or file
system failure becomes a :class:`GalleryError` that names the file and the cause.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from slimface.errors import GalleryError
from slimface.io.sqlite import sqlite_error_name

SCHEMA_VERSION = 1

#: Seconds a write waits for another process's write to finish before giving up.
LOCK_TIMEOUT_S = 30.0

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

    def __init__(self, path: str | os.PathLike[str], conn: sqlite3.Connection,
                 readonly: bool = False, timeout_s: float | None = None):
        self.path = Path(path)
        self._conn = conn
        self.readonly = readonly
        self.timeout_s = LOCK_TIMEOUT_S if timeout_s is None else float(timeout_s)

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: Mapping[str, Any],
               timeout_s: float | None = None) -> "GalleryStore":
        """Create a new gallery file; refuses to overwrite an existing one.

        The database is built under a temporary name and renamed into place, so a failure
        (disk full, permission) leaves neither a half-created gallery nor the temporary file.
        """
        p = Path(path)
        if p.exists():
            raise GalleryError(f"{p}: already exists; remove it or choose another path")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GalleryError(f"{p}: cannot create the gallery: "
                               f"{describe_os_error(exc, p.parent)}") from None
        tmp = p.with_name(f".{p.name}.creating")
        companions = (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal"))
        try:
            for leftover in companions:
                leftover.unlink(missing_ok=True)
            conn = cls._connect(tmp, readonly=False, timeout_s=timeout_s)
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
            if p.exists():  # another process created it meanwhile
                raise GalleryError(f"{p}: already exists; remove it or choose another path")
            os.replace(tmp, p)  # a half-created gallery never appears under the real name
        except sqlite3.Error as exc:
            raise gallery_io_error(p, exc, "create the gallery") from None
        except OSError as exc:
            raise GalleryError(f"{p}: cannot create the gallery: "
                               f"{describe_os_error(exc, p)}") from None
        finally:
            for leftover in companions:
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
        return cls.open(p, timeout_s=timeout_s)

    @classmethod
    def open(cls, path: str | os.PathLike[str], readonly: bool = False,
             timeout_s: float | None = None) -> "GalleryStore":
        """Open an existing gallery; ``readonly`` for commands that only read it."""
        p = Path(path)
        if not p.is_file():
            if p.is_dir():
                raise GalleryError(f"{p}: is a folder, not a gallery file")
            raise GalleryError(f"{p}: no gallery here; create one with "
                               f"`slimface gallery create {p} --model M`")
        if os.path.getsize(p) == 0:
            raise GalleryError(f"{p}: not a slimface gallery (the file is empty, 0 bytes)")
        conn = cls._connect(p, readonly=readonly, timeout_s=timeout_s)
        store = cls(p, conn, readonly=readonly, timeout_s=timeout_s)
        store._check_schema()
        return store

    @staticmethod
    def _connect(path: Path, readonly: bool, timeout_s: float | None) -> sqlite3.Connection:
        timeout = LOCK_TIMEOUT_S if timeout_s is None else float(timeout_s)
        try:
            if readonly:
                return _connect_readonly(path, timeout)
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=timeout)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                conn.close()
                raise
            return conn
        except sqlite3.Error as exc:
            raise gallery_io_error(path, exc, "open the gallery", timeout) from None

    def _check_schema(self) -> None:
        try:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
            meta = {k: json.loads(v) for k, v in rows}
        except (sqlite3.Error, ValueError) as exc:
            self.close()
            if not isinstance(exc, sqlite3.Error) or sqlite_error_name(exc) in (
                    "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_ERROR"):
                raise GalleryError(f"{self.path}: not a slimface gallery ({exc})") from None
            raise gallery_io_error(self.path, exc, "read the gallery", self.timeout_s) from None
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
        """BEGIN IMMEDIATE ... COMMIT, bumping ``generation``; any exception rolls back.

        SQLite failures (read-only file or folder, disk full, locked past the timeout)
        become a :class:`GalleryError` naming the file; when COMMIT itself fails SQLite has
        already rolled back, so nothing of the transaction is kept either way.
        """
        if self.readonly:
            raise GalleryError(f"{self.path}: opened read-only; cannot write")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise gallery_io_error(self.path, exc, "write to the gallery",
                                   self.timeout_s) from None
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                         "WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise gallery_io_error(self.path, exc, "write to the gallery",
                                       self.timeout_s) from None
            raise

    def check_writable(self) -> None:
        """Take and release the write lock: fails now, before slow work, where a write would."""
        try:
            with self.transaction() as conn:
                # BEGIN alone succeeds on a file opened read-only; a write does not
                conn.execute("UPDATE meta SET value = value WHERE key = 'generation'")
                raise _WriteProbe
        except _WriteProbe:
            pass

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state of the database (a read transaction)."""
        conn = self._conn
        if conn.in_transaction:
            yield
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise gallery_io_error(self.path, exc, "read the gallery", self.timeout_s) from None
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")

    # ---- reads ---------------------------------------------------------------------------
    def _q(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise gallery_io_error(self.path, exc, "read the gallery", self.timeout_s) from None

    def meta(self) -> dict[str, Any]:
        rows = self._q("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    @property
    def generation(self) -> int:
        row = self._q("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(json.loads(row[0]))

    @property
    def embedding_dim(self) -> int:
        return int(self.meta()["embedding_dim"])

    def count_embeddings(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def count_embeddings_of(self, identity_id: int) -> int:
        return int(self._q("SELECT COUNT(*) FROM embeddings WHERE identity_id = ?",
                                      (identity_id,)).fetchone()[0])

    def count_identities(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM identities").fetchone()[0])

    def identities(self) -> list[Identity]:
        rows = self._q(
            "SELECT i.id, i.name, i.metadata, COUNT(e.id), i.created_at FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name"
        ).fetchall()
        return [Identity(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def identity_names(self, identity_ids: Sequence[int]) -> dict[int, str]:
        if not len(identity_ids):
            return {}
        ids = sorted({int(i) for i in identity_ids})
        marks = ",".join("?" * len(ids))
        rows = self._q(f"SELECT id, name FROM identities WHERE id IN ({marks})", ids)
        return dict(rows.fetchall())

    def find_identity(self, name: str) -> int | None:
        row = self._q("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def vectors_of(self, identity_id: int, sources: Sequence[str]
                   ) -> tuple[list[str | None], np.ndarray]:
        """The sources and float32 embeddings of one identity's rows from ``sources`` (the
        files an enroll is about to store: only their rows can be repeats), in id order."""
        names = sorted(set(sources))
        rows = []
        for start in range(0, len(names), 500):  # within SQLite's limit on parameters
            chunk = names[start:start + 500]
            rows += self._q(f"SELECT id, source, vector FROM embeddings WHERE identity_id = ? "
                            f"AND source IN ({', '.join('?' * len(chunk))})",
                            (identity_id, *chunk)).fetchall()
        rows.sort()
        return [r[1] for r in rows], blobs_to_matrix([r[2] for r in rows], self.embedding_dim)

    def embedding_ids(self, upto: int | None = None) -> np.ndarray:
        """Ids of the stored embeddings (those ``<= upto`` when given), ascending."""
        sql, args = "SELECT id FROM embeddings", ()
        if upto is not None:
            sql, args = sql + " WHERE id <= ?", (int(upto),)
        rows = self._q(sql + " ORDER BY id", args).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def embeddings_after(self, after: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of the embeddings whose id is greater than ``after``."""
        rows = self._q("SELECT id, vector FROM embeddings WHERE id > ? ORDER BY id",
                       (int(after),)).fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, blobs_to_matrix([r[1] for r in rows], self.embedding_dim)

    def all_embeddings(self, batch: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embedding ids, identity ids, float32 matrix) of the whole gallery, in id order."""
        dim = self.embedding_dim
        ids, owners, blobs = [], [], []
        cur = self._q("SELECT id, identity_id, vector FROM embeddings ORDER BY id")
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
            out.update(self._q(
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

    def _next_embedding_ids(self, conn: sqlite3.Connection, n: int) -> list[int]:
        """``n`` fresh embedding ids, never reused after a removal.

        Readers bring their index up to date from the ids above the highest they know, so an
        id must never come back with another vector; the highest id ever given out is kept
        in ``meta`` (SQLite alone would reuse the id of a deleted last row).
        """
        row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_id_high'").fetchone()
        high = int(json.loads(row[0])) if row else 0
        high = max(high, int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings")
                             .fetchone()[0]))
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('embedding_id_high', ?)",
                     (json.dumps(high + n),))
        return list(range(high + 1, high + n + 1))

    def insert_embeddings(self, conn: sqlite3.Connection, identity_id: int,
                          vectors: np.ndarray, sources: Sequence[str | None]) -> list[int]:
        dim = self.embedding_dim
        now = _now()
        ids = self._next_embedding_ids(conn, len(vectors))
        conn.executemany("INSERT INTO embeddings(id, identity_id, source, vector, created_at) "
                         "VALUES (?, ?, ?, ?, ?)",
                         [(eid, identity_id, src, vector_to_blob(vec, dim), now)
                          for eid, vec, src in zip(ids, vectors, sources)])
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
        ids = self._next_embedding_ids(conn, len(vectors))
        conn.executemany("INSERT INTO embeddings(id, identity_id, source, vector, created_at) "
                         "VALUES (?, ?, NULL, ?, ?)",
                         ((ids[i], first + i, vector_to_blob(v, dim), now)
                          for i, v in enumerate(vectors)))

    def delete_identity(self, conn: sqlite3.Connection, identity_id: int) -> list[int]:
        """Delete an identity and (by cascade) its embeddings; returns the embedding ids."""
        rows = conn.execute("SELECT id FROM embeddings WHERE identity_id = ?",
                            (identity_id,)).fetchall()
        conn.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        return [int(r[0]) for r in rows]


class _WriteProbe(Exception):
    """Raised inside a transaction only to roll it back (``check_writable``)."""


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path.resolve()))}?{query}"


def _connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """``mode=ro``: SQLite never creates, converts or writes the file through it.

    A WAL database in a folder this process cannot write, with no ``-shm`` file there (no
    writer has it open), can only be read as ``immutable``: a snapshot, which is all a
    writer-less folder can offer.
    """
    conn = sqlite3.connect(_uri(path, mode="ro"), uri=True, isolation_level=None,
                           timeout=timeout)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error as exc:
        conn.close()
        cannot_init = sqlite_error_name(exc) in ("SQLITE_READONLY_DIRECTORY",
                                           "SQLITE_READONLY_CANTINIT", "SQLITE_CANTOPEN")
        if not cannot_init or Path(f"{path}-wal").exists():
            raise
    conn = sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True,
                           isolation_level=None, timeout=timeout)
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return conn


def describe_os_error(exc: OSError, path: Path) -> str:
    """Why a file system call failed, in words, naming the path that is in the way."""
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or exc.errno == errno.ENOTDIR:
        blocker = next((a for a in [path, *path.parents] if a.exists() and not a.is_dir()),
                       None)
        where = blocker if blocker is not None else path
        return f"{where} is a file, not a folder"
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.filename or path})"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "the disk is full"
    return exc.strerror or str(exc)


def _space_cause(folder: Path) -> str | None:
    """Why a write may have run out of room: a full disk or the process's file size limit."""
    try:
        if shutil.disk_usage(folder).free < 4 << 20:
            return "the disk is full"
    except OSError:
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            return f"the file size limit of this process was reached (ulimit -f: {soft} bytes)"
    except (ImportError, OSError, ValueError):
        pass
    return None


def gallery_io_error(path: Path, exc: sqlite3.Error, doing: str,
                     timeout_s: float = LOCK_TIMEOUT_S) -> GalleryError:
    """A :class:`GalleryError` that says which file, what was being done and why it failed."""
    name = sqlite_error_name(exc)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        cause = (f"the gallery is locked by another process (still busy after "
                 f"{timeout_s:g} s); try again when it has finished")
    elif name == "SQLITE_READONLY_DIRECTORY" or (
            name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
            and path.exists() and os.access(path, os.R_OK | os.W_OK)
            and not os.access(folder, os.W_OK | os.X_OK)):
        cause = (f"the folder {folder} is not writable (SQLite keeps {path.name}-wal and "
                 f"{path.name}-shm beside the gallery)")
    elif name.startswith("SQLITE_READONLY"):
        cause = ("the gallery file is read-only (permission denied)"
                 if path.exists() and not os.access(path, os.W_OK)
                 else "the gallery is read-only")
    elif name == "SQLITE_FULL":
        cause = _space_cause(folder) or "the disk is full"
    elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM")):
        if not folder.is_dir():
            blocker = next((a for a in [folder, *folder.parents]
                            if a.exists() and not a.is_dir()), None)
            cause = (f"{blocker} is a file, not a folder" if blocker is not None
                     else f"the folder {folder} does not exist")
        elif path.exists() and not os.access(path, os.R_OK):
            cause = "permission denied"
        elif not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
            cause = f"permission denied in the folder {folder}"
        else:
            cause = "cannot open the file"
    elif name.startswith("SQLITE_IOERR"):
        cause = _space_cause(folder) or "input/output error"
    elif name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return GalleryError(f"{path}: not a slimface gallery ({exc})")
    else:
        return GalleryError(f"{path}: cannot {doing}: {exc}")
    saved = "; nothing was saved" if doing.startswith("write") else ""
    return GalleryError(f"{path}: cannot {doing}: {cause} (SQLite: {exc}){saved}")

"""On-disk cache of detections and aligned crops, so a second evaluation does not detect again.

Layout under ``cache_root()/"crops"``:

* ``index.sqlite``: table ``det`` (one row per file identity and detector chain: status,
  landmarks, box, score) and table ``crop`` (file identity, chain, template -> chunk file and
  row). A file's identity is (absolute path, size, mtime in ns): editing or replacing a file
  misses the cache instead of returning a stale crop.
* ``chunks/<template hash>/<uuid>.npy``: crops in blocks of up to :data:`CHUNK_ROWS`, written
  atomically (``slimface.io.atomic``), read back memory-mapped.

Why two tables: detection is the slow part (~10-60 ms/image) and is independent of the
template, so a new template only decodes and warps (~1 ms/image). Reading 7.7k cached crops
is a single SQLite query plus a few contiguous ``.npy`` reads.

Everything here can be computed again, so a damaged index (a crash mid-write on a disk
that lies about syncs, a file overwritten by something else) is renamed
``index.sqlite.corrupt`` with a warning and a new one is started, rather than stopping
``align`` or ``eval``. It is renamed, never deleted, so it can still be looked at.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from slimface.align.detect import Detector, Face
from slimface.align.templates import Template
from slimface.errors import ImageNotFoundError
from slimface.io.atomic import atomic_save
from slimface.io.paths import cache_root
from slimface.io.sqlite import sqlite_error_name

log = logging.getLogger(__name__)

#: Bump when detection or warping changes in a way that invalidates stored crops.
CACHE_VERSION = 5
CHUNK_ROWS = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS det (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, chain TEXT NOT NULL,
    status TEXT NOT NULL, kind TEXT, box BLOB, score REAL, landmarks BLOB,
    PRIMARY KEY (path, size, mtime, chain));
CREATE TABLE IF NOT EXISTS crop (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, chain TEXT NOT NULL,
    tmpl TEXT NOT NULL, chunk TEXT NOT NULL, row INTEGER NOT NULL,
    PRIMARY KEY (path, size, mtime, chain, tmpl));
CREATE INDEX IF NOT EXISTS crop_by_chain ON crop (chain, tmpl);
CREATE TABLE IF NOT EXISTS chains (chain TEXT PRIMARY KEY, signature TEXT NOT NULL);
"""
#: SQLite's result codes for a damaged file; a locked or read-only index is not damaged and
#: keeps its error.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
#: Files SQLite keeps beside the index in WAL mode: they belong to the damaged index, and
#: a WAL file left in place would be replayed into the new one.
_SIDE_FILES = ("-wal", "-shm")


@dataclass(frozen=True)
class FileKey:
    """A file's identity for caching: absolute path, size and modification time."""

    path: str
    size: int
    mtime: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "FileKey":
        p = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(p)
        except OSError:
            raise ImageNotFoundError(p, "no such file") from None
        if not os.path.isfile(p):
            raise ImageNotFoundError(p, "is a directory, not an image file")
        return cls(p, st.st_size, st.st_mtime_ns)


def chain_signature(detector: Detector | None, fallback: Detector | None,
                    multi_face: str) -> str:
    """Everything that decides which face is found: detectors, their settings, the policy."""
    parts = [d.signature() if d is not None else "none" for d in (detector, fallback)]
    return f"{' > '.join(parts)} | multi_face={multi_face} | v{CACHE_VERSION}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _face_to_row(face: Face | None) -> tuple:
    if face is None:
        return None, None, None, None
    return (face.kind, np.asarray(face.box, np.float32).tobytes(), float(face.score),
            np.asarray(face.landmarks, np.float32).tobytes())


def _face_from_row(kind, box, score, landmarks) -> Face | None:
    if kind is None:
        return None
    return Face(box=np.frombuffer(box, np.float32).copy(), score=float(score),
                landmarks=np.frombuffer(landmarks, np.float32).reshape(-1, 2).copy(), kind=kind)


class CropCache:
    """Cache for one (detector chain, template); see module docstring."""

    chunk_rows = CHUNK_ROWS

    def __init__(self, root: Path, chain_sig: str, template: Template):
        self.root = root
        self.chain_sig = chain_sig
        self.chain = _digest(chain_sig)
        self.tmpl = _digest(template.fingerprint())
        self.template = template
        self.chunk_dir = root / "chunks" / self.tmpl
        self.index = root / "index.sqlite"
        self._index_id: tuple[int, int] | None = None
        try:
            self.db = self._open_index()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._set_aside(exc)
            self.db = self._open_index()

    def _open_index(self) -> sqlite3.Connection:
        """Connect to the index and make sure its tables and this chain's row exist."""
        self._index_id = _file_id(self.index)
        db = sqlite3.connect(self.index, timeout=120)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO chains VALUES (?, ?)",
                           (self.chain, self.chain_sig))
        except BaseException:
            db.close()
            raise
        self._index_id = self._index_id or _file_id(self.index)  # created just now
        return db

    def _set_aside(self, exc: sqlite3.DatabaseError) -> None:
        """Rename the damaged index and its WAL side files with a ``.corrupt`` suffix.
        Skipped when the file there is no longer the one that failed: another process
        sharing the cache has set it aside already and started a new one."""
        if self._index_id is None or _file_id(self.index) != self._index_id:
            return
        target = _aside_name(self.index)
        for suffix in ("", *_SIDE_FILES):
            try:
                os.replace(f"{self.index}{suffix}", f"{target}{suffix}")
            except FileNotFoundError:
                pass
        log.warning("%s: the crop cache index is damaged (%s); renamed it %s and started a "
                    "new one (crops are computed again)", self.index, exc, target.name)

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """A query found the open index damaged: set it aside and go on with a new one."""
        if not _damaged(exc):
            raise exc
        self.db.close()
        self._set_aside(exc)
        self.db = self._open_index()

    @classmethod
    def open(cls, chain_sig: str, template: Template, root: Path | None = None) -> "CropCache":
        root = root or cache_root() / "crops"
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, chain_sig, template)

    def close(self) -> None:
        self.db.close()

    def fill(self, keys: list[FileKey], crops: np.ndarray, status: list[str],
             faces: list[Face | None]) -> list[int]:
        """Copy cached crops into ``crops`` (in place); returns the indices still missing."""
        rows = self._query(
            "SELECT c.path, c.size, c.mtime, c.chunk, c.row, d.status, d.kind, d.box, d.score, "
            "d.landmarks FROM crop c JOIN det d ON d.path = c.path AND d.size = c.size AND "
            "d.mtime = c.mtime AND d.chain = c.chain WHERE c.chain = ? AND c.tmpl = ?",
            (self.chain, self.tmpl))
        found = {(r[0], r[1], r[2]): r[3:] for r in rows}
        by_chunk: dict[str, list[tuple[int, int]]] = defaultdict(list)
        missing = []
        for i, k in enumerate(keys):
            hit = found.get((k.path, k.size, k.mtime))
            if hit is None:
                missing.append(i)
                continue
            by_chunk[hit[0]].append((i, hit[1]))
            status[i] = hit[2]
            faces[i] = _face_from_row(*hit[3:])
        for chunk, pairs in by_chunk.items():
            idx = np.array([p[0] for p in pairs])
            src = np.array([p[1] for p in pairs])
            try:
                arr = np.load(self.chunk_dir / f"{chunk}.npy", mmap_mode="r")
                if arr.shape[1:] != crops.shape[1:] or src.max() >= len(arr):
                    raise ValueError("chunk shape mismatch")
                order = np.argsort(src)  # sequential reads from the memory map
                crops[idx[order]] = arr[src[order]]
            except (OSError, ValueError):
                missing.extend(idx.tolist())  # chunk lost or damaged: recompute those files
        return sorted(missing)

    def detections(self, keys: Iterable[FileKey]) -> dict[FileKey, tuple[str, Face | None]]:
        """Cached detections (status, face) for ``keys`` under this chain."""
        wanted = {(k.path, k.size, k.mtime): k for k in keys}
        if not wanted:
            return {}
        out = {}
        rows = self._query("SELECT path, size, mtime, status, kind, box, score, landmarks "
                           "FROM det WHERE chain = ?", (self.chain,))
        for r in rows:
            k = wanted.get((r[0], r[1], r[2]))
            if k is not None:
                out[k] = (r[3], _face_from_row(*r[4:]))
        return out

    def add(self, records: list[tuple[FileKey, str, Face | None, np.ndarray]]) -> None:
        """Store one chunk of new crops and their detections."""
        if not records:
            return
        chunk = uuid.uuid4().hex
        block = np.stack([r[3] for r in records])
        atomic_save(self.chunk_dir / f"{chunk}.npy", lambda tmp: _save_npy(tmp, block))
        try:
            self._insert(records, chunk)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            self._insert(records, chunk)

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        """Every row of ``sql``; none (all misses) when the index turns out to be damaged."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return []

    def _insert(self, records: list[tuple[FileKey, str, Face | None, np.ndarray]],
                chunk: str) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO det VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(k.path, k.size, k.mtime, self.chain, st, *_face_to_row(f))
                 for k, st, f, _ in records])
            self.db.executemany(
                "INSERT OR REPLACE INTO crop VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(k.path, k.size, k.mtime, self.chain, self.tmpl, chunk, row)
                 for row, (k, _, _, _) in enumerate(records)])


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the index file is damaged (rebuildable), not locked or read-only."""
    return sqlite_error_name(exc) in _DAMAGED


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None when there is no file: whether the index is still
    the file this process opened."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _aside_name(path: Path) -> Path:
    """``index.sqlite.corrupt``, or ``.corrupt.1``, ``.corrupt.2``... when that is taken."""
    target = path.with_name(f"{path.name}.corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    return target


def _save_npy(tmp: Path, block: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, block)

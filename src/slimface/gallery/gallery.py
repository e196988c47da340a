"""A gallery = the SQLite store (truth) + a FAISS index file beside it (a rebuildable cache).

Consistency rule: the index file carries the database ``generation`` and embedding count it
was built from; on open, an index whose numbers differ from the database's (a crash between
the database commit and the index write, or another process's enroll) is rebuilt from the
database. So the database commit is the only step that has to be atomic, and it is.
"""
from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from slimface.errors import GalleryError
from slimface.gallery import index as ix
from slimface.gallery.store import GalleryStore, Identity
from slimface.io.atomic import atomic_path

log = logging.getLogger(__name__)

_MAGIC = b"SLIMFACE-FAISS\x01"


@dataclass(frozen=True)
class ModelInfo:
    """What a gallery's embeddings were made with; a gallery refuses any other model."""

    name: str
    fingerprint: str
    template: str
    embedding_dim: int
    flip: str = "none"
    detector: str | None = None

    def as_meta(self) -> dict[str, Any]:
        return {f"model_{k}" if k in ("name", "fingerprint") else k: v
                for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ModelInfo":
        return cls(name=meta["model_name"], fingerprint=meta["model_fingerprint"],
                   template=meta["template"], embedding_dim=int(meta["embedding_dim"]),
                   flip=meta.get("flip", "none"), detector=meta.get("detector"))


@dataclass(frozen=True)
class Match:
    """One identify result: an enrolled identity and its best cosine similarity."""

    name: str
    score: float
    identity_id: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), 6)}


def index_path_for(db_path: str | os.PathLike[str]) -> Path:
    return Path(f"{db_path}.faiss")


class Gallery:
    """Enroll, identify, list and remove identities; see the module docstring for safety."""

    def __init__(self, store: GalleryStore, index_kind: str | None = None):
        self.store = store
        self.path = store.path
        self.index_path = index_path_for(self.path)
        self._index: Any = None
        self._index_generation = -1
        self._forced_kind = index_kind
        self._load_or_rebuild_index()

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], model: ModelInfo,
               index_kind: str = "auto") -> "Gallery":
        if index_kind != "auto":
            ix.SEARCH_INDEXES.get(index_kind)  # validate the name now, with suggestions
        meta = {**model.as_meta(), "index_kind": index_kind}
        gallery = cls(GalleryStore.create(path, meta))
        gallery._persist_index()
        return gallery

    @classmethod
    def open(cls, path: str | os.PathLike[str], expect: ModelInfo | None = None) -> "Gallery":
        """Open; with ``expect``, refuse a gallery built with another model or alignment."""
        store = GalleryStore.open(path)
        if expect is not None:
            try:
                check_compatible(store.path, ModelInfo.from_meta(store.meta()), expect)
            except GalleryError:
                store.close()
                raise
        return cls(store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> ModelInfo:
        return ModelInfo.from_meta(self.store.meta())

    def __len__(self) -> int:
        return self.store.count_identities()

    # ---- writes --------------------------------------------------------------------------
    def enroll(self, name: str, vectors: np.ndarray, sources: Sequence[str | None] | None = None,
               metadata: Mapping[str, Any] | None = None) -> int:
        """Add embeddings (one per image) to ``name``, creating it if new; all or nothing.

        Returns the number of embeddings the identity now has.
        """
        name = _clean_name(name)
        vectors = _as_rows(vectors, self.store.embedding_dim, self.path)
        sources = list(sources) if sources is not None else [None] * len(vectors)
        with self.store.transaction() as conn:
            in_step = self.store.generation == self._index_generation
            identity_id = self.store.find_identity(name)
            if identity_id is None:
                identity_id = self.store.insert_identity(conn, name, metadata)
            elif metadata:
                self.store.update_metadata(conn, identity_id, metadata)
            new_ids = self.store.insert_embeddings(conn, identity_id, vectors, sources)
        self._after_write(in_step, lambda: ix.add_to_index(self._index, vectors,
                                                           np.asarray(new_ids)))
        return self.store.count_embeddings_of(identity_id)

    def enroll_many(self, names: Sequence[str], vectors: np.ndarray) -> None:
        """One identity per row, in one transaction (synthetic benchmarks, bulk imports)."""
        vectors = _as_rows(vectors, self.store.embedding_dim, self.path)
        with self.store.transaction() as conn:
            self.store.insert_many(conn, [_clean_name(n) for n in names], vectors)
        self.rebuild_index()

    def remove(self, name: str) -> int:
        """Delete an identity and its embeddings; returns how many embeddings went."""
        identity_id = self.store.find_identity(name)
        if identity_id is None:
            known = [i.name for i in self.store.identities()][:10]
            raise GalleryError(f"{self.path}: no identity named {name!r} "
                               f"(enrolled: {', '.join(known) or 'none'})")
        with self.store.transaction() as conn:
            in_step = self.store.generation == self._index_generation
            removed = self.store.delete_identity(conn, identity_id)
        self._after_write(in_step, lambda: ix.remove_from_index(self._index,
                                                                np.asarray(removed)))
        return len(removed)

    def _after_write(self, in_step: bool, update: Any) -> None:
        """Apply the change to the in-memory index (or rebuild) and persist it."""
        if in_step and self._index is not None and self._wanted_kind() == self._index_kind:
            try:
                update()
            except RuntimeError:  # e.g. FAISS refine indexes cannot remove ids: rebuild
                self.rebuild_index()
                return
            self._index_generation = self.store.generation
            self._persist_index()
        else:
            self.rebuild_index()

    # ---- reads ---------------------------------------------------------------------------
    def identities(self) -> list[Identity]:
        return self.store.identities()

    def identify(self, queries: np.ndarray, top_k: int = 1) -> list[list[Match]]:
        """The ``top_k`` identities per query, best first, scored by their best embedding."""
        q = _as_rows(queries, self.store.embedding_dim, self.path)
        if self._index is None or self._index.ntotal == 0:
            return [[] for _ in range(len(q))]
        # several embeddings per identity: fetch more rows than identities asked for
        scores, ids = ix.search(self._index, q, max(top_k * 4, top_k + 8))
        owners = self.store.owners_of(ids)
        names = self.store.identity_names(list(owners.values()))
        return [self._rank(s, i, owners, names, top_k) for s, i in zip(scores, ids)]

    @staticmethod
    def _rank(scores: np.ndarray, ids: np.ndarray, owners: dict[int, int],
              names: dict[int, str], top_k: int) -> list[Match]:
        best: dict[int, float] = {}
        for s, eid in zip(scores, ids):
            owner = owners.get(int(eid))
            if owner is not None and s > best.get(owner, -np.inf):
                best[owner] = float(s)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[:top_k]
        return [Match(names[o], s, o) for o, s in ranked]

    # ---- the index cache -----------------------------------------------------------------
    @property
    def index(self) -> Any:
        return self._index

    def _wanted_kind(self) -> str:
        stored = self._forced_kind or self.store.meta().get("index_kind", "auto")
        return ix.choose_kind(self.store.count_embeddings()) if stored == "auto" else stored

    @property
    def _index_kind(self) -> str | None:
        return getattr(self, "_built_kind", None)

    def rebuild_index(self, kind: str | None = None, **params: Any) -> None:
        """Rebuild the index from the database and write it atomically beside it."""
        kind = kind or self._wanted_kind()
        generation = self.store.generation
        ids, _, x = self.store.all_embeddings()
        if kind != "flat" and len(x) < 1000:
            kind = "flat"  # an IVF/HNSW index over a handful of vectors only adds error
        log.info("building %s index over %d embeddings of %s", kind, len(x), self.path)
        self._index = ix.build_index(ix.IndexSpec(kind, params), x, ids)
        self._built_kind = kind
        self._index_generation = generation
        self._persist_index()

    def _persist_index(self) -> None:
        if self._index is None:
            self.rebuild_index()
            return
        header = json.dumps({"generation": self._index_generation,
                             "count": int(self._index.ntotal), "kind": self._built_kind,
                             "model_fingerprint": self.store.meta()["model_fingerprint"]})
        data = ix.serialize_array(self._index)
        with atomic_path(self.index_path) as tmp, open(tmp, "wb") as f:
            f.write(_MAGIC + struct.pack("<I", len(header)) + header.encode())
            f.write(memoryview(data))

    def _load_or_rebuild_index(self) -> None:
        loaded = self._read_index_file()
        if loaded is None:
            self.rebuild_index()
            return
        header, index = loaded
        if (header.get("generation") != self.store.generation
                or header.get("count") != self.store.count_embeddings()
                or int(index.ntotal) != header.get("count")):
            log.warning("%s: index out of step with the database (index generation %s, "
                        "database %s); rebuilding", self.index_path, header.get("generation"),
                        self.store.generation)
            self.rebuild_index()
            return
        self._index, self._built_kind = index, header["kind"]
        self._index_generation = header["generation"]

    def _read_index_file(self) -> tuple[dict[str, Any], Any] | None:
        if not self.index_path.is_file():
            return None
        try:
            raw = self.index_path.read_bytes()
            if not raw.startswith(_MAGIC):
                raise ValueError("bad magic")
            (n,) = struct.unpack_from("<I", raw, len(_MAGIC))
            start = len(_MAGIC) + 4
            header = json.loads(raw[start:start + n])
            index = ix.deserialize(memoryview(raw)[start + n:])
        except Exception as exc:  # a torn or foreign file is just a stale cache
            log.warning("%s: unreadable index (%s); rebuilding", self.index_path, exc)
            return None
        return header, index


def check_compatible(path: Path, built: ModelInfo, asked: ModelInfo) -> None:
    """Raise a GalleryError that names both models when ``asked`` cannot use ``built``."""
    fields = ("fingerprint", "template", "embedding_dim", "flip")
    diffs = [f"{f} {getattr(built, f)!r} vs {getattr(asked, f)!r}" for f in fields
             if getattr(built, f) != getattr(asked, f)]
    if diffs:
        raise GalleryError(
            f"{path}: gallery was built with model {built.name!r} "
            f"(template {built.template}, {built.embedding_dim}-d, fingerprint "
            f"{built.fingerprint[:12]}) and cannot be searched with model {asked.name!r} "
            f"({'; '.join(diffs)}); use --model {built.name} or create a new gallery")


def _clean_name(name: str) -> str:
    cleaned = str(name).strip()
    if not cleaned:
        raise GalleryError("identity name is empty; pass --name NAME")
    return cleaned


def _as_rows(vectors: np.ndarray, dim: int, path: Path) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, np.float32)))
    if x.ndim != 2 or x.shape[1] != dim:
        raise GalleryError(f"{path}: embeddings have shape {x.shape}, gallery expects "
                           f"(n, {dim})")
    if not np.all(np.isfinite(x)):
        raise GalleryError(f"{path}: refusing to store non-finite embedding values")
    return x

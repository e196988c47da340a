"""A gallery = the SQLite store (truth) + a FAISS index file beside it (a rebuildable cache).

Consistency rule: the index file carries the database ``generation`` and embedding count it
was built from; on open, an index whose numbers differ from the database's (a crash between
the database commit and the index write, or another process's enroll) is rebuilt from the
database. So the database commit is the only step that has to be atomic, and it is.

Freshness: every :meth:`Gallery.identify` runs inside one read transaction and first reads
the database's ``generation`` (one row). When another process has committed since the
in-memory index was last brought up to date, the index catches up before searching: new
embeddings (ids above the highest it holds; ids are never reused) are added, removed ones
dropped, or the index is rebuilt when its kind cannot remove. So an answer always reflects
exactly the state committed when the search began: never a removed person, never a miss of
one committed before the call.
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
from slimface.gallery.store import GalleryStore, Identity, describe_os_error
from slimface.io.atomic import atomic_path
from slimface.models.embedding import l2_normalize

log = logging.getLogger(__name__)

_MAGIC = b"SLIMFACE-FAISS\x01"
#: Below this many embeddings every index kind is built as exact search.
_APPROXIMATE_MIN = 1000


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
        self._id_high = 0
        self._forced_kind = index_kind
        #: The database generation the last :meth:`identify` answered from.
        self.last_generation = -1
        #: Sources of the images the last :meth:`enroll` found already enrolled (not stored).
        self.last_repeats: list[str | None] = []
        with self.store.snapshot():
            self._load_or_rebuild_index()

    @property
    def readonly(self) -> bool:
        return self.store.readonly

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], model: ModelInfo,
               index_kind: str = "auto", timeout_s: float | None = None) -> "Gallery":
        if index_kind != "auto":
            ix.SEARCH_INDEXES.get(index_kind)  # validate the name now, with suggestions
        meta = {**model.as_meta(), "index_kind": index_kind}
        return cls(GalleryStore.create(path, meta, timeout_s=timeout_s))

    @classmethod
    def open(cls, path: str | os.PathLike[str], expect: ModelInfo | None = None,
             readonly: bool = False, timeout_s: float | None = None) -> "Gallery":
        """Open; with ``expect``, refuse a gallery built with another model or alignment.

        ``readonly`` opens the database read-only and never writes the index file: what
        list and identify use.
        """
        store = GalleryStore.open(path, readonly=readonly, timeout_s=timeout_s)
        try:
            if expect is not None:
                check_compatible(store.path, ModelInfo.from_meta(store.meta()), expect)
            return cls(store)
        except BaseException:
            store.close()
            raise

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

        Returns the number of embeddings the identity now has. A file the identity already
        holds with the same embedding (the same photo enrolled again, by a re-run script) is
        not stored twice; such sources are left in :attr:`last_repeats`.
        """
        name = clean_name(name)
        vectors = _as_rows(vectors, self.store.embedding_dim, self.path)
        sources = list(sources) if sources is not None else [None] * len(vectors)
        with self.store.transaction() as conn:
            identity_id = self.store.find_identity(name)
            if identity_id is None:
                identity_id = self.store.insert_identity(conn, name, metadata)
            elif metadata:
                self.store.update_metadata(conn, identity_id, metadata)
            held = self.store.vectors_of(identity_id, [s for s in sources if s is not None])
            new = _new_rows(vectors, sources, *held)
            kept = set(new)
            self.last_repeats = [sources[i] for i in range(len(vectors)) if i not in kept]
            if new:
                self.store.insert_embeddings(conn, identity_id, vectors[new],
                                             [sources[i] for i in new])
            count = self.store.count_embeddings_of(identity_id)
        self._after_write()
        return count

    def enroll_many(self, names: Sequence[str], vectors: np.ndarray) -> None:
        """One identity per row, in one transaction (synthetic benchmarks, bulk imports)."""
        vectors = _as_rows(vectors, self.store.embedding_dim, self.path)
        with self.store.transaction() as conn:
            self.store.insert_many(conn, [clean_name(n) for n in names], vectors)
        with self.store.snapshot():
            self.rebuild_index()

    def remove(self, name: str) -> int:
        """Delete an identity and its embeddings; returns how many embeddings went."""
        name = clean_name(name)  # enroll stored it without surrounding spaces
        with self.store.transaction() as conn:
            identity_id = self.store.find_identity(name)
            if identity_id is None:
                known = [i.name for i in self.store.identities()]
                raise GalleryError(f"{self.path}: no identity named {name!r}"
                                   f"{_known_names(name, known)}")
            removed = self.store.delete_identity(conn, identity_id)
            own_change = self.store.generation + 1  # what COMMIT makes it
        self._after_write({own_change: removed})
        return len(removed)

    def _after_write(self, removed: dict[int, list[int]] | None = None) -> None:
        """Bring the in-memory index up to the committed state and persist it."""
        with self.store.snapshot():
            if self._catch_up(removed):
                self._persist_index()

    # ---- reads ---------------------------------------------------------------------------
    def identities(self) -> list[Identity]:
        return self.store.identities()

    def identify(self, queries: np.ndarray, top_k: int = 1) -> list[list[Match]]:
        """The ``top_k`` identities per query, best first, scored by their best embedding."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a whole number >= 1; got {top_k!r}")
        q = _as_rows(queries, self.store.embedding_dim, self.path)
        with self.store.snapshot():  # one committed state from the index check to the names
            self._catch_up()
            self.last_generation = self._index_generation
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

    def _wanted_kind(self, n: int | None = None) -> str:
        """The kind the gallery's settings ask for at ``n`` embeddings (default: now)."""
        n = self.store.count_embeddings() if n is None else n
        stored = self._forced_kind or self.store.meta().get("index_kind", "auto")
        kind = ix.choose_kind(n) if stored == "auto" else stored
        # an IVF/HNSW index over a handful of vectors only adds error
        return "flat" if kind != "flat" and n < _APPROXIMATE_MIN else kind

    @property
    def _index_kind(self) -> str | None:
        return getattr(self, "_built_kind", None)

    def _catch_up(self, removed: dict[int, list[int]] | None = None) -> bool:
        """Bring the index to the database's generation (call inside a snapshot).

        Returns whether the index changed. Cheap when nothing changed: one single-row read.
        ``removed`` maps a generation to the embedding ids its write deleted (this process's
        own remove): when that is the only change, no scan of the ids is needed.
        """
        generation = self.store.generation
        if generation == self._index_generation and self._index is not None:
            return False
        if self._index is None or self._wanted_kind() != self._index_kind:
            self.rebuild_index(persist=False)
            return True
        try:
            new_ids, new_vectors = self.store.embeddings_after(self._id_high)
            count = self.store.count_embeddings()
            if int(self._index.ntotal) + len(new_ids) != count:  # something was removed
                known = (removed or {}).get(generation)
                if known is not None and generation == self._index_generation + 1:
                    gone = np.asarray(known, np.int64)
                else:
                    held = _index_ids(self._index)
                    if held is None:
                        raise RuntimeError("index without an id map")
                    gone = np.setdiff1d(held, self.store.embedding_ids(upto=self._id_high))
                if len(gone):
                    ix.remove_from_index(self._index, gone)
            if len(new_ids):
                ix.add_to_index(self._index, new_vectors, new_ids)
                self._id_high = max(self._id_high, int(new_ids.max()))
            if int(self._index.ntotal) != count:
                raise RuntimeError(f"index holds {self._index.ntotal}, database {count}")
        except RuntimeError as exc:  # e.g. FAISS refine/HNSW indexes cannot remove ids
            log.debug("%s: rebuilding the index (%s)", self.path, exc)
            self.rebuild_index(persist=False)
            return True
        self._index_generation = generation
        return True

    def rebuild_index(self, kind: str | None = None, persist: bool = True,
                      **params: Any) -> None:
        """Rebuild the index from the database and (unless read-only) write it beside it."""
        with self.store.snapshot():
            generation = self.store.generation
            ids, _, x = self.store.all_embeddings()
            kind = kind or self._wanted_kind(len(x))
        if kind != "flat" and len(x) < _APPROXIMATE_MIN:
            kind = "flat"
        log.debug("building %s index over %d embeddings of %s", kind, len(x), self.path)
        self._index = ix.build_index(ix.IndexSpec(kind, params), x, ids)
        self._built_kind = kind
        self._index_generation = generation
        self._id_high = int(ids.max()) if len(ids) else 0
        if persist:
            self._persist_index()

    def _persist_index(self) -> None:
        """Write the index cache atomically; a failure only costs a rebuild on next open."""
        if self.readonly:
            return
        if self._index is None:
            self.rebuild_index()
            return
        header = json.dumps({"generation": self._index_generation,
                             "count": int(self._index.ntotal), "kind": self._built_kind,
                             "model_fingerprint": self.store.meta()["model_fingerprint"]})
        data = ix.serialize_array(self._index)
        try:
            with atomic_path(self.index_path) as tmp, open(tmp, "wb") as f:
                f.write(_MAGIC + struct.pack("<I", len(header)) + header.encode())
                f.write(memoryview(data))
        except OSError as exc:
            log.warning("%s: could not write the index cache (%s); the gallery is intact "
                        "and the index is rebuilt from it when opened",
                        self.index_path, describe_os_error(exc, self.index_path))

    def _load_or_rebuild_index(self) -> None:
        loaded = self._read_index_file()
        if loaded is None:
            self.rebuild_index(persist=not self.readonly)
            return
        header, index = loaded
        if (header.get("generation") != self.store.generation
                or header.get("count") != self.store.count_embeddings()
                or int(index.ntotal) != header.get("count")):
            log.debug("%s: index out of step with the database (index generation %s, "
                      "database %s); rebuilding", self.index_path, header.get("generation"),
                      self.store.generation)
            self.rebuild_index(persist=not self.readonly)
            return
        held = _index_ids(index)
        if held is None:
            self.rebuild_index(persist=not self.readonly)
            return
        self._index, self._built_kind = index, header["kind"]
        self._index_generation = header["generation"]
        self._id_high = int(held.max()) if len(held) else 0

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
            log.debug("%s: unreadable index (%s); rebuilding", self.index_path, exc)
            return None
        return header, index


def _index_ids(index: Any) -> np.ndarray | None:
    """The database ids an index holds (``IndexIDMap2``), or None for other index types."""
    id_map = getattr(index, "id_map", None)
    if id_map is None:
        return None
    import faiss

    return faiss.vector_to_array(id_map).astype(np.int64)


def check_compatible(path: Path, built: ModelInfo, asked: ModelInfo) -> None:
    """Raise a GalleryError that names both models when ``asked`` cannot use ``built``."""
    from slimface.align.templates import canonical_template_name

    fields = ("fingerprint", "template", "embedding_dim", "flip")

    def same(f: str) -> bool:
        x, y = getattr(built, f), getattr(asked, f)
        if f == "template":  # a template's former name is the same geometry
            x, y = canonical_template_name(x), canonical_template_name(y)
        return x == y

    diffs = [f"{f} {getattr(built, f)!r} vs {getattr(asked, f)!r}" for f in fields
             if not same(f)]
    if built.name == asked.name and not same("fingerprint"):  # same name, other weights
        raise GalleryError(
            f"{path}: gallery was built with other weights under the name {built.name!r} "
            f"({'; '.join(diffs)}): the model behind that name has changed since (an "
            "upgrade). Enroll the people again into a new gallery, or search this one with "
            "the earlier weights (`slimface models` lists the pretrained models, earlier "
            "versions under their own names)")
    if diffs:
        raise GalleryError(
            f"{path}: gallery was built with model {built.name!r} "
            f"(template {built.template}, {built.embedding_dim}-d, fingerprint "
            f"{built.fingerprint[:12]}) and cannot be used with model {asked.name!r} "
            f"({'; '.join(diffs)}); open it with that model (--model {built.name}, or "
            f"FaceMatcher({built.name!r}) in Python) or create a new gallery")


def clean_name(name: str) -> str:
    """``name`` as the gallery stores it (surrounding spaces dropped), so that callers who
    echo the name show the stored one; not a string, or only spaces, is refused."""
    if not isinstance(name, str):  # str(None) would enroll a person called "None"
        raise GalleryError(f"identity name must be a string; got {type(name).__name__}")
    cleaned = name.strip()
    if not cleaned:
        raise GalleryError("identity name is empty")
    return cleaned


def _known_names(name: str, known: list[str], shown: int = 10) -> str:
    """What a refused name is compared with: the closest enrolled names first (a case or
    spelling slip), then the first of the others, and how many there are in all."""
    import difflib

    if not known:
        return " (the gallery is empty)"
    folded = {k.casefold(): k for k in known}
    same_letters = folded.get(name.casefold())
    close = [same_letters] if same_letters else [
        folded[k] for k in difflib.get_close_matches(name.casefold(), list(folded), n=3,
                                                     cutoff=0.75)]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listed = ", ".join(known[:shown]) + (f", ... ({len(known)} in all)"
                                         if len(known) > shown else "")
    return f"{hint} (enrolled: {listed})"


#: Cosine above which two embeddings from one file are the same photo (a photo embedded
#: twice gives the same vector to within the runtime's rounding; a file saved over with
#: another photo does not).
REPEAT_COSINE = 0.9999


def _new_rows(vectors: np.ndarray, sources: Sequence[str | None],
              held_sources: Sequence[str | None], held: np.ndarray) -> list[int]:
    """Rows of ``vectors`` that are not a repeat: the same file (``sources``) with the same
    embedding, already held or earlier in the batch."""
    seen: dict[str, list[np.ndarray]] = {}
    for src, u in zip(held_sources, l2_normalize(held)):
        if src is not None:
            seen.setdefault(src, []).append(u)
    new: list[int] = []
    for i, (src, u) in enumerate(zip(sources, l2_normalize(vectors))):
        if src is None or not any(float(u @ w) > REPEAT_COSINE for w in seen.get(src, [])):
            new.append(i)
            if src is not None:
                seen.setdefault(src, []).append(u)
    return new


def _as_rows(vectors: np.ndarray, dim: int, path: Path) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, np.float32)))
    if x.ndim != 2 or x.shape[1] != dim:
        raise GalleryError(f"{path}: embeddings have shape {x.shape}, gallery expects "
                           f"(n, {dim})")
    if not np.all(np.isfinite(x)):
        raise GalleryError(f"{path}: refusing to store non-finite embedding values")
    return x

"""Search indexes over gallery embeddings: thin wrappers around FAISS, registered by name.

Embeddings are L2-normalised, so inner product = cosine. Every index maps FAISS ids to the
database's embedding ids (``IndexIDMap2`` or the IVF's own ids), so a search result is a
database row without any side table. Kinds:

* ``flat``    exact search (``IndexFlatIP``); the default for small galleries;
* ``ivf_flat`` inverted lists over raw vectors, ``nprobe`` lists visited per query;
* ``ivf_pq``   inverted lists over 4-bit product-quantized codes (SIMD fast-scan), the best
  candidates re-ranked on the exact vectors (``RFlat``);
* ``hnsw``     graph search (``IndexHNSWFlat``), ``ef_search`` candidates per query.

``choose_kind(n)`` picks flat below :data:`FLAT_MAX` vectors and the large-gallery kind
measured fastest at recall@1 >= 0.95 (see README, ``slimface bench gallery``) above it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from slimface._registry import Registry
from slimface.errors import GalleryError

#: Galleries up to this many embeddings use exact search (a query costs < ~3 ms there).
FLAT_MAX = 50_000
#: Kind used above FLAT_MAX; chosen by measurement on 1M x 128-d (README).
LARGE_KIND = "ivf_pq"


#: Below this many queries a search runs on one thread: an OpenMP team for a single query
#: only adds a barrier, which costs tens of ms when the machine is oversubscribed.
SINGLE_THREAD_BELOW = 16


def _faiss(n_queries: int | None = None) -> Any:
    import faiss

    threads = int(os.environ.get("SLIMFACE_THREADS", "2"))
    if n_queries is not None and n_queries < SINGLE_THREAD_BELOW:
        threads = 1
    faiss.omp_set_num_threads(threads)
    return faiss


@dataclass
class IndexSpec:
    """What to build: a registered ``kind`` and its parameters (stored with the index)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


SEARCH_INDEXES: Registry[Callable[..., Any]] = Registry("search index")


def _nlist_for(n: int) -> int:
    """About 4*sqrt(n) lists (the FAISS guideline), a power of two, at least 16."""
    return int(2 ** max(4, round(math.log2(4 * math.sqrt(max(n, 1))))))


def _train_sample(x: np.ndarray, n_lists: int, seed: int = 0) -> np.ndarray:
    """k-means needs ~40-64 points per centroid; more only costs time."""
    want = min(len(x), 64 * n_lists)
    if want == len(x):
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), want, replace=False))]


@SEARCH_INDEXES.register(name="flat")
def build_flat(x: np.ndarray, ids: np.ndarray) -> Any:
    faiss = _faiss()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    if len(x):
        index.add_with_ids(x, ids)
    return index


@SEARCH_INDEXES.register(name="ivf_flat")
def build_ivf_flat(x: np.ndarray, ids: np.ndarray, nlist: int | None = None,
                   nprobe: int = 64) -> Any:
    faiss = _faiss()
    nlist = nlist or _nlist_for(len(x))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist,
                               faiss.METRIC_INNER_PRODUCT)
    _train_and_add(index, x, ids, nlist)
    index.nprobe = nprobe
    return index


@SEARCH_INDEXES.register(name="ivf_pq")
def build_ivf_pq(x: np.ndarray, ids: np.ndarray, nlist: int | None = None, m: int | None = None,
                 nbits: int = 4, nprobe: int | None = None, k_factor: int = 64) -> Any:
    """IVF over product-quantized codes, best ``k_factor * k`` re-ranked on exact vectors.

    4-bit codes use FAISS's SIMD "fast-scan" kernels (a 16-entry lookup table per
    sub-quantizer lives in a register), which makes scanning many lists cheap; the exact
    re-ranking makes the final order that of exact search among the candidates. Default
    ``nprobe`` visits half the lists: measured necessary on isotropic synthetic data
    (README, ``slimface bench gallery``).
    """
    faiss = _faiss()
    nlist = nlist or int(2 ** max(4, round(math.log2(math.sqrt(max(len(x), 1))))))
    m = m or _two_dims_per_code(x.shape[1])
    codes = f"PQ{m}x{nbits}fs" if nbits == 4 else f"PQ{m}x{nbits}"
    base = faiss.index_factory(x.shape[1], f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
    refine = faiss.IndexRefineFlat(base)
    refine.k_factor = k_factor
    if len(x) < nlist:
        raise GalleryError(f"an IVF index with {nlist} lists needs at least {nlist} "
                           f"embeddings, the gallery has {len(x)}; use the flat index")
    refine.train(_train_sample(x, max(nlist, 2 ** nbits)))
    index = faiss.IndexIDMap2(refine)
    index.add_with_ids(x, ids)
    faiss.extract_index_ivf(refine).nprobe = nprobe or max(1, nlist // 2)
    return index


@SEARCH_INDEXES.register(name="hnsw")
def build_hnsw(x: np.ndarray, ids: np.ndarray, m: int = 32, ef_construction: int = 80,
               ef_search: int = 64) -> Any:
    faiss = _faiss()
    graph = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    graph.hnsw.efSearch = ef_search
    index = faiss.IndexIDMap2(graph)
    if len(x):
        index.add_with_ids(x, ids)
    return index


def _two_dims_per_code(dim: int) -> int:
    """Sub-quantizers of 2 dimensions (at most 64) - fine enough that exact re-ranking of
    64 candidates recovers exact search's top-1 on 128-d data (measured, README)."""
    m = min(64, max(1, dim // 2))
    while dim % m:
        m -= 1
    return m


def _train_and_add(index: Any, x: np.ndarray, ids: np.ndarray, nlist: int) -> None:
    if len(x) < nlist:
        raise GalleryError(f"an IVF index with {nlist} lists needs at least {nlist} "
                           f"embeddings, the gallery has {len(x)}; use the flat index")
    index.train(_train_sample(x, nlist))
    index.add_with_ids(x, ids)


def choose_kind(n: int) -> str:
    """Exact search for small galleries, the measured large-gallery kind above FLAT_MAX."""
    return "flat" if n <= FLAT_MAX else LARGE_KIND


def build_index(spec: IndexSpec, x: np.ndarray, ids: np.ndarray) -> Any:
    """Build ``spec.kind`` over float32 rows ``x`` with database ids ``ids``."""
    x = np.ascontiguousarray(x, np.float32)
    ids = np.ascontiguousarray(ids, np.int64)
    if x.ndim != 2 or len(x) != len(ids):
        raise ValueError(f"need (n, d) vectors and n ids, got {x.shape} and {ids.shape}")
    return SEARCH_INDEXES.get(spec.kind)(x, ids, **spec.params)


def add_to_index(index: Any, x: np.ndarray, ids: np.ndarray) -> None:
    index.add_with_ids(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(ids, np.int64))


def remove_from_index(index: Any, ids: np.ndarray) -> int:
    faiss = _faiss()
    return int(index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, np.int64))))


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (nq, k); missing results have id -1 and score -inf."""
    q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
    _faiss(len(q))
    if q.shape[1] != index.d:
        raise GalleryError(f"query has {q.shape[1]} dimensions, the index {index.d}")
    k = max(1, min(int(k), max(int(index.ntotal), 1)))
    scores, ids = index.search(q, k)
    scores = np.where(ids < 0, -np.inf, scores)
    return scores, ids


def serialize_array(index: Any) -> np.ndarray:
    """The index as a uint8 array (no extra copy to bytes; callers write it out)."""
    return _faiss().serialize_index(index)


def deserialize(data: bytes | memoryview) -> Any:
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def set_search_params(index: Any, nprobe: int | None = None, ef_search: int | None = None,
                      k_factor: int | None = None) -> None:
    """Tune an existing index's speed/recall trade-off at query time."""
    faiss = _faiss()
    if nprobe is not None:
        try:
            faiss.extract_index_ivf(index).nprobe = int(nprobe)
        except RuntimeError:
            pass
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if ef_search is not None and hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(ef_search)
    if k_factor is not None and hasattr(inner, "k_factor"):
        inner.k_factor = float(k_factor)

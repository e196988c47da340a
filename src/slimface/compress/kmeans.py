"""Batched k-means for product quantization: many small problems (one per subspace) at once.

Product quantization of one layer is ``M`` independent k-means problems of the same shape
(``n`` vectors of dimension ``d`` into ``K`` clusters). Solving them as one batched tensor
problem keeps the Python overhead per layer constant instead of per subspace.

* Initialisation: k-means++ (Arthur & Vassilvitskii 2007, http://ilpubs.stanford.edu:8090/778/),
  sampled independently per subspace.
* Empty clusters: after each assignment step, an empty cluster is moved onto the vector that
  is currently worst served (largest squared distance to its centroid), the standard repair
  used by FAISS; the vector's error drops to zero, so the objective never increases.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from slimface.errors import ConfigError


@dataclass
class KMeansResult:
    """Centroids ``(M, K, d)``, assignments ``(M, n)`` int64 and final inertia per subspace."""

    centroids: torch.Tensor
    assignments: torch.Tensor
    inertia: torch.Tensor


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(M, n, K)`` between batched vectors and centroids (exact, >= 0)."""
    d2 = (x * x).sum(-1, keepdim=True) - 2 * x @ c.transpose(1, 2) + (c * c).sum(-1)[:, None, :]
    return d2.clamp_min_(0)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds ``(M, K, d)``: each next seed is drawn with probability ~ D(x)^2."""
    m, n, _ = x.shape
    rows = torch.arange(m)
    first = torch.randint(n, (m,), generator=generator)
    centroids = [x[rows, first]]
    closest = ((x - centroids[0][:, None]) ** 2).sum(-1)
    for _ in range(1, k):
        weights = closest.clone()
        degenerate = weights.sum(1) <= 0  # all points already coincide with seeds
        weights[degenerate] = 1.0
        pick = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        centroids.append(x[rows, pick])
        closest = torch.minimum(closest, ((x - centroids[-1][:, None]) ** 2).sum(-1))
    return torch.stack(centroids, 1)


def repair_empty_clusters(x: torch.Tensor, centroids: torch.Tensor, assign: torch.Tensor,
                          err: torch.Tensor, k: int) -> int:
    """Move each empty centroid onto the worst-served vector of its subspace (in place).

    Returns how many clusters were repaired. ``err`` is each vector's squared distance to
    its centroid; a vector chosen once gets error 0 so the next empty cluster takes another.
    """
    counts = torch.zeros(assign.shape[0], k, dtype=torch.long)
    counts.scatter_add_(1, assign, torch.ones_like(assign))
    empty = (counts == 0).nonzero().tolist()
    for sub, cluster in empty:
        worst = int(err[sub].argmax())
        if float(err[sub, worst]) <= 0:
            break  # fewer distinct vectors than clusters: nothing left to split
        centroids[sub, cluster] = x[sub, worst]
        assign[sub, worst] = cluster
        err[sub, worst] = 0.0
    return len(empty)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0,
           tol: float = 1e-7) -> KMeansResult:
    """Batched Lloyd k-means with k-means++ seeds and empty-cluster repair.

    Args:
        x: ``(M, n, d)`` vectors, or ``(n, d)`` for a single problem.
        k: clusters per problem; must not exceed ``n``.
        iters: maximum Lloyd iterations (stops early when inertia stalls within ``tol``).
        seed: seeds the k-means++ sampling, so results are reproducible.
    """
    single = x.dim() == 2
    x64 = (x[None] if single else x).to(torch.float64)  # exact means
    x = x64.float()  # distances in float32 (2x faster, ties aside the same argmin)
    m, n, _ = x.shape
    if not 1 <= k <= n:
        raise ConfigError(f"k-means: K={k} clusters need 1 <= K <= number of vectors ({n})")
    gen = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(x, k, gen)
    previous = None
    for _ in range(iters):
        err, assign = _sq_dists(x, centroids).min(-1)
        repair_empty_clusters(x, centroids, assign, err, k)
        centroids = _cluster_means(x64, assign, centroids.double(), k).float()
        inertia = err.sum(1)
        if previous is not None and bool(((previous - inertia) <= tol * previous).all()):
            break
        previous = inertia
    err, assign = _sq_dists(x, centroids).min(-1)
    result = KMeansResult(centroids.float(), assign, err.sum(1).float())
    if single:
        result = KMeansResult(result.centroids[0], result.assignments[0], result.inertia[0])
    return result


def _cluster_means(x: torch.Tensor, assign: torch.Tensor, old: torch.Tensor,
                   k: int) -> torch.Tensor:
    """Mean of each cluster's vectors; a cluster left empty keeps its old centroid."""
    m, n, d = x.shape
    sums = torch.zeros(m, k, d, dtype=x.dtype).scatter_add_(1, assign[..., None].expand(m, n, d), x)
    counts = torch.zeros(m, k, dtype=x.dtype).scatter_add_(1, assign, torch.ones_like(assign,
                                                                                   dtype=x.dtype))
    return torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], old)

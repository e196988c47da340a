"""Q-CNN error correction: fit PQ codebooks and assignments to a layer's *response*.

Plain k-means minimises the weight error ``||W - W_hat||``. What matters is the layer's output
on real inputs, so Q-CNN (Wu et al. 2016, https://arxiv.org/abs/1512.06473, sec. 3.3)
minimises the response error

    E(W_hat) = || W X - W_hat X_hat ||^2,

where ``X`` are the layer's inputs in the float network and ``X_hat`` its inputs in the network
whose earlier layers are already quantized (multi-layer mode; ``X_hat = X`` for one layer).
Columns of ``X`` are im2col patches (``Cin * P`` rows, P = kernel positions) over every output
location of every calibration image. Everything below works on second moments only::

    S = X_hat X_hat^T,   B = (W X) X_hat^T,   E = ||W X||^2 - 2 tr(B W_hat^T) + tr(W_hat S W_hat^T)

so the cost does not grow with the number of calibration locations after the statistics are
accumulated, and each coordinate step is solved exactly:

* codebook step (one subspace, assignments fixed): ``E`` is quadratic in the ``K x d``
  codewords; solve the normal equations, ridge-pulled towards the current codebook so unused
  codewords stay put and ``E`` can never increase;
* assignment step (one subspace, one kernel position at a time, codebook fixed): every output
  unit picks the codeword that minimises ``E`` given its other positions - a greedy sweep that
  includes the current choice, so ``E`` never increases.

Subspaces are visited one at a time holding the others fixed (block coordinate descent).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ConfigError


@dataclass
class ResponseStats:
    """Moments of one layer's inputs, accumulated over calibration batches (float64).

    ``sigma_hat`` = X_hat X_hat^T ``(Cin*P, Cin*P)``; ``target_cross`` = (W X) X_hat^T
    ``(R, Cin*P)`` (``B`` above, computed from the float response directly: R/(Cin*P) of the
    cost of X X_hat^T); ``target_energy`` = ||W X||^2; ``count`` = im2col columns seen.
    """

    sigma_hat: torch.Tensor
    target_cross: torch.Tensor
    target_energy: float = 0.0
    count: int = 0

    @classmethod
    def zeros(cls, rows: int, dim: int) -> "ResponseStats":
        return cls(torch.zeros(dim, dim, dtype=torch.float64),
                   torch.zeros(rows, dim, dtype=torch.float64))


@dataclass
class CorrectionTrace:
    """Response error ``E`` before correction and after each step (for tests and reports)."""

    errors: list[float] = field(default_factory=list)

    @property
    def initial(self) -> float:
        return self.errors[0]

    @property
    def final(self) -> float:
        return self.errors[-1]


def layer_columns(layer: nn.Module, x: torch.Tensor,
                  locations: torch.Tensor | None = None) -> torch.Tensor:
    """im2col of ``x`` as the layer sees it: ``(Cin*P, N*L)`` in the weight's column order.

    ``locations`` (flat output positions, shared by every image of the batch) keeps only
    those columns, before the transposing copy.
    """
    if isinstance(layer, nn.Linear) or getattr(layer, "kernel_size", None) is None:
        return x.reshape(-1, x.shape[-1]).t()
    cols = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    if locations is not None:
        cols = cols[:, :, locations]
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as ``(R, Cin*P)``: rows are output units, columns im2col order."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1)


def sample_locations(n_locations: int, per_image: int | None,
                     generator: torch.Generator | None = None) -> torch.Tensor | None:
    """At most ``per_image`` random output locations (the same for a whole batch).

    Early layers have ~1,000 locations per image whose patches are highly redundant; a random
    subset, redrawn per batch, keeps the moments' cost proportional to the number of images.
    ``None`` = keep all.
    """
    if per_image is None or n_locations <= per_image:
        return None
    return torch.randperm(n_locations, generator=generator)[:per_image].sort().values


def _n_locations(layer: nn.Module, x: torch.Tensor) -> int:
    if isinstance(layer, nn.Linear) or getattr(layer, "kernel_size", None) is None:
        return 1
    h, w = x.shape[-2:]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.kernel_size, layer.stride, layer.padding,
                                              layer.dilation)
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1) * ((w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


TARGETS = ("float", "quantized")


@torch.no_grad()
def accumulate_stats(stats: ResponseStats, layer: nn.Module, x_float: torch.Tensor,
                     x_quant: torch.Tensor, per_image: int | None = None,
                     generator: torch.Generator | None = None, target: str = "float") -> None:
    """Add one batch of the layer's float-network and quantized-network inputs.

    ``per_image`` caps the output locations sampled per image (see :func:`sample_locations`).
    ``target`` is what ``W_hat X_hat`` should reproduce: ``"float"`` = ``W X``, the float
    network's response (Q-CNN's multi-layer objective: also undo upstream error), or
    ``"quantized"`` = ``W X_hat``, the float layer on the quantized network's input (only this
    layer's own error; less prone to over-fitting a few thousand calibration crops).
    """
    if target not in TARGETS:
        raise ConfigError(f"error-correction target must be one of {TARGETS}, got {target!r}")
    keep = sample_locations(_n_locations(layer, x_float), per_image, generator)
    cols = layer_columns(layer, x_float.float(), keep)
    cols_hat = cols if x_quant is x_float else layer_columns(layer, x_quant.float(), keep)
    response = weight_matrix(layer).float() @ (cols if target == "float" else cols_hat)
    stats.sigma_hat += (cols_hat @ cols_hat.t()).double()
    stats.target_cross += (response @ cols_hat.t()).double()
    stats.target_energy += float(response.double().pow(2).sum())
    stats.count += cols.shape[1]


def response_error(w_hat: torch.Tensor, stats: ResponseStats) -> float:
    """``||W X - W_hat X_hat||^2`` from the accumulated moments (``w_hat`` is ``(R, Cin*P)``)."""
    w_hat = w_hat.double()
    return float(stats.target_energy - 2 * (stats.target_cross * w_hat).sum()
                 + ((w_hat @ stats.sigma_hat) * w_hat).sum())


class _SubspaceProblem:
    """The quadratic ``E`` restricted to subspace ``m`` with every other subspace fixed."""

    def __init__(self, books: torch.Tensor, idx: torch.Tensor, s_mm: torch.Tensor,
                 target: torch.Tensor):
        self.k, self.d = books.shape
        self.r, self.p = idx.shape
        self.books, self.idx = books, idx
        self.s4 = s_mm.reshape(self.d, self.p, self.d, self.p)
        self.t3 = target.reshape(self.r, self.d, self.p)

    def weights(self) -> torch.Tensor:
        """Current ``(R, d, P)`` block of W_hat."""
        return self.books[self.idx].permute(0, 2, 1)

    def solve_codebook(self, ridge: float = 1e-9) -> None:
        """Exact least-squares codewords for fixed assignments (ridge towards the old ones)."""
        k, d, p = self.k, self.d, self.p
        onehot = F.one_hot(self.idx, k).to(torch.float64).reshape(self.r, p * k)
        counts = (onehot.t() @ onehot).reshape(p, k, p, k)  # pairs (p,k),(q,j) in one unit
        gram = torch.einsum("pkqj,cpeq->kcje", counts, self.s4).reshape(k * d, k * d)
        rhs = torch.einsum("rpk,rcp->kc", onehot.reshape(self.r, p, k), self.t3).reshape(-1)
        lam = ridge * float(gram.diagonal().abs().mean()) + 1e-300
        system = gram + lam * torch.eye(k * d, dtype=gram.dtype)
        solution = torch.linalg.solve(system, rhs + lam * self.books.reshape(-1))
        self.books = solution.reshape(k, d)

    def reassign(self) -> None:
        """Greedy sweep over kernel positions: each unit picks its best codeword at ``p``."""
        w = self.weights()  # (R, d, P)
        for p in range(self.p):
            s_pp = self.s4[:, p, :, p]
            # sum over the other positions q != p of S[p, q] w[:, :, q]
            coupling = torch.einsum("ceq,req->rc", self.s4[:, p], w) - w[:, :, p] @ s_pp.t()
            q = coupling - self.t3[:, :, p]
            cost = ((self.books @ s_pp) * self.books).sum(1)[None, :] + 2 * q @ self.books.t()
            self.idx[:, p] = cost.argmin(1)
            w[:, :, p] = self.books[self.idx[:, p]]


def correct_layer(books: torch.Tensor, idx: torch.Tensor, stats: ResponseStats,
                  sweeps: int = 1) -> tuple[torch.Tensor, torch.Tensor,
                                                                    CorrectionTrace]:
    """Block coordinate descent on ``E`` over subspaces; returns new codebooks and indices.

    Args:
        books: ``(M, K, d)`` initial codebooks (e.g. from k-means on the weights).
        idx: ``(M, R, P)`` initial assignments.
        stats: moments from :func:`accumulate_stats`.
        sweeps: rounds of (codebook, re-assignment) per subspace; a final codebook solve
            follows the last round (``sweeps=1`` = LS, one greedy sweep, LS again).
    """
    if sweeps < 0:
        raise ConfigError(f"error-correction sweeps must be >= 0, got {sweeps}")
    m, k, d = books.shape
    _, r, p = idx.shape
    books, idx = books.double().clone(), idx.clone()
    s = stats.sigma_hat
    b = stats.target_cross
    w_hat = _dense(books, idx)
    g = w_hat @ s  # maintained so each subspace's target is cheap
    trace = CorrectionTrace([response_error(w_hat, stats)])
    for _ in range(max(sweeps, 1)):
        for sub in range(m):
            cols = slice(sub * d * p, (sub + 1) * d * p)
            old = w_hat[:, cols].clone()
            s_mm = s[cols, cols]
            target = b[:, cols] - g[:, cols] + old @ s_mm
            prob = _SubspaceProblem(books[sub], idx[sub], s_mm, target)
            prob.solve_codebook()
            if sweeps > 0:
                prob.reassign()
                prob.solve_codebook()
            books[sub], idx[sub] = prob.books, prob.idx
            new = prob.weights().reshape(r, d * p)
            w_hat[:, cols] = new
            g += (new - old) @ s[cols, :]
        trace.errors.append(response_error(w_hat, stats))
    return books.float(), idx, trace


def _dense(books: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(R, M*d*P)`` weight from ``(M, K, d)`` codebooks and ``(M, R, P)`` indices."""
    m, r, p = idx.shape
    words = books[torch.arange(m)[:, None, None], idx]  # (M, R, P, d)
    return words.permute(1, 0, 3, 2).reshape(r, -1)

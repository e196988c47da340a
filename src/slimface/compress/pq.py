"""Product quantization of a whole network's Conv2d / Linear layers (Q-CNN).

``quantize_pq(model, PQConfig(d=4, k=32), calib=crops)`` returns a copy of ``model`` whose
conv and FC layers are :class:`~slimface.runtime.pq.PQConv2d` / ``PQLinear`` (lookup-table
inference, stored by the ``pq`` codec of ``runtime/deploy.py``):

1. per layer, k-means (k-means++ seeds, empty-cluster repair) on the weight's sub-vectors:
   subspaces are slices of ``d`` input channels; for a conv one codebook per slice serves
   every kernel position (``Cout * kh * kw`` vectors per subspace);
2. with calibration crops, Q-CNN error correction (``compress/error_correction.py``) refits
   codebooks and assignments to the layer's response. Layers are processed in execution
   order and each sees the activations of the network whose earlier layers are already
   quantized, so the error accumulated upstream is corrected too;
3. optionally (``finetune_codebooks``) a short distillation that trains only the codebooks
   (assignments fixed, so codewords are differentiable) to match the float model's
   embeddings on the calibration crops.

Sizes: a PQ layer stores ``ceil(log2 K)``-bit indices plus codebooks (fp32 unless the config
says fp16); layers left float (stem conv with 3 input channels, grouped convs, layers whose
input channels ``d`` does not divide) count at fp32. :func:`pq_size_report` counts conv+fc
weights only; biases and normalisation parameters are reported apart.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from slimface.compress.error_correction import (ResponseStats,
                                                accumulate_stats, correct_layer, weight_matrix)
from slimface.compress.kmeans import kmeans
from slimface.data.calibration import (  # noqa: F401 - moved to slimface.data, kept here
    DEFAULT_CALIB_SUBDIR, calibration_crops, calibration_paths)
from slimface.errors import ConfigError
from slimface.runtime.pq import CODEBOOK_DTYPES, PQConv2d, PQLinear, index_bits, set_pq_mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PQConfig:
    """How to product-quantize a model.

    Attributes:
        d: sub-vector length (input channels per subspace); ``M = Cin / d``.
        k: codewords per subspace (indices take ``ceil(log2 k)`` bits).
        skip: module paths to keep float (the first conv is always kept when ``d`` does not
            divide its 3 input channels).
        overrides: per-layer ``{path: (d, k)}``.
        kmeans_iters: Lloyd iterations.
        codebook_dtype: ``"float32"`` or ``"float16"`` (stored and counted in that dtype).
        seed: k-means++ seed.
    """

    d: int = 4
    k: int = 32
    skip: tuple[str, ...] = ()
    overrides: dict[str, tuple[int, int]] = field(default_factory=dict)
    kmeans_iters: int = 25
    codebook_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d < 1 or self.k < 2:
            raise ConfigError(f"PQ needs d >= 1 and K >= 2, got d={self.d}, K={self.k}")
        if self.codebook_dtype not in CODEBOOK_DTYPES:
            raise ConfigError(f"codebook dtype {self.codebook_dtype!r}; choose from "
                              f"{sorted(CODEBOOK_DTYPES)}")

    def for_layer(self, path: str) -> tuple[int, int]:
        return tuple(self.overrides.get(path, (self.d, self.k)))  # type: ignore[return-value]


# --------------------------------------------------------------------------- layer level
def quantizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Conv2d`` / ``nn.Linear`` (the layers PQ can replace), in definition order."""
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and name]


def skip_reason(path: str, layer: nn.Module, d: int, k: int, cfg: PQConfig) -> str | None:
    """Why ``layer`` stays float, or ``None`` when it can be product-quantized."""
    if path in cfg.skip:
        return "skipped by config"
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return f"grouped conv (groups={layer.groups})"
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            return f"padding {layer.padding!r}/{layer.padding_mode} not supported"
    cin = layer.weight.shape[1]
    if cin % d:
        return f"{cin} input channels not divisible by d={d}"
    vectors = layer.weight.numel() // cin
    if vectors < k:
        return f"only {vectors} vectors per subspace for K={k}"
    return None


def subspace_vectors(layer: nn.Module, d: int) -> torch.Tensor:
    """``(M, R*P, d)`` sub-vectors of the weight, grouped by input-channel slice."""
    w = layer.weight.detach().float()
    r, cin = w.shape[:2]
    p = w[0, 0].numel()
    return w.reshape(r, cin // d, d, p).permute(1, 0, 3, 2).reshape(cin // d, r * p, d)


def make_pq_layer(layer: nn.Module, books: torch.Tensor, idx: torch.Tensor,
                  codebook_dtype: str = "float32") -> PQConv2d | PQLinear:
    """The PQ replacement of ``layer`` with codebooks ``(M, K, d)``, indices ``(M, R, P)``."""
    bias = None if layer.bias is None else layer.bias.detach()
    if isinstance(layer, nn.Linear):
        return PQLinear(books, idx, bias, codebook_dtype=codebook_dtype)
    return PQConv2d(books, idx, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                    bias, codebook_dtype=codebook_dtype)


def kmeans_layer(layer: nn.Module, d: int, k: int, iters: int = 25,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PQ of one layer: codebooks ``(M, K, d)`` and indices ``(M, R, P)``."""
    vecs = subspace_vectors(layer, d)
    res = kmeans(vecs, k, iters=iters, seed=seed)
    r = layer.weight.shape[0]
    return res.centroids, res.assignments.reshape(vecs.shape[0], r, -1)


# --------------------------------------------------------------------------- calibration
class _StopForward(Exception):
    """Raised by a hook once the layer of interest has seen its input (saves the rest)."""


def _run_then_remove(model: nn.Module, example: torch.Tensor, handles: Sequence[Any]) -> None:
    """One inference pass that feeds the caller's hooks; the hooks are removed even on error."""
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()


def execution_order(model: nn.Module, example: torch.Tensor,
                    paths: Sequence[str]) -> list[str]:
    """``paths`` sorted by when their module first runs in ``model(example)``."""
    seen: list[str] = []
    handles = [model.get_submodule(p).register_forward_pre_hook(
        lambda _m, _i, p=p: seen.append(p) if p not in seen else None) for p in paths]
    _run_then_remove(model, example, handles)
    return seen + [p for p in paths if p not in seen]


def _capture(model: nn.Module, path: str, batch: torch.Tensor, output: bool) -> torch.Tensor:
    """Run ``model`` until the module at ``path`` has its input (or output), then stop."""
    got: list[torch.Tensor] = []

    def grab_input(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        got.append(inputs[0])
        raise _StopForward

    def grab_output(_m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        got.append(out)
        raise _StopForward

    module = model.get_submodule(path)
    handle = (module.register_forward_hook(grab_output) if output
              else module.register_forward_pre_hook(grab_input))
    try:
        with torch.inference_mode():
            model(batch)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not got:
        raise ConfigError(f"layer {path!r} did not run in the model's forward pass")
    return got[0]


def layer_inputs(model: nn.Module, path: str, batch: torch.Tensor) -> torch.Tensor:
    """The input tensor the module at ``path`` receives when ``model`` runs ``batch``."""
    return _capture(model, path, batch, output=False)


def layer_outputs(model: nn.Module, path: str, batch: torch.Tensor) -> torch.Tensor:
    """The tensor the module at ``path`` returns when ``model`` runs ``batch``."""
    return _capture(model, path, batch, output=True)


def iter_batches(crops: np.ndarray | torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Float NCHW batches in 0..255 from uint8 NHWC crops (or an NCHW float tensor)."""
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size]
        if isinstance(chunk, np.ndarray):
            chunk = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
        yield chunk.float()


def chain_prefix(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Top-level children that run as a plain chain at the start of ``model.forward``.

    ``[c0, c1, ..., ck]`` in call order such that each is called once and ``c(i)`` receives
    exactly the tensor ``c(i-1)`` returned. For such a prefix, the output of ``c(j)`` on the
    calibration set can be cached and replayed, so calibrating a layer deep in the network
    does not recompute everything in front of it. Models that do something else simply get
    a shorter (or empty) prefix and are recomputed in full - slower, never wrong.
    """
    calls: list[tuple[str, torch.Tensor, torch.Tensor | None]] = []
    handles = []
    for name, child in model.named_children():
        handles.append(child.register_forward_pre_hook(
            lambda _m, inp, name=name: calls.append((name, inp[0] if inp else None, None))))
        handles.append(child.register_forward_hook(
            lambda _m, _i, out, name=name: calls.__setitem__(
                _last_call(calls, name), (name, calls[_last_call(calls, name)][1], out))))
    _run_then_remove(model, example, handles)
    chain: list[str] = []
    for i, (name, inp, out) in enumerate(calls):
        if name in chain or not isinstance(out, torch.Tensor):
            break
        if i > 0 and inp is not calls[i - 1][2]:
            break
        chain.append(name)
    return chain


def _last_call(calls: list[tuple[str, Any, Any]], name: str) -> int:
    return max(i for i, c in enumerate(calls) if c[0] == name)


class _Replay(nn.Module):
    """Stands in for the first chain child: returns the cached activation of this batch."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        return self.value


class _PrefixCache:
    """The output of one chain child over the whole calibration set, for one model."""

    def __init__(self, model: nn.Module, chain: list[str]):
        self.model, self.chain = model, chain
        self.boundary = -1
        self.outputs: torch.Tensor | None = None

    @contextlib.contextmanager
    def _replaying(self, start: int, n: int) -> Iterator[None]:
        """Chain children up to the boundary replaced by the cached rows ``start:start+n``."""
        if self.outputs is None:
            yield
            return
        replay = _Replay()
        replay.value = self.outputs[start:start + n]
        saved = {name: self.model._modules[name] for name in self.chain[:self.boundary + 1]}
        try:
            for i, name in enumerate(saved):
                self.model._modules[name] = replay if i == 0 else nn.Identity()
            yield
        finally:
            self.model._modules.update(saved)

    def inputs_of(self, path: str, batch: torch.Tensor, start: int) -> torch.Tensor:
        """Input of the module at ``path`` for this batch (``start`` = its offset in the set)."""
        with self._replaying(start, len(batch)):
            return layer_inputs(self.model, path, batch)

    @torch.inference_mode()
    def advance(self, boundary: int, calib: np.ndarray | torch.Tensor, batch_size: int) -> None:
        """Cache the output of ``chain[boundary]`` (computed from the current cache)."""
        if boundary <= self.boundary:
            return
        outs, start = [], 0
        for batch in iter_batches(calib, batch_size):
            with self._replaying(start, len(batch)):
                outs.append(layer_outputs(self.model, self.chain[boundary], batch).clone())
            start += len(batch)
        self.outputs, self.boundary = torch.cat(outs), boundary


class ActivationSource:
    """Inputs of any layer in the float and the partly quantized model, over the calibration
    set, reusing cached chain outputs in front of the layer (see :func:`chain_prefix`)."""

    def __init__(self, float_model: nn.Module, quant_model: nn.Module,
                 calib: np.ndarray | torch.Tensor, batch_size: int = 32):
        self.calib, self.batch_size = calib, batch_size
        example = next(iter_batches(calib[:1], 1))
        self.chain = chain_prefix(float_model, example)
        if self.chain != chain_prefix(quant_model, example):
            self.chain = []
        self.caches = (_PrefixCache(float_model, self.chain), _PrefixCache(quant_model, self.chain))

    def _boundary(self, path: str) -> int:
        """Last chain child that lies entirely before the layer at ``path``."""
        top = path.split(".")[0]
        return self.chain.index(top) - 1 if top in self.chain else len(self.chain) - 1

    def batches(self, path: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x_float, x_quant)`` input batches of layer ``path``."""
        boundary = self._boundary(path)
        for cache in self.caches:
            cache.advance(boundary, self.calib, self.batch_size)
        start = 0
        for batch in iter_batches(self.calib, self.batch_size):
            yield (self.caches[0].inputs_of(path, batch, start),
                   self.caches[1].inputs_of(path, batch, start))
            start += len(batch)


def collect_stats(source: ActivationSource, layer: nn.Module, path: str,
                  locations_per_image: int | None = 256, seed: int = 0,
                  target: str = "float") -> ResponseStats:
    """Response moments of layer ``path`` over the calibration set (float vs. quantized)."""
    gen = torch.Generator().manual_seed(seed)
    stats = ResponseStats.zeros(*weight_matrix(layer).shape)
    for x, x_hat in source.batches(path):
        accumulate_stats(stats, layer, x, x_hat, locations_per_image, gen, target)
    if stats.count == 0:
        raise ConfigError("error correction needs at least one calibration crop")
    return stats


# --------------------------------------------------------------------------- model level
@dataclass
class LayerReport:
    """What happened to one layer (JSON-friendly)."""

    path: str
    kind: str
    float_bytes: int
    stored_bytes: int
    d: int | None = None
    k: int | None = None
    skipped: str | None = None
    rel_error_kmeans: float | None = None
    rel_error_corrected: float | None = None


def quantize_pq(model: nn.Module, cfg: PQConfig, calib: np.ndarray | torch.Tensor | None = None,
                error_correction: bool = True, sweeps: int = 1, batch_size: int = 32,
                progress: bool = True, target: str = "float"
                ) -> tuple[nn.Module, list[LayerReport]]:
    """Product-quantize every eligible Conv2d/Linear of a copy of ``model``.

    Args:
        model: float model (not modified).
        cfg: subspace size, codebook size and per-layer exceptions.
        calib: uint8 NHWC crops in the model's template (needed for error correction and for
            the execution order; never LFW pair images).
        error_correction: refit each layer to its response (multi-layer Q-CNN).
        sweeps: coordinate-descent rounds per layer (see ``correct_layer``).
        target: ``"float"`` or ``"quantized"`` response to fit (see ``accumulate_stats``).
    """
    if error_correction and (calib is None or len(calib) == 0):
        raise ConfigError("error correction needs calibration crops (pass --calib DIR or "
                          "--no-error-correction)")
    float_model = model.eval()
    quant = copy.deepcopy(model).eval()
    paths = [p for p, _ in quantizable_layers(model)]
    if calib is not None and len(calib):
        paths = execution_order(float_model, next(iter_batches(calib[:1], 1)), paths)
    source = (ActivationSource(float_model, quant, calib, batch_size)
              if error_correction else None)
    reports = []
    bar = tqdm(paths, desc="pq layers", unit="layer", disable=not progress, leave=False)
    for path in bar:
        bar.set_postfix_str(path)
        reports.append(_quantize_one(float_model, quant, path, cfg, source, sweeps, target))
        if reports[-1].rel_error_corrected is not None:
            bar.set_postfix_str(f"{path} err {reports[-1].rel_error_kmeans:.3f}->"
                                f"{reports[-1].rel_error_corrected:.3f}")
    set_pq_mode(quant, "auto")
    return quant, reports


def _quantize_one(float_model: nn.Module, quant: nn.Module, path: str, cfg: PQConfig,
                  source: ActivationSource | None, sweeps: int,
                  target: str = "float") -> LayerReport:
    layer = float_model.get_submodule(path)
    d, k = cfg.for_layer(path)
    kind = type(layer).__name__
    float_bytes = 4 * layer.weight.numel()
    reason = skip_reason(path, layer, d, k, cfg)
    if reason is not None:
        return LayerReport(path, kind, float_bytes, float_bytes, skipped=reason)
    books, idx = kmeans_layer(layer, d, k, cfg.kmeans_iters, cfg.seed)
    report = LayerReport(path, kind, float_bytes, 0, d, k)
    if source is not None:
        stats = collect_stats(source, layer, path, target=target)
        books, idx, trace = correct_layer(books, idx, stats, sweeps)
        report.rel_error_kmeans = trace.initial / max(stats.target_energy, 1e-30)
        report.rel_error_corrected = trace.final / max(stats.target_energy, 1e-30)
    pq_layer = make_pq_layer(layer, books, idx, cfg.codebook_dtype)
    pq_layer.mode = "dense"  # fast path while later layers are calibrated
    report.stored_bytes = weight_bytes(pq_layer)
    _set_submodule(quant, path, pq_layer)
    return report


def weight_bytes(layer: PQConv2d | PQLinear) -> int:
    """Indices + codebooks of a PQ layer (no bias): what replaces ``4 * weight.numel()``."""
    bits = index_bits(layer.num_codewords)
    itemsize = np.dtype(CODEBOOK_DTYPES[layer.codebook_dtype]).itemsize
    return math.ceil(layer.indices.numel() * bits / 8) + layer.codebooks.numel() * itemsize


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


# --------------------------------------------------------------------------- sizes
def _layer_pq_bytes(layer: nn.Module, d: int, k: int, codebook_dtype: str) -> int:
    """Bit-packed indices plus codebooks of one layer quantized with ``(d, k)``."""
    itemsize = np.dtype(CODEBOOK_DTYPES[codebook_dtype]).itemsize
    m = layer.weight.shape[1] // d
    return math.ceil(layer.weight.numel() // d * index_bits(k) / 8) + m * k * d * itemsize


def planned_weight_bytes(model: nn.Module, cfg: PQConfig) -> tuple[int, int]:
    """``(float_bytes, pq_bytes)`` over all conv+fc weights if ``cfg`` were applied."""
    total_float = total_pq = 0
    for path, layer in quantizable_layers(model):
        d, k = cfg.for_layer(path)
        fb = 4 * layer.weight.numel()
        total_float += fb
        if skip_reason(path, layer, d, k, cfg) is not None:
            total_pq += fb
            continue
        total_pq += _layer_pq_bytes(layer, d, k, cfg.codebook_dtype)
    return total_float, total_pq


def config_for_ratio(model: nn.Module, ratio: float, d: int = 4,
                     base: PQConfig | None = None, per_layer: bool = True) -> PQConfig:
    """A codebook size per layer whose conv+fc compression is at least ``ratio``.

    Starts from the largest power-of-two ``K`` shared by all layers that meets the ratio, then
    (``per_layer``) greedily doubles ``K`` of the layer where one more index bit costs the
    fewest extra bytes per weight it refines, while the ratio still holds. Why: codebooks cost
    ``Cin * K`` words whatever the layer's size, so in a 32-channel layer they outweigh the
    indices, while in a 256-channel layer one more bit is nearly free of codebook cost; an
    equal ``K`` everywhere spends the budget where it buys least.
    """
    base = base or PQConfig(d=d)
    best = None
    for bits in range(1, 13):
        cfg = PQConfig(**{**asdict(base), "d": d, "k": 2 ** bits})
        fb, qb = planned_weight_bytes(model, cfg)
        if fb / qb >= ratio:
            best = cfg
    if best is None:
        fb, qb = planned_weight_bytes(model, PQConfig(**{**asdict(base), "d": d, "k": 2}))
        raise ConfigError(f"ratio {ratio}x is out of reach with d={d} (K=2 gives "
                          f"{fb / qb:.1f}x); use a larger --d")
    return _allocate_bits(model, best, ratio) if per_layer else best


def _allocate_bits(model: nn.Module, cfg: PQConfig, ratio: float) -> PQConfig:
    """Greedy per-layer doubling of ``K`` (see :func:`config_for_ratio`) within ``ratio``;
    layers the caller set explicitly (``cfg.overrides``) keep their setting."""
    layers = [(p, l) for p, l in quantizable_layers(model)
              if p not in cfg.overrides and skip_reason(p, l, cfg.d, cfg.k, cfg) is None]
    ks = {p: cfg.k for p, _ in layers}
    total_float, total_pq = planned_weight_bytes(model, cfg)
    budget = total_float / ratio
    while True:
        best_path, best_cost, best_extra = None, math.inf, 0
        for path, layer in layers:
            k = ks[path]
            if k >= 4096 or k * 2 > layer.weight.numel() // cfg.d:
                continue
            extra = (_layer_pq_bytes(layer, cfg.d, 2 * k, cfg.codebook_dtype)
                     - _layer_pq_bytes(layer, cfg.d, k, cfg.codebook_dtype))
            cost = extra / layer.weight.numel()
            if total_pq + extra <= budget and cost < best_cost:
                best_path, best_cost, best_extra = path, cost, extra
        if best_path is None:
            break
        ks[best_path] *= 2
        total_pq += best_extra
    overrides = {**cfg.overrides, **{p: (cfg.d, k) for p, k in ks.items() if k != cfg.k}}
    return PQConfig(**{**asdict(cfg), "overrides": overrides})


def pq_size_report(reports: Sequence[LayerReport]) -> dict[str, Any]:
    """Totals over conv+fc weights: float bytes, stored bytes, ratio, PQ/float layer counts."""
    fb = sum(r.float_bytes for r in reports)
    sb = sum(r.stored_bytes for r in reports)
    return {"float_weight_bytes": fb, "pq_weight_bytes": sb, "ratio": fb / max(sb, 1),
            "pq_layers": sum(r.skipped is None for r in reports),
            "float_layers": [r.path for r in reports if r.skipped is not None]}


# --------------------------------------------------------------------------- fine-tuning
def finetune_codebooks(quant: nn.Module, teacher: nn.Module, crops: np.ndarray,
                       epochs: int = 2, lr: float = 1e-4, batch_size: int = 32,
                       seed: int = 0, progress: bool = True) -> list[float]:
    """Distil the float model into the PQ model by training the codebooks only.

    Assignments stay fixed, so each codeword is an ordinary differentiable parameter; the
    loss is the squared distance between L2-normalised embeddings. Returns mean loss per
    epoch. Everything but the codebooks is frozen (BN/affine statistics included).
    """
    gen = torch.Generator().manual_seed(seed)
    targets = _embeddings(teacher, crops, batch_size)
    books = [m.codebooks for m in quant.modules() if isinstance(m, (PQConv2d, PQLinear))]
    for p in quant.parameters():
        p.requires_grad_(False)
    for b in books:
        b.requires_grad_(True)
    set_pq_mode(quant, "dense")
    quant.eval()
    opt = torch.optim.Adam(books, lr=lr)
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(crops), generator=gen).numpy()
        total = 0.0
        bar = tqdm(range(0, len(order), batch_size), desc=f"codebook fine-tune {epoch + 1}",
                   disable=not progress, leave=False)
        for start in bar:
            sel = order[start:start + batch_size]
            x = next(iter_batches(crops[sel], len(sel)))
            out = nn.functional.normalize(quant(x), dim=1)
            loss = (out - targets[sel]).pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sel)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        losses.append(total / len(crops))
    for layer in (m for m in quant.modules() if isinstance(m, (PQConv2d, PQLinear))):
        layer.codebooks.requires_grad_(False)
        if layer.codebook_dtype == "float16":  # keep memory == file after training
            layer.codebooks.data = layer.codebooks.data.half().float()
    set_pq_mode(quant, "auto")
    return losses


@torch.inference_mode()
def _embeddings(model: nn.Module, crops: np.ndarray, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([nn.functional.normalize(model(x), dim=1)
                      for x in iter_batches(crops, batch_size)])


# --------------------------------------------------------------------------- deploy file
def save_pq_model(quant: nn.Module, path: str | Path, architecture: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write the PQ model as a ``.slim`` file (codec ``pq`` layers + float leftovers).

    Args:
        architecture: ``{"backbone": NAME, "kwargs": {...}}`` that rebuilds the float
            skeleton (use ``pretrained=False`` so loading never reads the teacher's weights).
        extra: more JSON metadata (``compression`` summary, calibration provenance...).
    """
    from slimface.runtime.deploy import export_state
    from slimface.runtime.slimfile import save_slim

    tensors, layers = export_state(quant)
    meta: dict[str, Any] = {"architecture": architecture, "layers": layers}
    for key in ("template", "embedding_dim", "input_size", "threshold"):
        value = getattr(quant, key, None)
        if value is not None:
            meta[key] = list(value) if isinstance(value, tuple) else value
    meta.update(extra or {})
    return save_slim(path, tensors, meta)

"""Product-quantized Linear / Conv2d layers, lookup-table inference and their ``.slim`` codec.

A PQ layer (Q-CNN, Wu et al. 2016, https://arxiv.org/abs/1512.06473) splits the weight's
input dimension into ``M`` subspaces of ``d`` channels. Subspace ``m`` has a codebook of
``K`` sub-codewords (``codebooks[m]``, shape ``(K, d)``) and one index per output unit and
kernel position (``indices[m]``, shape ``(R, P)``; ``R`` outputs, ``P = kh * kw``, 1 for
Linear). The reconstructed weight is ``W[o, m*d:(m+1)*d, p] = codebooks[m, indices[m, o, p]]``:
for a conv the codebook of a channel slice is shared by every kernel position.

Lookup-table inference never rebuilds ``W``: per subspace it computes the inner products of
the input slice with all ``K`` codewords once (``M*K`` "tables"; for a conv, a grouped 1x1
convolution), then each output is a sum of ``M*P`` table entries picked by the indices, done
by ``embedding_bag(mode="sum")`` (a vectorised gather-sum).

Default modes (:data:`DEFAULT_MODES`): FC layers run the table lookups (compiled C kernel
when a compiler is available, torch otherwise); conv layers run the reconstructed kernel
(cached) through oneDNN, which measured 2-4x faster than the gather-sum at batch 1.
``set_pq_mode(model, "lut")`` forces lookups everywhere.

Storage (codec ``kind="pq"``): ``codebooks`` fp32 (or fp16 when the layer asks for it),
``indices`` bit-packed at ``ceil(log2 K)`` bits each, least significant bit first, in the
order ``(m, o, p)``; ``bias`` fp32 when present.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ConfigError, ModelFileError
from slimface.runtime.deploy import LayerCodec, register_codec
from slimface.runtime.layout import tensor_layout

log = logging.getLogger(__name__)

PQMode = Literal["lut", "dense"]
#: Default inference mode per layer type: what measured faster at batch 1 on x86 (see
#: ``slimface bench pq``): table lookups for FC layers, the reconstructed fp32 kernel for
#: convs (oneDNN's dense conv beats the gather-sum there). ``set_pq_mode`` overrides it.
DEFAULT_MODES = {"linear": "lut", "conv2d": "dense"}
KERNEL_ENV_VAR = "SLIMFACE_PQ_KERNEL"
PQ_MODES: tuple[str, ...] = ("lut", "dense")
CODEBOOK_DTYPES = {"float32": np.float32, "float16": np.float16}


# --------------------------------------------------------------------------- bit packing
def index_bits(k: int) -> int:
    """Bits per stored index for ``K`` codewords: ``ceil(log2 K)`` (at least 1)."""
    if k < 1:
        raise ConfigError(f"PQ codebook size K must be >= 1, got {k}")
    return max(1, math.ceil(math.log2(k)))


def pack_indices(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers ``< 2**bits`` into uint8, LSB first, no padding between."""
    flat = np.ascontiguousarray(values, dtype=np.int64).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= (1 << bits)):
        raise ConfigError(f"indices must lie in [0, {1 << bits}) to pack at {bits} bits, got "
                          f"[{flat.min()}, {flat.max()}]")
    planes = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_indices(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`: the first ``count`` integers as int64."""
    need = math.ceil(count * bits / 8)
    if packed.size < need:
        raise ModelFileError(f"packed PQ indices too short: {packed.size} bytes, need {need}")
    planes = np.unpackbits(np.asarray(packed, np.uint8), count=count * bits, bitorder="little")
    return planes.reshape(count, bits).astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))


# --------------------------------------------------------------------------- C kernel
_LUT_KERNEL: Callable[..., None] | None | bool = None  # None: not tried yet; False: unavailable


def lut_kernel() -> Callable[..., None] | None:
    """The compiled ``pq_linear_lut`` (``_pq_lut.c``), built once into the cache, or ``None``.

    ``SLIMFACE_PQ_KERNEL=torch`` forces the torch path; without a C compiler the torch path
    is used and the reason logged once.
    """
    global _LUT_KERNEL
    if _LUT_KERNEL is None:
        try:
            _LUT_KERNEL = _load_lut_kernel() or False
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("PQ LUT C kernel unavailable (%s); using the torch path", exc)
            _LUT_KERNEL = False
    return _LUT_KERNEL or None


def _load_lut_kernel() -> Callable[..., None] | None:
    choice = os.environ.get(KERNEL_ENV_VAR, "")
    if choice not in ("", "c", "torch"):
        raise ConfigError(f"{KERNEL_ENV_VAR}={choice!r}: choose 'c' or 'torch'")
    src = Path(__file__).with_name("_pq_lut.c")
    if choice == "torch" or not src.is_file():
        return None
    from slimface.io.paths import cache_root

    digest = hashlib.sha1(src.read_bytes()).hexdigest()[:12]
    lib_path = cache_root() / "kernels" / f"pq_lut-{digest}.so"
    if not lib_path.is_file():
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            log.warning("PQ LUT C kernel: no C compiler (cc/gcc) found; using the torch path")
            return None
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib_path.with_name(f".{lib_path.name}.{os.getpid()}.tmp")
        subprocess.run([compiler, "-O3", "-shared", "-fPIC", str(src), "-o", str(tmp)],
                       check=True, capture_output=True, timeout=120)
        os.replace(tmp, lib_path)
    fn = ctypes.CDLL(str(lib_path)).pq_linear_lut
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 5
    log.debug("PQ LUT C kernel: %s", lib_path)
    return fn


# --------------------------------------------------------------------------- modules
class _PQWeight(nn.Module):
    """Codebooks ``(M, K, d)`` (a Parameter: fine-tunable with fixed assignments) and indices
    ``(M, R, P)`` (a buffer), plus the dense reconstruction both PQ layers share."""

    def __init__(self, codebooks: torch.Tensor, indices: torch.Tensor,
                 bias: torch.Tensor | None, mode: PQMode, codebook_dtype: str):
        super().__init__()
        if codebooks.dim() != 3 or indices.dim() != 3 or codebooks.shape[0] != indices.shape[0]:
            raise ConfigError(f"PQ layer needs codebooks (M, K, d) and indices (M, R, P), got "
                              f"{tuple(codebooks.shape)} and {tuple(indices.shape)}")
        if codebook_dtype not in CODEBOOK_DTYPES:
            raise ConfigError(f"codebook dtype {codebook_dtype!r}; choose from "
                              f"{sorted(CODEBOOK_DTYPES)}")
        books = codebooks.detach().float().clone()
        if codebook_dtype == "float16":
            books = books.half().float()  # what the file will hold, so round trips are exact
        self.codebooks = nn.Parameter(books)
        self.register_buffer("indices", indices.detach().long().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone())
        self.codebook_dtype = codebook_dtype
        self.mode = mode
        self._lut_index: torch.Tensor | None = None
        self._byte_index: torch.Tensor | None = None
        self._dense_cache: tuple[int, torch.Tensor] | None = None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in PQ_MODES:
            raise ConfigError(f"PQ mode {value!r}; choose from {PQ_MODES}")
        self._mode = value

    @property
    def num_subspaces(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def num_codewords(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def subspace_dim(self) -> int:
        return int(self.codebooks.shape[2])

    def dense_weight_rows(self) -> torch.Tensor:
        """``(R, M*d, P)`` reconstructed weight; differentiable w.r.t. the codebooks."""
        m, r, p = self.indices.shape
        words = self.codebooks[torch.arange(m)[:, None, None], self.indices]  # (M, R, P, d)
        return words.permute(1, 0, 3, 2).reshape(r, m * self.subspace_dim, p)

    def bag_index(self) -> torch.Tensor:
        """``(R, P*M)`` rows of the stacked tables each output sums (cached per indices).

        Table rows are ordered ``(p, m, k)``: kernel position, subspace, codeword.
        """
        cached = self._lut_index
        if cached is None or cached.device != self.indices.device:
            m, r, p = self.indices.shape
            k = self.num_codewords
            sub = torch.arange(m, device=self.indices.device)[:, None, None]
            pos = torch.arange(p, device=self.indices.device)[None, None, :]
            rows = pos * (m * k) + sub * k + self.indices  # (M, R, P)
            dtype = torch.int32 if p * m * k < 2 ** 31 else torch.int64
            cached = rows.permute(1, 2, 0).reshape(r, p * m).to(dtype).contiguous()
            self._lut_index = cached
        return cached

    def inference_weight_rows(self) -> torch.Tensor:
        """:meth:`dense_weight_rows`, cached while the codebooks are not being trained."""
        if torch.is_grad_enabled() and self.codebooks.requires_grad:
            return self.dense_weight_rows()
        version = self.codebooks._version
        if self._dense_cache is None or self._dense_cache[0] != version:
            with torch.no_grad():
                self._dense_cache = (version, self.dense_weight_rows())
        return self._dense_cache[1]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._lut_index = self._byte_index = self._dense_cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def storage_bytes(self) -> int:
        """Deployed size: bit-packed indices + codebooks (in their stored dtype) + fp32 bias."""
        bits = index_bits(self.num_codewords)
        idx = math.ceil(self.indices.numel() * bits / 8)
        book = self.codebooks.numel() * np.dtype(CODEBOOK_DTYPES[self.codebook_dtype]).itemsize
        return idx + book + (0 if self.bias is None else 4 * self.bias.numel())


class PQLinear(_PQWeight):
    """``nn.Linear`` with a product-quantized weight; ``mode="lut"`` runs table lookups.

    With ``K`` at least the number of distinct weight rows per subspace the layer equals the
    float layer exactly (up to float summation order).
    """

    def __init__(self, codebooks: torch.Tensor, indices: torch.Tensor,
                 bias: torch.Tensor | None = None, mode: PQMode = "lut",
                 codebook_dtype: str = "float32"):
        if indices.dim() == 2:
            indices = indices[..., None]
        super().__init__(codebooks, indices, bias, mode, codebook_dtype)
        self.in_features = self.num_subspaces * self.subspace_dim
        self.out_features = int(indices.shape[1])

    @property
    def weight(self) -> torch.Tensor:
        return self.dense_weight_rows()[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dense":
            return F.linear(x, self.inference_weight_rows()[..., 0], self.bias)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        kernel = lut_kernel() if self._kernel_applies(x2) else None
        out = self._lut_c(kernel, x2) if kernel is not None else self._lut_torch(x2)
        return out.reshape(*lead, self.out_features)

    def _kernel_applies(self, x2: torch.Tensor) -> bool:
        """The C kernel: fp32 CPU, byte indices (K <= 256), nothing to differentiate."""
        grads = torch.is_grad_enabled() and (x2.requires_grad or self.codebooks.requires_grad)
        return (not grads and x2.dtype == torch.float32 and x2.device.type == "cpu"
                and self.num_codewords <= 256 and self.codebooks.is_contiguous()
                and (self.bias is None or self.bias.is_contiguous()))

    def _lut_torch(self, x2: torch.Tensor) -> torch.Tensor:
        n, m, k = x2.shape[0], self.num_subspaces, self.num_codewords
        # tables[m, k, n] = <x_n[m-th slice], codebooks[m, k]>
        tables = torch.bmm(self.codebooks, x2.view(n, m, self.subspace_dim).permute(1, 2, 0))
        out = F.embedding_bag(self.bag_index(), tables.reshape(m * k, n), mode="sum").t()
        return out if self.bias is None else out + self.bias

    def _lut_c(self, kernel: Callable[..., None], x2: torch.Tensor) -> torch.Tensor:
        if self._byte_index is None:
            self._byte_index = self.indices[..., 0].to(torch.uint8).contiguous()  # (M, R)
        x2 = x2.contiguous()
        m, k, d = self.codebooks.shape
        n, r = x2.shape[0], self.out_features
        buf = torch.empty(n * r + m * k, dtype=torch.float32)  # output, then table scratch
        bias = self.bias
        kernel(x2.data_ptr(), self.codebooks.data_ptr(), self._byte_index.data_ptr(),
               None if bias is None else bias.data_ptr(), buf.data_ptr() + 4 * n * r,
               buf.data_ptr(), n, m, k, d, r)
        return buf[:n * r].view(n, r)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"M={self.num_subspaces}, K={self.num_codewords}, d={self.subspace_dim}, "
                f"mode={self.mode}")


class PQConv2d(_PQWeight):
    """``nn.Conv2d`` (groups=1, zero padding) with a product-quantized kernel.

    Subspaces are slices of ``d`` input channels; one codebook per slice serves every kernel
    position. LUT mode: tables = grouped 1x1 conv of ``x`` with the codewords (zero padding
    commutes with it), unfolded over the kernel window, then one gather-sum per output.
    """

    def __init__(self, codebooks: torch.Tensor, indices: torch.Tensor,
                 kernel_size: tuple[int, int], stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                 bias: torch.Tensor | None = None, mode: PQMode = DEFAULT_MODES["conv2d"],
                 codebook_dtype: str = "float32"):
        kh, kw = kernel_size
        if indices.dim() == 4:
            indices = indices.reshape(indices.shape[0], indices.shape[1], kh * kw)
        if indices.shape[2] != kh * kw:
            raise ConfigError(f"PQ conv indices have {indices.shape[2]} kernel positions, "
                              f"kernel {kh}x{kw} needs {kh * kw}")
        super().__init__(codebooks, indices, bias, mode, codebook_dtype)
        self.in_channels = self.num_subspaces * self.subspace_dim
        self.out_channels = int(indices.shape[1])
        self.kernel_size = (int(kh), int(kw))
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple(int(s) for s in padding)
        self.dilation = tuple(int(s) for s in dilation)
        self._channels_last_kernel: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.dense_weight_rows().reshape(self.out_channels, self.in_channels,
                                                *self.kernel_size)

    def dense_kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The reconstructed kernel, in the memory format of the input ``like``.

        A channels_last input against an NCHW kernel makes every call copy one of them
        (``dlib-resnet-pq15`` at batch 1 ran 1.5x slower than ``dlib-resnet`` so); the
        channels_last kernel is kept beside the cached weight rows and renewed with them."""
        rows = self.inference_weight_rows()
        kernel = rows.reshape(self.out_channels, self.in_channels, *self.kernel_size)
        if tensor_layout(like) != "channels_last":
            return kernel
        if torch.is_grad_enabled() and self.codebooks.requires_grad:
            return kernel.contiguous(memory_format=torch.channels_last)
        if self._channels_last_kernel is None or self._channels_last_kernel[0] is not rows:
            self._channels_last_kernel = (rows,
                                          kernel.contiguous(memory_format=torch.channels_last))
        return self._channels_last_kernel[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dense":
            return F.conv2d(x, self.dense_kernel(x), self.bias, self.stride, self.padding,
                            self.dilation)
        n = x.shape[0]
        m, k, d = self.num_subspaces, self.num_codewords, self.subspace_dim
        tables = F.conv2d(x, self.codebooks.reshape(m * k, d, 1, 1), groups=m)
        windows, oh, ow = self._shifted_windows(tables)  # (P, N, M*K, OH, OW)
        rows = windows.transpose(1, 2).reshape(-1, n * oh * ow)
        out = F.embedding_bag(self.bag_index(), rows, mode="sum")  # (Cout, N*L)
        out = out.view(self.out_channels, n, oh, ow).permute(1, 0, 2, 3)
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out.contiguous()

    def _shifted_windows(self, tables: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """The table maps seen by each kernel position, stacked: strided slices of the zero-
        padded maps (an im2col by slicing; ``F.unfold`` is ~100x slower here on CPU)."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.stride, self.padding,
                                                  self.dilation)
        if ph or pw:
            tables = F.pad(tables, (pw, pw, ph, ph))
        h, w = tables.shape[-2:]
        oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        views = [tables[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                        j * dw:j * dw + sw * (ow - 1) + 1:sw]
                 for i in range(kh) for j in range(kw)]
        return torch.stack(views), oh, ow

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, M={self.num_subspaces}, "
                f"K={self.num_codewords}, d={self.subspace_dim}, mode={self.mode}")


def set_pq_mode(model: nn.Module, mode: str) -> int:
    """Switch every PQ layer of ``model`` to ``"lut"``, ``"dense"`` or ``"auto"`` (the
    per-type :data:`DEFAULT_MODES`); returns how many layers were switched."""
    if mode not in (*PQ_MODES, "auto"):
        raise ConfigError(f"PQ mode {mode!r}; choose from {(*PQ_MODES, 'auto')}")
    layers = [mod for mod in model.modules() if isinstance(mod, _PQWeight)]
    for layer in layers:
        kind = "linear" if isinstance(layer, PQLinear) else "conv2d"
        layer.mode = DEFAULT_MODES[kind] if mode == "auto" else mode
    return len(layers)


def plain_layer(layer: "PQConv2d | PQLinear") -> nn.Module:
    """The ``nn.Conv2d`` / ``nn.Linear`` that computes what ``layer`` computes in dense mode
    (its reconstructed weight, a copy that no longer tracks the codebooks)."""
    if isinstance(layer, PQLinear):
        plain: nn.Module = nn.Linear(layer.in_features, layer.out_features,
                                     bias=layer.bias is not None)
    else:
        plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          layer.stride, layer.padding, layer.dilation,
                          bias=layer.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(layer.weight.detach())
        if layer.bias is not None:
            plain.bias.copy_(layer.bias.detach())
    return plain.to(layer.codebooks.device).train(layer.training)


def plain_layers(model: nn.Module, modes: tuple[str, ...] = ("dense",)) -> int:
    """Replace, in place, every PQ layer of ``model`` whose mode is in ``modes`` by its
    :func:`plain_layer`; returns how many were replaced.

    For inference only: a dense-mode PQ conv already runs torch's float conv of its
    reconstructed kernel, but its per-call bookkeeping (cache and layout checks) made
    ``dlib-resnet-pq15`` a few per cent slower than ``dlib-resnet`` at batch 1; the plain
    layer is the float twin exactly. The file stays as small; the memory holds the float
    kernel either way. ``modes=PQ_MODES`` makes the whole float twin."""
    layers = [(path, mod) for path, mod in model.named_modules()
              if isinstance(mod, _PQWeight) and mod.mode in modes]
    for path, layer in layers:
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, plain_layer(layer))
    return len(layers)


def faster_fc_layers(model: nn.Module, batch: int = 1) -> dict[str, dict[str, str]]:
    """For inference: time each lookup-mode PQ FC of ``model`` against the float product of
    its reconstructed weight (:func:`plain_layer`) at ``batch`` and keep the faster, in
    place; returns, per layer, the path kept (``lookups`` or ``plain``) and the times.

    Which one wins depends on the layer and the CPU: the lookup kernel saves multiply-adds
    on wide layers, while MKL's product of a small dense weight is a few microseconds
    (dlib-resnet-pq15's 256x128 FC: lookups 18 us, plain 6 us at batch 1 on AVX-512), so
    a rule by layer type cannot be right everywhere. Ties keep the lookups. The timing costs
    tens of milliseconds per lookup layer at load, and on a busy machine it can pick either
    path for a close layer; both compute the same function up to float rounding."""
    from slimface.runtime.binary import measure_paths

    choices = {}
    layers = [(path, mod) for path, mod in model.named_modules()
              if isinstance(mod, PQLinear) and mod.mode == "lut"]
    for path, layer in layers:
        plain = plain_layer(layer).eval()
        x = torch.randn(batch, layer.in_features)
        with torch.inference_mode():
            choice = measure_paths(lambda: layer(x), lambda: plain(x))
        if choice.path == "torch":
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, name, plain)
        choices[path] = {"path": "lookups" if choice.path == "kernel" else "plain",
                         "reason": choice.reason, "input": [batch, layer.in_features]}
        log.info("PQ layer %s: %s (%s)", path, choices[path]["path"], choice.reason)
    return choices


# --------------------------------------------------------------------------- codec
def pq_fp32_bytes(m: int, d: int, rows: int, positions: int, bias: bool) -> int:
    """Bytes the same layer takes in fp32 (weight + bias): the denominator of its ratio."""
    return 4 * (m * d * rows * positions + (rows if bias else 0))


def _encode(module: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not isinstance(module, _PQWeight):
        raise TypeError(f"PQ codec cannot encode {type(module).__name__}")
    m, r, p = module.indices.shape
    k = module.num_codewords
    bits = index_bits(k)
    dtype = CODEBOOK_DTYPES[module.codebook_dtype]
    tensors = {"codebooks": module.codebooks.detach().cpu().numpy().astype(dtype),
               "indices": pack_indices(module.indices.cpu().numpy(), bits)}
    if module.bias is not None:
        tensors["bias"] = module.bias.detach().cpu().numpy().astype(np.float32)
    meta: dict[str, Any] = {"layer": "linear" if isinstance(module, PQLinear) else "conv2d",
                            "m": m, "k": k, "d": module.subspace_dim, "rows": r,
                            "positions": p, "bits": bits,
                            "codebook_dtype": module.codebook_dtype,
                            "fp32_bytes": pq_fp32_bytes(m, module.subspace_dim, r, p,
                                                        module.bias is not None)}
    if isinstance(module, PQConv2d):
        meta.update(kernel_size=list(module.kernel_size), stride=list(module.stride),
                    padding=list(module.padding), dilation=list(module.dilation))
    return tensors, meta


def _decode(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> nn.Module:
    m, k, d, r, p = (int(meta[key]) for key in ("m", "k", "d", "rows", "positions"))
    books = torch.from_numpy(np.asarray(tensors["codebooks"], np.float32).reshape(m, k, d))
    idx = unpack_indices(np.asarray(tensors["indices"]), int(meta["bits"]), m * r * p)
    if idx.size and idx.max() >= k:
        raise ValueError(f"index {idx.max()} out of range for K={k}")
    indices = torch.from_numpy(idx.reshape(m, r, p))
    bias = torch.from_numpy(np.array(tensors["bias"], np.float32)) if "bias" in tensors else None
    dtype = str(meta.get("codebook_dtype", "float32"))
    if meta["layer"] == "linear":
        return PQLinear(books, indices, bias, codebook_dtype=dtype)
    if meta["layer"] == "conv2d":
        return PQConv2d(books, indices, tuple(meta["kernel_size"]), tuple(meta["stride"]),
                        tuple(meta["padding"]), tuple(meta["dilation"]), bias,
                        codebook_dtype=dtype)
    raise ValueError(f"unknown PQ layer type {meta['layer']!r} (linear, conv2d)")


PQ_CODEC = register_codec(LayerCodec(kind="pq", matches=lambda mod: isinstance(mod, _PQWeight),
                                     encode=_encode, decode=_decode))

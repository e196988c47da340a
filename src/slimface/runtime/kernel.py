"""Binary-layer CPU kernels behind a thin, checked NumPy interface (faiss-style).

The implementation is picked once at import: the compiled ``_kernel`` extension when it was
built by ``pip install`` (it dispatches at run time, by cpuid, to AVX-512 VPOPCNTDQ, AVX2+FMA
or portable C), else the NumPy twin ``_kernel_py``. The choice is logged.

``SLIMFACE_KERNEL`` forces a choice:

* unset or ``auto``: the best implementation here, and each deployed binary layer runs
  whichever of it and torch's float conv of its unpacked weights measured faster for its
  input shape (:mod:`slimface.runtime.binary`);
* ``c``, ``c:avx512``, ``c:avx2``, ``c:portable``: the C extension (on that instruction
  set) for every layer; ``py``: the NumPy twin for every layer;
* ``torch``: torch's float conv for every layer.

Every wrapper validates shapes and dtypes, makes inputs contiguous and preallocates the
output, so the C side never sees a malformed buffer.

Conventions (shared with :mod:`slimface.compress.quantizers`): ``sign(x) = +1`` for
``x >= 0`` (bit 1); activations are NHWC; binary-activation convs pad with +1.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
from types import ModuleType
from typing import Sequence

import numpy as np

from slimface.errors import SlimfaceError
from slimface.runtime.timing import time_in_blocks

log = logging.getLogger(__name__)

CO_TILE = 64
WORD_BITS = 32
STREAM_BYTES = 8 << 20  # float outputs from this size on are streamed (_kernel.c STREAM_MIN_BYTES)
CACHE_LINE = 64
DEFAULT_THREADS = 2
ENV_VAR = "SLIMFACE_KERNEL"
ISAS: tuple[str, ...] = ("portable", "avx2", "avx512")
LAYER_PATHS: tuple[str, ...] = ("auto", "kernel", "torch")


class KernelError(SlimfaceError):
    """The requested kernel implementation is unavailable or its inputs are malformed."""


def _parse_choice(choice: str | None) -> tuple[str | None, str | None, str]:
    """``SLIMFACE_KERNEL`` -> (implementation ``c``/``py``/None, ISA or None, layer path)."""
    choice = (choice or "").strip().lower()
    if choice in ("", "auto"):
        return None, None, "auto"
    if choice == "torch":
        return None, None, "torch"
    impl, _, isa = choice.partition(":")
    if impl == "py" and not isa:
        return "py", None, "kernel"
    if impl == "c" and (not isa or isa in ISAS):
        return "c", isa or None, "kernel"
    raise KernelError(f"{ENV_VAR}={choice!r}: choose 'auto', 'c', "
                      f"{', '.join(repr('c:' + i) for i in ISAS)}, 'py' or 'torch'")


def _load(choice: str | None) -> ModuleType:
    impl, isa, _ = _parse_choice(choice)
    if impl != "py":
        try:
            mod = importlib.import_module("slimface.runtime._kernel")
        except ImportError as exc:
            if impl == "c":
                raise KernelError(
                    f"{ENV_VAR}={choice} but the C kernel is not built ({exc}); reinstall with "
                    f"a C compiler: `pip install -e .` (needs gcc), or unset {ENV_VAR}") from None
            log.warning("slimface kernel: C extension not built (%s); using the slow NumPy "
                        "fallback — reinstall with gcc available for the fast path", exc)
        else:
            if isa:
                try:
                    mod.set_isa(isa)
                except ValueError as exc:
                    raise KernelError(f"{ENV_VAR}={choice}: {exc}") from None
            log.debug("slimface kernel: C extension (%s)", mod.isa())
            return mod
    return importlib.import_module("slimface.runtime._kernel_py")


_impl: ModuleType = _load(os.environ.get(ENV_VAR))
_layer_path: str = _parse_choice(os.environ.get(ENV_VAR))[2]
_generation = 0  # bumped by use(), set_isa() and set_layer_path()


def generation() -> int:
    """Changes whenever the implementation, its ISA or the layer path rule does (deployed
    layers key their memo of the last path choice on it)."""
    return _generation


def implementation() -> str:
    """``"c:<isa>"`` or ``"py:numpy"``: what actually runs."""
    kind = "py" if _impl.__name__.endswith("_kernel_py") else "c"
    return f"{kind}:{_impl.isa()}"


def use(choice: str) -> None:
    """Switch implementation at run time (``"c"``, ``"c:avx2"``, ``"py"``) — for parity tests
    and benchmarks. Deployed layers' path rule (:func:`layer_path`) is left as it was."""
    global _impl, _generation
    _impl = _load(choice)
    _generation += 1


def set_isa(name: str) -> None:
    """Force an instruction set of the C kernel (``portable``, ``avx2``, ``avx512``)."""
    global _generation
    try:
        _impl.set_isa(name)
    except ValueError as exc:
        raise KernelError(str(exc)) from None
    _generation += 1


def best_isa() -> str:
    return _impl.best_isa()


def layer_path() -> str:
    """How deployed binary layers pick their path: ``"auto"`` (measured per shape),
    ``"kernel"`` (always this module's kernel) or ``"torch"`` (always torch's float conv)."""
    return _layer_path


def set_layer_path(path: str) -> None:
    """Override :func:`layer_path` at run time (benchmarks and tests)."""
    global _layer_path, _generation
    if path not in LAYER_PATHS:
        raise KernelError(f"layer path {path!r}: choose one of {', '.join(LAYER_PATHS)}")
    _layer_path = path
    _generation += 1


def _threads(threads: int | None) -> int:
    n = DEFAULT_THREADS if threads is None else int(threads)
    if n < 1:
        raise KernelError(f"threads must be >= 1, got {threads}")
    return n


# ------------------------------------------------------------------ weight layouts
def _words(c: int) -> int:
    return (c + WORD_BITS - 1) // WORD_BITS


def _padded_cout(cout: int) -> int:
    return (cout + CO_TILE - 1) // CO_TILE * CO_TILE


def _check_bits(bits: np.ndarray) -> np.ndarray:
    if bits.ndim != 4:
        raise KernelError(f"weight bits must be (C_out, C_in, kh, kw), got shape {bits.shape}")
    return np.asarray(bits, dtype=bool)


def prepare_binary_weights(bits: np.ndarray) -> np.ndarray:
    """Bits (C_out, C_in, kh, kw), True = +1 -> the XNOR kernel's (kh*kw*Cw, CoP) uint32 words.

    Row ``(i*kw + j)*Cw + w`` holds, for every output channel, the signs of input channels
    ``32w .. 32w+31`` at kernel position (i, j); bit b = channel 32w + b. Padding bits are 0.
    """
    bits = _check_bits(bits)
    cout, cin, kh, kw = bits.shape
    cw, cop = _words(cin), _padded_cout(cout)
    full = np.zeros((cop, kh, kw, cw * WORD_BITS), dtype=bool)
    full[:cout, :, :, :cin] = bits.transpose(0, 2, 3, 1)
    packed = np.packbits(full, axis=-1, bitorder="little").view("<u4")  # (cop, kh, kw, cw)
    return np.ascontiguousarray(packed.reshape(cop, kh * kw * cw).T).astype(np.uint32)


def prepare_sign_weights(bits: np.ndarray) -> np.ndarray:
    """Bits (C_out, C_in, kh, kw) -> the float-activation kernel's (CoP/16, kh*kw*C_in, 16)
    float32 panels: entry [co // 16, k, co % 16] is +1.0 or -1.0, the sign of output channel
    co at input index k (``(i*kw + j)*C_in + c``), 0 past C_out. Each panel of 16 output
    channels is contiguous along k, the order the kernel reads it.

    The file keeps 1 bit per weight; this in-memory form lets the kernel select-and-add
    with one fused multiply-add (multiplying by +-1 is exact), the cheapest select on x86.
    """
    bits = _check_bits(bits)
    cout, cin, kh, kw = bits.shape
    cop, kk = _padded_cout(cout), kh * kw * cin
    flat = np.zeros((kk, cop), np.float32)
    flat[:, :cout] = np.where(bits.transpose(2, 3, 1, 0).reshape(kk, cout), 1.0, -1.0)
    return np.ascontiguousarray(flat.reshape(kk, cop // 16, 16).transpose(1, 0, 2))


# ------------------------------------------------------------------ checked calls
def _as_nhwc(x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise KernelError(f"x must be a 4-d NHWC float32 array, got "
                          f"{getattr(x, 'shape', type(x).__name__)}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    t = (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)  # type: ignore[arg-type]
    if len(t) != 2:
        raise KernelError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _geometry(kernel_size: int | Sequence[int], stride: int | Sequence[int],
              padding: int | Sequence[int]) -> tuple[tuple[int, int], ...]:
    k, s, p = _pair(kernel_size), _pair(stride), _pair(padding)
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise KernelError(f"kernel {k} and stride {s} must be >= 1, padding {p} >= 0")
    return k, s, p


def _out_shape(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
               cout: int) -> tuple[int, int, int, int]:
    n, h, w, _ = x.shape
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    if oh < 1 or ow < 1:
        raise KernelError(f"kernel {k} / stride {s} / padding {p} give no output for input "
                          f"{h}x{w}")
    return n, oh, ow, cout


def _vec(v: np.ndarray | float, cout: int) -> np.ndarray:
    """A per-channel float32 vector (scalars broadcast)."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float32), (cout,)))


def fold_affine(scale: np.ndarray | float, bias: np.ndarray | float, k: int,
                cout: int) -> np.ndarray:
    """(2, CoP) float32 ``[-2 scale, K scale + bias]``, zero past C_out.

    ``scale * (K - 2 popcount) + bias`` is then one fma per output in the kernel. The product
    ``K * scale`` is exact in float64 (K < 2**29), so ``K scale + bias`` is rounded once, to
    float32; with ``scale=1, bias=0`` every output is the exact integer dot product.
    """
    s64 = _vec(scale, cout).astype(np.float64)
    b64 = _vec(bias, cout).astype(np.float64)
    aff = np.zeros((2, _padded_cout(cout)), np.float32)
    aff[0, :cout] = -2.0 * s64
    aff[1, :cout] = k * s64 + b64
    return aff


class BinaryConvPlan:
    """An XNOR-popcount conv with its weights, affine and geometry checked once.

    Calling it with an input of the shape and type it last saw is one C call (the native
    plan allocates or recycles the output): on MobileFaceNet's 7x7 maps the conv itself takes
    a few microseconds, and validating every argument per call (as :func:`binary_conv2d`
    does) took longer than the arithmetic. Deployed layers (:mod:`slimface.runtime.binary`)
    and ``slimface bench kernels`` call plans.

    Args:
        wwords: from :func:`prepare_binary_weights`.
        cout, cin: output and input channels.
        kernel_size, stride, padding: as in ``torch.nn.Conv2d`` (padding is +1 after the sign).
        scale, bias: per output channel (or scalars): ``out = scale * dot + bias``.
        threads: upper bound on threads (small calls use one).
        output: ``"float"`` (NHWC float32) or ``"signs"``: the signs of those floats as uint32
            words (N, OH, OW, ceil(C_out/32)), what a binary layer feeding another binary
            layer needs; 1 bit per output instead of 32, and the next plan skips its packing.

    Inputs are NHWC float32 activations or such sign words (a ``"signs"`` plan's output).
    """

    def __init__(self, wwords: np.ndarray, cout: int, cin: int,
                 kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, scale: np.ndarray | float = 1.0,
                 bias: np.ndarray | float = 0.0, threads: int | None = None,
                 output: str = "float"):
        if output not in ("float", "signs"):
            raise KernelError(f"output must be 'float' or 'signs', got {output!r}")
        self.output = output
        self.k, self.s, self.p = _geometry(kernel_size, stride, padding)
        self.cout, self.cin = int(cout), int(cin)
        expect = (self.k[0] * self.k[1] * _words(cin), _padded_cout(cout))
        if not isinstance(wwords, np.ndarray) or wwords.dtype != np.uint32 or \
                wwords.shape != expect:
            raise KernelError(f"wwords must be uint32 {expect} for C_in={cin}, C_out={cout}, "
                              f"kernel {self.k}; got {getattr(wwords, 'dtype', type(wwords))} "
                              f"{getattr(wwords, 'shape', '')}")
        self.wwords = np.ascontiguousarray(wwords)
        self.affine = fold_affine(scale, bias, self.k[0] * self.k[1] * cin, cout)
        self.threads = _threads(threads)
        self._geometry = (*self.k, *self.s, *self.p)
        self._out_dtype = np.float32 if output == "float" else np.uint32
        self._impl: ModuleType | None = None  # the implementation _native belongs to
        self._native = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._impl is not _impl:
            self._bind()
        out = self._native.call(x)  # None unless x has the shape and type last validated
        if out is None:
            x, out_shape = self._checked(x)
            self._expect(x, out_shape)
            out = self._native.call(x)
            if out is None:  # _checked made x contiguous float32 or uint32 of that shape
                raise KernelError(f"the {self._impl.__name__} plan refused a validated "
                                  f"input {x.dtype} {x.shape}")
        return out

    def _bind(self) -> None:
        """The implementation's own plan: on first use, or after kernel.use() switched."""
        self._impl = _impl
        self._native = _impl.Plan(self.wwords, self.affine, self.cin, self.cout,
                                  *self._geometry, self.threads)

    def _expect(self, x: np.ndarray, out_shape: tuple[int, int, int, int]) -> None:
        """Let the native plan serve inputs like x without Python, allocating like this.

        Outputs from :data:`STREAM_BYTES` on are cache-line aligned (the kernel streams
        them). The native plan reuses its previous output when nothing else holds it (not the
        array, not the buffer it views, so no view, ``torch.from_numpy`` tensor or variable
        of the caller's): a batch-32 output is fresh mmap memory on every call otherwise, and
        first-touch page faults (~0.13 ms per MB here) cost more than the arithmetic (Face-
        ResNet's Conv1b at batch 32: 17.5 -> 9.0 ms); on MobileFaceNet's 1x1 map at batch 1 the
        allocation was a quarter of the call, and a reused output is still in cache.
        """
        alloc = _aligned_empty if math.prod(out_shape) * 4 >= STREAM_BYTES else np.empty
        self._native.expect(x.shape, x.dtype == np.uint32, out_shape, alloc, self._out_dtype)

    def _checked(self, x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Validate x (the native plan then serves its shape), converting it when needed."""
        if isinstance(x, np.ndarray) and x.dtype == np.uint32:  # sign words
            if x.ndim != 4 or x.shape[3] != _words(self.cin):
                raise KernelError(f"sign words must be (N, H, W, {_words(self.cin)}) for "
                                  f"{self.cin} channels, got {x.shape}")
            x = np.ascontiguousarray(x)
        else:
            x = _as_nhwc(x)
            if x.shape[3] != self.cin:
                raise KernelError(f"x has {x.shape[3]} channels, the layer expects {self.cin}")
        n, oh, ow, cout = _out_shape(x, self.k, self.s, self.p, self.cout)
        out_shape = (n, oh, ow, cout if self.output == "float" else _words(cout))
        return x, out_shape


def _aligned_empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An uninitialised array starting on a cache line (outputs of STREAM_BYTES or more).

    malloc aligns large blocks to 16 bytes, and the kernel's non-temporal stores need whole
    cache lines: such outputs are a view into a slightly larger buffer.
    """
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def binary_conv2d(x: np.ndarray, wwords: np.ndarray, cout: int, kernel_size: int | Sequence[int],
                  stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                  scale: np.ndarray | float = 1.0, bias: np.ndarray | float = 0.0,
                  threads: int | None = None) -> np.ndarray:
    """XNOR-popcount conv of sign(x) (NHWC) with prepared binary weights.

    Returns NHWC float32 ``scale * dot + bias`` where ``dot = sum_k sign(x_k) sign(w_k)`` is
    counted exactly as an integer (K - 2 popcount(xor)); with ``scale=1, bias=0`` the result
    is the exact integer dot product. One-off calls; layers called repeatedly should build a
    :class:`BinaryConvPlan` once.
    """
    x = _as_nhwc(x)
    return BinaryConvPlan(wwords, cout, x.shape[3], kernel_size, stride, padding, scale, bias,
                          threads)(x)


class SignConvPlan:
    """The float-activation conv (binary weights, sign-select-and-add) with its weights and
    geometry checked once; calls with an input of the shape last validated go straight to
    the kernel (one allocation, no checks): on 7x7 maps at batch 1 the conv takes
    microseconds.

    Args:
        wpm: from :func:`prepare_sign_weights`.
        cout, cin, kernel_size, stride, padding, scale, bias, threads: as
            :class:`BinaryConvPlan` (zero padding: the input is float).
    """

    def __init__(self, wpm: np.ndarray, cout: int, cin: int,
                 kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
                 padding: int | Sequence[int] = 0, scale: np.ndarray | float = 1.0,
                 bias: np.ndarray | float = 0.0, threads: int | None = None):
        self.k, self.s, self.p = _geometry(kernel_size, stride, padding)
        self.cout, self.cin = int(cout), int(cin)
        expect = (_padded_cout(cout) // 16, self.k[0] * self.k[1] * self.cin, 16)
        if not isinstance(wpm, np.ndarray) or wpm.dtype != np.float32 or wpm.shape != expect:
            raise KernelError(f"wpm must be float32 {expect} for C_in={cin}, C_out={cout}, "
                              f"kernel {self.k}; got {getattr(wpm, 'dtype', type(wpm))} "
                              f"{getattr(wpm, 'shape', '')}")
        self.wpm = np.ascontiguousarray(wpm)
        self.scale, self.bias = _vec(scale, self.cout), _vec(bias, self.cout)
        self.threads = _threads(threads)
        self._args = (*self.k, *self.s, *self.p, self.threads)
        self._shape: tuple[int, ...] | None = None
        self._out_shape: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not (type(x) is np.ndarray and x.shape == self._shape and x.dtype == np.float32
                and x.flags.c_contiguous):
            x = _as_nhwc(x)
            if x.shape[3] != self.cin:
                raise KernelError(f"x has {x.shape[3]} channels, the layer expects {self.cin}")
            self._out_shape = _out_shape(x, self.k, self.s, self.p, self.cout)
            self._shape = x.shape
        out = np.empty(self._out_shape, np.float32)
        _impl.fconv(x, self.wpm, self.scale, self.bias, out, *self._args)
        return out


def sign_conv2d(x: np.ndarray, wpm: np.ndarray, cout: int, kernel_size: int | Sequence[int],
                stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                scale: np.ndarray | float = 1.0, bias: np.ndarray | float = 0.0,
                threads: int | None = None) -> np.ndarray:
    """Binary weights, float activations (NHWC): ``scale * sum(w_k ? x_k : -x_k) + bias``.

    ``wpm`` comes from :func:`prepare_sign_weights`. Every C path sums in the same order and
    agrees bit for bit with the others. One-off calls; layers build a :class:`SignConvPlan`.
    """
    x = _as_nhwc(x)
    return SignConvPlan(wpm, cout, x.shape[3], kernel_size, stride, padding, scale, bias,
                        threads)(x)


def pack_signs(x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """NHWC floats -> (N, H, W, ceil(C/32)) uint32 sign words (bit 1 = x >= 0)."""
    x = _as_nhwc(x)
    out = np.empty((*x.shape[:3], _words(x.shape[3])), np.uint32)
    _impl.pack_nhwc(x, out, _threads(threads))
    return out


def streamed_write_ms(nbytes: int, threads: int | None = None, repeats: int = 20) -> float:
    """Least milliseconds to write ``nbytes`` of floats as the kernel writes a streamed output
    (non-temporal stores, same threads).

    A float output of :data:`STREAM_BYTES` or more has to reach memory whatever computes it,
    so this is the floor under any conv writing it on this machine: ``slimface bench
    kernels`` divides torch's time by it to show which speed-ups the memory bus caps.
    The portable path does not stream, and neither does this (ordinary stores).
    """
    out = _aligned_empty((max(1, nbytes // 4),), np.float32)
    fill = {"write": lambda: _impl.stream_fill(out, _threads(threads))}
    return min(time_in_blocks(fill, repeats=repeats, rounds=1)["write"])

"""NumPy twin of ``_kernel.c`` with the same functions and signatures (the fallback when the C
extension was not built, and the reference the parity tests compare the C paths with).

It reproduces the C kernel's arithmetic from the same prepared weight layouts, but through a
float64 matmul of +-1 matrices instead of XOR + popcount, so it is slow and memory-hungry:
correct, not fast.
"""
from __future__ import annotations

import numpy as np

_ISA = "numpy"


def isa() -> str:
    return _ISA


def best_isa() -> str:
    return _ISA


def set_isa(name: str) -> None:
    if name != _ISA:
        raise ValueError(f"ISA {name} not available in the NumPy kernel (only {_ISA!r})")


def max_threads() -> int:
    return 1


def stream_fill(out: np.ndarray, threads: int) -> None:
    out[...] = np.arange(out.size, dtype=np.float32).reshape(out.shape)


def _words(c: int) -> int:
    return (c + 31) // 32


def pack_nhwc(x: np.ndarray, out: np.ndarray, threads: int) -> None:
    """Signs of NHWC floats (x >= 0 -> bit 1), channel c at bit c % 32 of word c // 32."""
    n, h, w, c = x.shape
    bits = np.zeros((n, h, w, _words(c) * 32), dtype=bool)
    bits[..., :c] = x >= 0
    packed = np.packbits(bits, axis=-1, bitorder="little")
    out[...] = packed.view("<u4").reshape(out.shape)


def _im2col(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """(N, HP, WP, C) padded input -> (N*OH*OW, kh*kw*C) in (i, j, c) order."""
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    n, oh, ow, c = win.shape[:4]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)


def _pad(x: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


def _pm1_from_words(wwords: np.ndarray, kk: int, c: int) -> np.ndarray:
    """Kernel weight words (kk*Cw, CoP) -> +-1 float64 matrix (kk*C, CoP)."""
    cop = wwords.shape[1]
    b = np.unpackbits(np.ascontiguousarray(wwords.T).view(np.uint8), axis=-1, bitorder="little")
    b = b.reshape(cop, kk, _words(c) * 32)[:, :, :c].reshape(cop, kk * c)
    return np.where(b.T > 0, 1.0, -1.0)


def _check_sizes(x: np.ndarray, out: np.ndarray, wwords: np.ndarray, affine: np.ndarray,
                 cin: int, cout: int, kh: int, kw: int, sh: int, sw: int, ph: int,
                 pw: int) -> None:
    words_in = x.dtype == np.uint32
    if x.ndim != 4 or x.shape[3] != (_words(cin) if words_in else cin):
        raise ValueError(f"bconv: x {x.shape} does not hold {cin} channels")
    oh, ow = (x.shape[1] + 2 * ph - kh) // sh + 1, (x.shape[2] + 2 * pw - kw) // sw + 1
    cop = -(-cout // 64) * 64
    last = _words(cout) if out.dtype == np.uint32 else cout
    if out.dtype not in (np.float32, np.uint32) or out.shape != (x.shape[0], oh, ow, last) or \
            wwords.size != kh * kw * _words(cin) * cop or affine.size != 2 * cop:
        raise ValueError("bconv: buffer sizes do not match the geometry")


def bconv(x: np.ndarray, out: np.ndarray, wwords: np.ndarray, affine: np.ndarray, cin: int,
          cout: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
          threads: int) -> None:
    """out = affine[0] * popcount + affine[1] (``kernel.fold_affine``), popcount = number of
    disagreeing signs between sign(x) and the weights; padding = +1. x may be sign words and
    out uint32 sign words, as in the C kernel, which checks every size the same way."""
    _check_sizes(x, out, wwords, affine, cin, cout, kh, kw, sh, sw, ph, pw)
    if x.dtype == np.uint32:  # sign words -> +-1 floats of the cin channels
        bits = np.unpackbits(x.view(np.uint8), axis=-1, bitorder="little")[..., :cin]
        x = np.where(bits > 0, 1.0, -1.0).astype(np.float32)
    c = x.shape[3]
    a = np.where(_pad(x, ph, pw, 0.0) >= 0, 1.0, -1.0)
    cols = _im2col(a, kh, kw, sh, sw)
    dot = cols @ _pm1_from_words(wwords, kh * kw, c)[:, :cout]
    count = (kh * kw * c - dot) / 2  # exact small integers
    res = (count * affine[0, :cout].astype(np.float64) + affine[1, :cout]).astype(np.float32)
    res = res.reshape(*out.shape[:3], cout)  # one rounding, as the C kernel's fma
    if out.dtype == np.uint32:
        pack_nhwc(res, out, threads)
    else:
        out[...] = res


class Plan:
    """The C extension's Plan: a layer's weights and geometry bound once (no recycling)."""

    def __init__(self, wwords: np.ndarray, affine: np.ndarray, *geometry: int):
        self._bound = (wwords, affine, *geometry)
        self._expected: tuple | None = None

    def expect(self, shape: tuple, words_in: bool, out_shape: tuple, alloc, dtype) -> None:
        self._expected = (shape, bool(words_in), out_shape, alloc, dtype)

    def call(self, x: np.ndarray) -> np.ndarray | None:
        if self._expected is None or not isinstance(x, np.ndarray):
            return None
        shape, words_in, out_shape, alloc, dtype = self._expected
        if x.shape != shape or (x.dtype == np.uint32) != words_in or \
                x.dtype not in (np.float32, np.uint32) or not x.flags.c_contiguous:
            return None
        out = alloc(out_shape, dtype)
        bconv(x, out, *self._bound)
        return out


def fconv(x: np.ndarray, wpm: np.ndarray, scale: np.ndarray, bias: np.ndarray,
          out: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
          threads: int) -> None:
    """out = scale * sum(w_k ? x_k : -x_k) + bias, zero padding; wpm holds +-1 per weight
    (``kernel.prepare_sign_weights``: 16-channel panels contiguous along k)."""
    cout, kk = scale.shape[0], kh * kw * x.shape[3]
    if wpm.shape != (-(-cout // 64) * 4, kk, 16):
        raise ValueError("fconv: buffer sizes do not match the geometry")
    panel = wpm.transpose(1, 0, 2).reshape(kk, -1)[:, :cout].astype(np.float64)
    cols = _im2col(_pad(x, ph, pw, 0.0).astype(np.float64), kh, kw, sh, sw)
    res = (cols @ panel) * scale + bias
    out[...] = res.reshape(out.shape).astype(np.float32)

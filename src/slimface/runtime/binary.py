"""Deploy form of binary and k-bit layers: inference modules, BN folding, ``.slim`` codecs.

A QAT model (``QuantConv2d`` / ``QuantLinear`` from :mod:`slimface.quant.quantizers`)
becomes an inference model with :func:`to_inference`: every 1-bit layer turns into a
:class:`BinaryConv2d` / :class:`BinaryLinear` that runs the C kernel (XNOR + popcount when
its input is binarized, sign-select-and-add when it is float), every k-bit layer into a
:class:`KbitConv2d` / :class:`KbitLinear` that keeps its k-bit codes and runs torch on the
dequantized weights. Each such layer computes ``scale[c] * raw + bias[c]`` per output
channel, so a BatchNorm that directly follows it folds into ``scale`` and ``bias`` without
touching the bits: the fold changes no quantized value, only float rounding.

Codecs (registered with :mod:`slimface.runtime.deploy`):

* ``binary``: ``bits`` = signs packed 1 bit per weight (``np.packbits`` little bit order over
  the weight tensor in PyTorch order, bit 1 = +1), ``scale`` and ``bias`` float32 per channel.
* ``kbit``: ``codes`` = k bits per weight (code ``q`` in 0..2^k-1 means
  ``2q/(2^k-1) - 1``), ``scale`` and ``bias`` float32 per channel.
* ``folded_bn``: a BatchNorm absorbed into the layer before it (no tensors; loads as identity).
* ``identity``: a module that is ``nn.Identity`` in the saved model (e.g. an activation that
  ``quantize_model`` removed) but may be something else in the rebuilt architecture.

Layer metadata records the op, geometry, how the input is quantized and ``fp32_bytes``: the
size the same parameters (layer + folded BN) take in fp32, for ``slimface info``.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ModelFileError, SlimfaceError
from slimface.quant.quantizers import (DorefaActivation, QuantConv2d, QuantLinear, SteSign,
                                       activation_scale)
from slimface.runtime import kernel
from slimface.runtime.deploy import LayerCodec, export_state, register_codec
from slimface.runtime.layout import tensor_layout
from slimface.runtime.timing import time_in_blocks

log = logging.getLogger(__name__)

INPUT_MODES: tuple[str, ...] = ("float", "sign", "dorefa")


# ------------------------------------------------------------------ bit packing
def pack_signs_bytes(w: np.ndarray) -> np.ndarray:
    """Signs of ``w`` (``w >= 0`` -> 1) packed 8 per byte, little bit order, PyTorch order."""
    return np.packbits(np.asarray(w).reshape(-1) >= 0, bitorder="little")


def unpack_signs_bytes(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_signs_bytes`: bool array (True = +1) of ``shape``."""
    count = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(data, np.uint8), count=count, bitorder="little")
    if bits.size != count:
        raise ValueError(f"{data.size} bytes hold fewer than {count} weight bits")
    return bits.astype(bool).reshape(shape)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes < 2^bits, ``bits`` bits each (little bit order), into bytes."""
    c = np.asarray(codes, np.uint8).reshape(-1, 1)
    planes = np.unpackbits(c, axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_codes(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` uint8 codes."""
    flat = np.unpackbits(np.asarray(data, np.uint8), count=count * bits, bitorder="little")
    if flat.size != count * bits:
        raise ValueError(f"{data.size} bytes hold fewer than {count} {bits}-bit codes")
    planes = np.zeros((count, 8), np.uint8)
    planes[:, :bits] = flat.reshape(count, bits)
    return np.packbits(planes, axis=1, bitorder="little").reshape(-1)


# ------------------------------------------------------------------ path choice
#: Milliseconds of calls per side a path measurement aims at, and its bounds on calls.
MEASURE_MS = 20.0
MEASURE_CALLS = (5, 50)
#: Calls of a shape after which its first measurement is taken again and the two merged: the
#: first comes while the process is cold (and perhaps while the machine is busy loading),
#: the second once caches, thread pools and the CPU's clock have settled.
RECHECK_CALLS = 32


@dataclass(frozen=True)
class PathChoice:
    """Which path runs a deployed binary layer for one input shape, and why.

    ``path`` is ``"kernel"`` (this package's C kernel, or its NumPy twin) or ``"torch"``
    (torch's float conv of the unpacked +-1 weights, scale folded in); ``kernel_ms`` and
    ``torch_ms`` are the least times measured for the choice, when it was measured.
    """

    path: str
    reason: str
    kernel_ms: float | None = None
    torch_ms: float | None = None
    #: False for a first measurement, which :data:`RECHECK_CALLS` calls later is taken again
    final: bool = True

    def merged(self, again: PathChoice) -> PathChoice:
        """The choice from two measurements of the same shape: each path's best time."""
        k_ms = min(self.kernel_ms or float("inf"), again.kernel_ms or float("inf"))
        t_ms = min(self.torch_ms or float("inf"), again.torch_ms or float("inf"))
        return PathChoice("kernel" if k_ms <= t_ms else "torch",
                          f"measured twice: kernel {k_ms:.3g} ms, torch {t_ms:.3g} ms",
                          k_ms, t_ms)


#: Process-wide: one measurement per layer geometry, input shape and layout, thread counts
#: and kernel implementation; layers of the same shape share it.
_PATH_CHOICES: dict[tuple[Any, ...], PathChoice] = {}
_CHOICES_GEN = [0]  # bumped by clear_path_choices: layers' memos of their last choice expire


def clear_path_choices() -> None:
    """Forget every measured choice: the next call of each shape measures again."""
    _PATH_CHOICES.clear()
    _CHOICES_GEN[0] += 1


def measure_paths(run_kernel: Callable[[], Any], run_torch: Callable[[], Any]) -> PathChoice:
    """Time both paths of a layer on its real input and pick the faster (ties: the kernel).

    Each side is called once untimed (plans, oneDNN primitives and weight layouts are made
    there), then in alternating blocks (``runtime/timing.time_in_blocks``) until each has
    run about :data:`MEASURE_MS`; the least call time counts, as in ``bench kernels``.
    """
    once = []
    for fn in (run_kernel, run_torch):
        t0 = time.perf_counter()
        fn()
        once.append((time.perf_counter() - t0) * 1e3)
    lo, hi = MEASURE_CALLS
    calls = int(min(hi, max(lo, MEASURE_MS / max(min(once), 1e-3))))
    times = time_in_blocks({"kernel": run_kernel, "torch": run_torch}, repeats=calls,
                           rounds=min(calls, 3), warmup=0)
    k_ms, t_ms = min(times["kernel"]), min(times["torch"])
    path = "kernel" if k_ms <= t_ms else "torch"
    return PathChoice(path, f"measured: kernel {k_ms:.3g} ms, torch {t_ms:.3g} ms",
                      k_ms, t_ms, final=False)


_WORDS_IN = PathChoice("kernel", "sign words in (fused producer)")
_NO_KERNEL = PathChoice("torch", "grouped or dilated: no kernel")


# ------------------------------------------------------------------ inference modules
class _ChannelAffine(nn.Module):
    """Shared part of deploy layers: per-channel ``scale``/``bias``, the input quantizer,
    and for 1-bit layers the choice between the kernel and torch's float conv."""

    def _init_affine(self, cout: int, scale: torch.Tensor | None, bias: torch.Tensor | None,
                     input_mode: str, a_bits: int | None, h: str, beta: str) -> None:
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input mode {input_mode!r} not one of {INPUT_MODES}")
        self.register_buffer("scale", _vector(scale, cout, 1.0))
        self.register_buffer("bias", _vector(bias, cout, 0.0))
        self.input_mode, self.a_bits, self.h, self.beta = input_mode, a_bits, h, beta
        self.input_quantizer: nn.Module | None = (
            DorefaActivation(a_bits, h) if input_mode == "dorefa" else
            SteSign(beta=beta) if input_mode == "sign" else None)

    #: set by :func:`fuse_sign_outputs` on XNOR convs whose only consumer is another one
    emit_signs = False
    #: the path the last call took and why (``slimface info --paths`` shows it)
    path_choice: PathChoice | None = None
    _gen = 0  # bumped whenever scale, bias or threads change: plans are rebuilt then
    _threads: int | None = None

    @property
    def threads(self) -> int | None:
        """Upper bound on the kernel's threads (None: ``kernel.DEFAULT_THREADS``)."""
        return self._threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        self._threads = value
        self._changed()

    def _changed(self) -> None:
        """Scale, bias or threads changed: plans, torch weights and the path memo are stale.
        Change scale and bias through :meth:`fold_affine` or ``load_state_dict`` (both call
        this); checking tensor versions on every call cost more than a small conv."""
        self._gen += 1

    def _state_key(self) -> tuple[Any, ...]:
        return (self._gen,)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._changed()

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> nn.Module:
        out = super()._apply(fn, *args, **kwargs)
        self._changed()
        return out

    def _binary_plan(self) -> kernel.BinaryConvPlan:
        """The XNOR kernel's plan for this layer, rebuilt when scale, bias or threads change.
        With XNOR's beta the kernel returns raw +-1 dots: beta multiplies per pixel
        afterwards."""
        output = "signs" if self.emit_signs else "float"
        key = (*self._state_key(), output)
        if getattr(self, "_plan_key", None) != key:
            affine = self.beta == "none"
            cin, k, stride, padding = self._plan_geometry()
            self._plan = kernel.BinaryConvPlan(
                self._wwords, self.scale.numel(), cin, k, stride, padding,
                self.scale.numpy() if affine else 1.0, self.bias.numpy() if affine else 0.0,
                self.threads, output)
            self._plan_key = key
        return self._plan

    def _sign_plan(self, padding: Any) -> kernel.SignConvPlan:
        """The float-activation kernel's plan (padding 0 when the input arrives padded)."""
        key = (*self._state_key(), tuple(padding))
        if getattr(self, "_splan_key", None) != key:
            cin, k, stride, _ = self._plan_geometry()
            self._splan = kernel.SignConvPlan(self._wpm, self.scale.numel(), cin, k, stride,
                                              padding, self.scale.numpy(), self.bias.numpy(),
                                              self.threads)
            self._splan_key = key
        return self._splan

    def _torch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(+-1 weights, the same times scale): torch's path, made on first use."""
        key = self._state_key()
        if getattr(self, "_tw_key", None) != key:
            pm1 = torch.from_numpy(np.where(self.bits, 1.0, -1.0).astype(np.float32))
            shape = (-1,) + (1,) * (pm1.dim() - 1)
            self._tw = (pm1, pm1 * self.scale.view(shape))
            self._tw_key = key
        return self._tw

    def _choose(self, x: torch.Tensor, geometry: tuple[Any, ...],
                run_kernel: Callable[[], Any], run_torch: Callable[[], Any]) -> PathChoice:
        """This call's path: forced by ``SLIMFACE_KERNEL``, else measured once per shape.

        A per-layer memo of the last input's shape and strides (and of every setting the
        choice depends on) answers repeated calls without building the cache key: on 1x1
        maps the whole kernel call takes under a microsecond. (Attributes are written
        through ``__dict__``: ``nn.Module.__setattr__`` costs a microsecond a time.)"""
        memo = (x.shape, x.stride(), kernel.generation(), _CHOICES_GEN[0], self._gen,
                torch.get_num_threads())
        d = self.__dict__
        if d.get("_memo") == memo:
            choice = d["path_choice"]
            if choice.final:
                return choice
            d["_calls"] = calls = d.get("_calls", 0) + 1
            if calls < RECHECK_CALLS:
                return choice
            choice = self._recheck(x, geometry, run_kernel, run_torch)
            d["path_choice"] = choice
            return choice
        choice = self._choose_uncached(x, geometry, run_kernel, run_torch)
        d["_memo"], d["path_choice"], d["_calls"] = memo, choice, 0
        return choice

    def _recheck(self, x: torch.Tensor, geometry: tuple[Any, ...],
                 run_kernel: Callable[[], Any], run_torch: Callable[[], Any]) -> PathChoice:
        """Measure a first choice again, now warm, unless a layer of the same shape did."""
        key = self._choice_key(x, geometry)
        first = _PATH_CHOICES.get(key)
        if first is None or first.final:
            return first or self._choose_uncached(x, geometry, run_kernel, run_torch)
        choice = first.merged(measure_paths(run_kernel, run_torch))
        _PATH_CHOICES[key] = choice
        log.debug("%s %s: %s (%s)", type(self).__name__, tuple(x.shape), choice.path,
                  choice.reason)
        return choice

    def _choice_key(self, x: torch.Tensor, geometry: tuple[Any, ...]) -> tuple[Any, ...]:
        return (type(self).__name__, geometry, self.input_mode, self.beta, self.emit_signs,
                tuple(x.shape), tensor_layout(x), self.threads, torch.get_num_threads(),
                kernel.implementation())

    def _choose_uncached(self, x: torch.Tensor, geometry: tuple[Any, ...],
                         run_kernel: Callable[[], Any], run_torch: Callable[[], Any]
                         ) -> PathChoice:
        rule = kernel.layer_path()
        if rule != "auto":
            return PathChoice(rule, f"forced ({kernel.ENV_VAR}: {rule})")
        key = self._choice_key(x, geometry)
        choice = _PATH_CHOICES.get(key)
        if choice is None:
            choice = measure_paths(run_kernel, run_torch)
            _PATH_CHOICES[key] = choice
            log.debug("%s %s: %s (%s)", type(self).__name__, tuple(x.shape), choice.path,
                      choice.reason)
        return choice

    def _run(self, x: torch.Tensor, geometry: tuple[Any, ...]) -> Any:
        run_kernel = lambda: self._kernel_forward(x)  # noqa: E731
        run_torch = lambda: self._torch_forward(x)  # noqa: E731
        run = run_kernel if self._choose(x, geometry, run_kernel, run_torch).path == "kernel" \
            else run_torch
        if torch.is_grad_enabled():  # entering no_grad costs microseconds: only when needed
            with torch.no_grad():
                return run()
        return run()

    def fold_affine(self, mul: torch.Tensor, add: torch.Tensor) -> None:
        """Absorb a following per-channel ``y * mul + add`` (a BatchNorm in eval mode)."""
        self.scale.mul_(mul)
        self.bias.mul_(mul).add_(add)
        self._changed()

    def _input_meta(self) -> dict[str, Any]:
        return {"input": self.input_mode, "a_bits": self.a_bits, "h": self.h, "beta": self.beta}


def _vector(v: torch.Tensor | None, n: int, fill: float) -> torch.Tensor:
    if v is None:
        return torch.full((n,), fill, dtype=torch.float32)
    return v.detach().float().reshape(-1).expand(n).clone()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _DeployConvBase(_ChannelAffine):
    """Geometry + input handling common to the binary and k-bit conv."""

    def _init_geometry(self, cin: int, cout: int, kernel_size: Any, stride: Any, padding: Any,
                       dilation: Any, groups: int) -> None:
        self.in_channels, self.out_channels = cin, cout
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.groups = _pair(padding), _pair(dilation), groups

    def _quantized_padded_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pad then quantize (as ``QuantConv2d`` does); returns the input and XNOR's beta."""
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        beta = activation_scale(self.input_quantizer, x, self.kernel_size, self.stride)
        return self.input_quantizer(x), beta  # type: ignore[misc]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, input={self.input_mode!r}")


class BinaryConv2d(_DeployConvBase):
    """1-bit-weight conv for inference: ``scale[c] * sum(sign(w) * q(x)) + bias[c]``.

    Dense convs run whichever is faster for their input shape (:meth:`_choose`): the
    compiled kernel (XNOR-popcount for sign inputs, sign-select-add otherwise) or torch's
    float conv of the unpacked weights; grouped or dilated convs always run torch.
    """

    def __init__(self, bits: np.ndarray, scale: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, input_mode: str = "float",
                 a_bits: int | None = None, h: str = "clip", beta: str = "none",
                 threads: int | None = None):
        super().__init__()
        bits = np.asarray(bits, dtype=bool)
        cout, cin_g, kh, kw = bits.shape
        self._init_geometry(cin_g * groups, cout, (kh, kw), stride, padding, dilation, groups)
        self._init_affine(cout, scale, bias, input_mode, a_bits, h, beta)
        self.bits = bits
        self._threads = threads
        self._use_kernel = groups == 1 and self.dilation == (1, 1)
        if not self._use_kernel:
            pass  # torch only (_torch_weights)
        elif input_mode == "sign":
            self._wwords = kernel.prepare_binary_weights(bits)
        else:
            self._wpm = kernel.prepare_sign_weights(bits)

    def _plan_geometry(self) -> tuple[int, Any, Any, Any]:
        return self.in_channels, self.kernel_size, self.stride, self.padding

    @property
    def runs_xnor_kernel(self) -> bool:
        """Sign inputs, no activation scale, dense: the XNOR-popcount plan can run this layer."""
        return self._use_kernel and self.input_mode == "sign" and self.beta == "none"

    def forward(self, x: torch.Tensor | SignWords) -> torch.Tensor | SignWords:
        if isinstance(x, SignWords):  # from a fused producer: only the kernel reads words
            self.__dict__["path_choice"] = _WORDS_IN
            return self._kernel_forward(x)
        if not self._use_kernel:
            self.__dict__["path_choice"] = _NO_KERNEL
            with torch.no_grad():
                return self._torch_forward(x)
        return self._run(x, (self.in_channels, self.out_channels, self.kernel_size,
                             self.stride, self.padding))

    def _kernel_forward(self, x: torch.Tensor | SignWords) -> torch.Tensor | SignWords:
        if isinstance(x, SignWords) or self.runs_xnor_kernel:
            out = self._binary_plan()(x.words if isinstance(x, SignWords) else _nhwc(x))
            return SignWords(out) if self.emit_signs else _from_nhwc(out)
        if self.input_mode == "sign":  # XNOR beta: raw +-1 dots, then beta * scale + bias
            ph, pw = self.padding
            xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
            beta = activation_scale(self.input_quantizer, xp, self.kernel_size, self.stride)
            raw = _from_nhwc(self._binary_plan()(_nhwc(x)))
            return raw * beta * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        padding = self.padding
        if self.input_quantizer is not None:
            x, _ = self._quantized_padded_input(x)
            padding = (0, 0)
        return _from_nhwc(self._sign_plan(padding)(_nhwc(x)))

    def _torch_forward(self, x: torch.Tensor) -> torch.Tensor | SignWords:
        pm1, scaled = self._torch_weights()
        beta = None
        padding = self.padding
        if self.input_quantizer is not None:
            x, beta = self._quantized_padded_input(x)
            padding = (0, 0)
        if beta is None:
            y = F.conv2d(x, scaled, self.bias, self.stride, padding, self.dilation, self.groups)
        else:
            y = F.conv2d(x, pm1, None, self.stride, padding, self.dilation, self.groups) * beta
            y = y * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.emit_signs:
            return SignWords(kernel.pack_signs(_nhwc(y), self.threads))
        return y


class BinaryLinear(_ChannelAffine):
    """1-bit-weight fully connected layer: the conv kernel as a 1x1 conv on 1x1 maps, or
    torch's ``F.linear`` of the unpacked weights, whichever is faster for its input shape."""

    def __init__(self, bits: np.ndarray, scale: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, input_mode: str = "float",
                 a_bits: int | None = None, h: str = "clip", beta: str = "none",
                 threads: int | None = None):
        super().__init__()
        bits = np.asarray(bits, dtype=bool)
        self.out_features, self.in_features = bits.shape
        self._init_affine(self.out_features, scale, bias, input_mode, a_bits, h, beta)
        self.bits = bits
        self._threads = threads
        b4 = bits[:, :, None, None]
        if input_mode == "sign":
            self._wwords = kernel.prepare_binary_weights(b4)
        else:
            self._wpm = kernel.prepare_sign_weights(b4)

    def _plan_geometry(self) -> tuple[int, Any, Any, Any]:
        return self.in_features, 1, 1, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, (self.in_features, self.out_features))

    def _kernel_forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, 1, 1, self.in_features).float().contiguous()
        if self.input_mode == "sign":
            beta = activation_scale(self.input_quantizer, x.reshape(-1, self.in_features), (), ())
            out = self._binary_plan()(x2.numpy())
            if beta is None:
                return torch.from_numpy(out).reshape(*lead, self.out_features)
            y = torch.from_numpy(out).reshape(-1, self.out_features) * beta
            return (y * self.scale + self.bias).reshape(*lead, self.out_features)
        if self.input_quantizer is not None:
            x2 = self.input_quantizer(x2)
        out = self._sign_plan((0, 0))(x2.numpy())
        return torch.from_numpy(out).reshape(*lead, self.out_features)

    def _torch_forward(self, x: torch.Tensor) -> torch.Tensor:
        pm1, scaled = self._torch_weights()
        pm1, scaled = pm1.reshape(self.out_features, -1), scaled.reshape(self.out_features, -1)
        beta = None
        if self.input_quantizer is not None:
            beta = activation_scale(self.input_quantizer, x.reshape(-1, self.in_features), (), ())
            x = self.input_quantizer(x)
        if beta is None:
            return F.linear(x, scaled, self.bias)
        y = F.linear(x.reshape(-1, self.in_features), pm1) * beta
        return (y * self.scale + self.bias).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, input={self.input_mode!r}"


def _levels(codes: np.ndarray, w_bits: int) -> torch.Tensor:
    return torch.from_numpy(2.0 * codes.astype(np.float32) / ((1 << w_bits) - 1) - 1.0)


class KbitConv2d(_DeployConvBase):
    """k-bit-weight conv for inference: ``scale[c] * conv(q(x), 2q/(2^k-1) - 1) + bias[c]``.

    The codes are kept (they are what the file stores); torch runs the dequantized weights.
    """

    def __init__(self, codes: np.ndarray, w_bits: int, scale: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, input_mode: str = "float",
                 a_bits: int | None = None, h: str = "clip", beta: str = "none"):
        super().__init__()
        codes = np.asarray(codes, np.uint8)
        cout, cin_g, kh, kw = codes.shape
        self._init_geometry(cin_g * groups, cout, (kh, kw), stride, padding, dilation, groups)
        self._init_affine(cout, scale, bias, input_mode, a_bits, h, beta)
        self.codes, self.w_bits = codes, w_bits
        self.register_buffer("weight_q", _levels(codes, w_bits), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, padding = None, self.padding
        if self.input_quantizer is not None:
            x, beta = self._quantized_padded_input(x)
            padding = (0, 0)
        y = F.conv2d(x, self.weight_q, None, self.stride, padding, self.dilation, self.groups)
        if beta is not None:
            y = y * beta
        return y * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class KbitLinear(_ChannelAffine):
    """k-bit-weight fully connected layer (see :class:`KbitConv2d`)."""

    def __init__(self, codes: np.ndarray, w_bits: int, scale: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, input_mode: str = "float",
                 a_bits: int | None = None, h: str = "clip", beta: str = "none"):
        super().__init__()
        codes = np.asarray(codes, np.uint8)
        self.out_features, self.in_features = codes.shape
        self._init_affine(self.out_features, scale, bias, input_mode, a_bits, h, beta)
        self.codes, self.w_bits = codes, w_bits
        self.register_buffer("weight_q", _levels(codes, w_bits), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = None
        if self.input_quantizer is not None:
            beta = activation_scale(self.input_quantizer, x, (), ())
            x = self.input_quantizer(x)
        y = F.linear(x, self.weight_q)
        if beta is not None:
            y = y * beta
        return y * self.scale + self.bias


class SignWords:
    """Activations passed between two fused binary convs as packed sign words (NHWC uint32,
    32 channels per word): what the consumer's sign would compute, at 1 bit per value."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray):
        self.words = words


class FoldedBatchNorm(nn.Identity):
    """Marks a BatchNorm whose affine now lives in the layer before it."""

    def __init__(self, num_features: int = 0):
        super().__init__()
        self.num_features = num_features


def _nhwc(x: torch.Tensor) -> np.ndarray:
    """A torch NCHW tensor (any memory format) as a contiguous NHWC float32 array (no copy
    when it is channels_last float32)."""
    if x.requires_grad:
        x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    a = x.permute(0, 2, 3, 1).numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _from_nhwc(out: np.ndarray) -> torch.Tensor:
    """NHWC array -> NCHW torch view in channels_last memory format (no copy)."""
    return torch.from_numpy(out).permute(0, 3, 1, 2)


DEPLOY_TYPES = (BinaryConv2d, BinaryLinear, KbitConv2d, KbitLinear)


# ------------------------------------------------------------------ QAT -> deploy
def _input_config(q: nn.Module | None) -> dict[str, Any]:
    if q is None:
        return {"input_mode": "float"}
    if isinstance(q, SteSign):
        return {"input_mode": "sign", "beta": q.beta}
    if isinstance(q, DorefaActivation):
        return {"input_mode": "dorefa", "a_bits": q.precision, "h": q.h}
    raise SlimfaceError(f"no deploy form for input quantizer {type(q).__name__}; "
                        f"supported: SteSign, DorefaActivation")


def _weight_precision(layer: nn.Module) -> int:
    return int(getattr(layer.weight_quantizer, "precision", 32))


@torch.no_grad()
def deploy_layer(layer: QuantConv2d | QuantLinear) -> nn.Module:
    """The inference twin of one QAT layer (bit-exact weights, per-channel scale and bias)."""
    wq = layer.quantized_weight().detach().float().cpu()
    cout = wq.shape[0]
    cfg = _input_config(layer.input_quantizer)
    bias = layer.bias.detach().float() if layer.bias is not None else None
    bits = _weight_precision(layer)
    if bits == 1:
        scale = wq.reshape(cout, -1).abs().mean(dim=1)
        signs = (wq >= 0).numpy()
        if isinstance(layer, QuantConv2d):
            return BinaryConv2d(signs, scale, bias, layer.stride, layer.padding, layer.dilation,
                                layer.groups, **cfg)
        return BinaryLinear(signs, scale, bias, **cfg)
    levels = (1 << bits) - 1
    codes = torch.round((wq.clamp(-1, 1) + 1) / 2 * levels).to(torch.uint8).numpy()
    if isinstance(layer, QuantConv2d):
        return KbitConv2d(codes, bits, None, bias, layer.stride, layer.padding, layer.dilation,
                          layer.groups, **cfg)
    return KbitLinear(codes, bits, None, bias, **cfg)


def _is_quantized(m: nn.Module) -> bool:
    return (isinstance(m, (QuantConv2d, QuantLinear)) and m.weight_quantizer is not None
            and _weight_precision(m) <= 8)


@torch.no_grad()
def to_inference(model: nn.Module, fold_bn: bool = True) -> nn.Module:
    """Replace (in place) every quantized QAT layer by its deploy module; fold BNs into them."""
    model.eval()
    for path, module in list(model.named_modules()):
        if _is_quantized(module):
            _set_submodule(model, path, deploy_layer(module))
    if fold_bn:
        n = fold_batchnorms(model)
        log.info("folded %d BatchNorm layers into the quantized layers before them", n)
    return model


class _LeafTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, DEPLOY_TYPES) or super().is_leaf_module(m, qualname)


def _trace_or_none(model: nn.Module, what: str, level: int) -> torch.fx.Graph | None:
    """The model's fx graph with deploy layers as leaves; None (logged) when untraceable:
    graph rewrites are optimisations, so a model fx cannot trace just runs unrewritten."""
    try:
        return _LeafTracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any trace failure just means "do not rewrite"
        log.log(level, "%s skipped: model is not fx-traceable (%s)", what, exc)
        return None


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> int:
    """Fold each BatchNorm whose only input is a deploy layer used nowhere else.

    The graph comes from ``torch.fx``; models it cannot trace are left unfolded (logged).
    """
    graph = _trace_or_none(model, "BatchNorm folding", logging.WARNING)
    if graph is None:
        return 0
    modules = dict(model.named_modules())
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (not isinstance(src, torch.fx.Node) or src.op != "call_module"
                or not isinstance(modules.get(src.target), DEPLOY_TYPES)
                or len(src.users) != 1):
            continue
        bn: nn.BatchNorm2d = modules[node.target]  # type: ignore[assignment]
        inv = torch.rsqrt(bn.running_var.float() + bn.eps)
        mul = inv * (bn.weight.float() if bn.affine else 1.0)
        add = (bn.bias.float() if bn.affine else 0.0) - bn.running_mean.float() * mul
        layer = modules[src.target]
        layer.fold_affine(mul, add)
        layer.folded_bn = node.target
        _set_submodule(model, node.target, FoldedBatchNorm(bn.num_features))
        folded += 1
    return folded


def fuse_sign_outputs(model: nn.Module) -> int:
    """Let XNOR convs that feed only another XNOR conv write sign words instead of floats.

    The pattern is conv -> (folded BN, removed activation: identities) -> conv, as in the
    bodies of Face-ResNet Q's residual units. The producer then writes 1 bit per output (the
    sign of the float it would have written, so results are unchanged) and the consumer
    skips packing. A fused producer returns :class:`SignWords`, not a tensor, so only its
    single consumer may see it (checked on the ``torch.fx`` graph; untraceable models are
    left unfused).
    """
    graph = _trace_or_none(model, "sign-output fusion", logging.DEBUG)
    if graph is None:
        return 0
    modules = dict(model.named_modules())

    def xnor_conv(node: torch.fx.Node) -> BinaryConv2d | None:
        m = modules.get(node.target) if node.op == "call_module" else None  # type: ignore[arg-type]
        return m if isinstance(m, BinaryConv2d) and m.runs_xnor_kernel else None

    fused = 0
    for node in graph.nodes:
        producer = xnor_conv(node)
        cur = node
        while producer is not None and len(cur.users) == 1:
            nxt = next(iter(cur.users))
            if nxt.op == "call_module" and type(modules.get(nxt.target)) in (  # type: ignore[arg-type]
                    nn.Identity, FoldedBatchNorm):
                cur = nxt
                continue
            if xnor_conv(nxt) is not None and nxt.args[:1] == (cur,):
                producer.emit_signs = True
                fused += 1
            break
    return fused


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


# ------------------------------------------------------------------ codecs
def _fp32_bytes(n_weights: int, cout: int, has_bias: bool, folded: bool) -> int:
    """What the layer's own parameters (+ the folded BN's 4 vectors) take in fp32."""
    return 4 * (n_weights + (cout if has_bias else 0) + (4 * cout if folded else 0))


def _geometry_meta(m: nn.Module) -> dict[str, Any]:
    if isinstance(m, (BinaryConv2d, KbitConv2d)):
        return {"op": "conv2d", "stride": list(m.stride), "padding": list(m.padding),
                "dilation": list(m.dilation), "groups": m.groups}
    return {"op": "linear"}


def _common_meta(m: nn.Module, shape: tuple[int, ...], bits: int) -> dict[str, Any]:
    folded = getattr(m, "folded_bn", None)
    n = int(np.prod(shape))
    has_bias = bool(torch.any(m.bias != 0)) or folded is not None
    return {"shape": list(shape), "bits": bits, "n_weights": n, "folded_bn": folded,
            "fp32_bytes": _fp32_bytes(n, shape[0], has_bias and folded is None, folded is not None),
            **_geometry_meta(m), **m._input_meta()}


def _encode_binary(m: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if isinstance(m, (QuantConv2d, QuantLinear)):
        m = deploy_layer(m)
    tensors = {"bits": pack_signs_bytes(np.where(m.bits, 1, -1)),
               "scale": m.scale.numpy().astype(np.float32),
               "bias": m.bias.numpy().astype(np.float32)}
    return tensors, _common_meta(m, m.bits.shape, 1)


def _encode_kbit(m: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if isinstance(m, (QuantConv2d, QuantLinear)):
        m = deploy_layer(m)
    tensors = {"codes": pack_codes(m.codes, m.w_bits),
               "scale": m.scale.numpy().astype(np.float32),
               "bias": m.bias.numpy().astype(np.float32)}
    return tensors, _common_meta(m, m.codes.shape, m.w_bits)


def _decode_kwargs(t: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {"scale": torch.from_numpy(np.array(t["scale"], np.float32)),
                          "bias": torch.from_numpy(np.array(t["bias"], np.float32)),
                          "input_mode": meta["input"], "a_bits": meta.get("a_bits"),
                          "h": meta.get("h") or "clip", "beta": meta.get("beta") or "none"}
    if meta["op"] == "conv2d":
        kw.update(stride=tuple(meta["stride"]), padding=tuple(meta["padding"]),
                  dilation=tuple(meta["dilation"]), groups=int(meta["groups"]))
    elif meta["op"] != "linear":
        raise ValueError(f"unknown op {meta['op']!r} (conv2d or linear)")
    return kw


def _checked(decode: Any) -> Any:
    """Turn shape/size mismatches of a corrupt file into ValueError (deploy adds the path)."""
    def wrapper(t: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> nn.Module:
        try:
            return decode(t, meta)
        except (RuntimeError, TypeError, IndexError) as exc:
            raise ValueError(f"{meta.get('kind')} layer data do not fit its metadata "
                             f"({str(exc).splitlines()[0]})") from None
    return wrapper


@_checked
def _decode_binary(t: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> nn.Module:
    bits = unpack_signs_bytes(t["bits"], tuple(meta["shape"]))
    kw = _decode_kwargs(t, meta)
    module = BinaryConv2d(bits, **kw) if meta["op"] == "conv2d" else BinaryLinear(bits, **kw)
    module.folded_bn = meta.get("folded_bn")
    return module


@_checked
def _decode_kbit(t: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> nn.Module:
    shape = tuple(meta["shape"])
    codes = unpack_codes(t["codes"], int(meta["bits"]), int(np.prod(shape))).reshape(shape)
    kw = _decode_kwargs(t, meta)
    cls = KbitConv2d if meta["op"] == "conv2d" else KbitLinear
    module = cls(codes, int(meta["bits"]), **kw)
    module.folded_bn = meta.get("folded_bn")
    return module


def _matches_binary(m: nn.Module) -> bool:
    return isinstance(m, (BinaryConv2d, BinaryLinear)) or (_is_quantized(m)
                                                           and _weight_precision(m) == 1)


def _matches_kbit(m: nn.Module) -> bool:
    return isinstance(m, (KbitConv2d, KbitLinear)) or (_is_quantized(m)
                                                       and 2 <= _weight_precision(m) <= 8)


BINARY_CODEC = register_codec(LayerCodec("binary", _matches_binary, _encode_binary,
                                         _decode_binary))
KBIT_CODEC = register_codec(LayerCodec("kbit", _matches_kbit, _encode_kbit, _decode_kbit))
FOLDED_BN_CODEC = register_codec(LayerCodec(
    "folded_bn", lambda m: isinstance(m, FoldedBatchNorm),
    lambda m: ({}, {"num_features": m.num_features}),
    lambda t, meta: FoldedBatchNorm(int(meta.get("num_features", 0)))))
# Activations that quantize_model turned into identities (the next layer's sign replaces them)
# must load as identities too, not as the architecture's PReLU.
IDENTITY_CODEC = register_codec(LayerCodec(
    "identity", lambda m: type(m) is nn.Identity, lambda m: ({}, {}),
    lambda t, meta: nn.Identity()))


# ------------------------------------------------------------------ save
def architecture_of(model: nn.Module, backbone: str | None,
                    kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``architecture`` entry: registry name + kwargs that rebuild the float skeleton."""
    name = backbone or getattr(model, "backbone_name", None)
    if not name:
        raise SlimfaceError("cannot save a .slim file without the backbone's registry name "
                            "(pass backbone=..., e.g. 'face_resnet_c')")
    return {"backbone": name, "kwargs": dict(kwargs or {})}


def save_deploy(model: nn.Module, path: str | os.PathLike[str], backbone: str | None = None,
                backbone_kwargs: Mapping[str, Any] | None = None, fold_bn: bool = True,
                extra_meta: Mapping[str, Any] | None = None,
                half_float_weights: bool = False) -> dict[str, Any]:
    """Write a QAT (or already converted) model as a ``.slim`` deploy file; returns metadata.

    The model is converted in place with :func:`to_inference` (BNs folded) before export.
    ``half_float_weights`` stores the weights of the convolutions and FC layers left in float
    as float16: half their bytes, which is what lets a binary network keep its sensitive
    layers float within a small budget. Loading casts them back to float32 (the network
    still computes in float32), so the only change is float16's rounding of each weight.
    """
    from slimface.runtime.slimfile import save_slim

    arch = architecture_of(model, backbone, backbone_kwargs)
    quant = dict(getattr(model, "quantization", {}) or {})
    to_inference(model, fold_bn=fold_bn)
    tensors, layers = export_state(model)
    if half_float_weights:
        tensors.update(float16_layer_weights(model, tensors))
    meta: dict[str, Any] = {"architecture": arch, "layers": layers, "quantization": quant}
    for key in ("template", "embedding_dim", "input_size", "threshold"):
        if getattr(model, key, None) is not None:
            value = getattr(model, key)
            meta[key] = list(value) if isinstance(value, tuple) else value
    meta.update(extra_meta or {})
    save_slim(path, tensors, meta)
    return meta


def float16_layer_weights(model: nn.Module,
                          tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float (``float/...``) weights of ``model``'s Conv2d and Linear layers, as float16.

    Only those weights: biases and normalisation parameters are few, and the folded scales
    they carry are the numbers float16 would round worst."""
    half = {}
    for path, module in model.named_modules():
        key = f"float/{path}.weight"
        if isinstance(module, (nn.Conv2d, nn.Linear)) and key in tensors:
            half[key] = tensors[key].astype(np.float16)
    return half


def load_deploy(path: str | os.PathLike[str]) -> nn.Module:
    """Load a ``.slim`` file for inference (no training graph, no pickle)."""
    from slimface.runtime.deploy import build_from_slim
    from slimface.runtime.slimfile import load_slim

    tensors, meta = load_slim(path)
    try:
        return build_from_slim(str(path), tensors, meta)
    except SlimfaceError:
        raise
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild the model ({exc})") from None

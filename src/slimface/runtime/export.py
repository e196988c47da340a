"""Export a float backbone to ONNX, check it against PyTorch, and quantize it to int8.

* :func:`export_onnx` - TorchScript-based ``torch.onnx.export`` (opset 17, dynamic batch);
  the file carries ``template``, ``input_size``, ``embedding_dim``, ``detector`` and the
  calibrated ``threshold`` in ``metadata_props`` (JSON values), so
  ``runtime.loader.OnnxModel`` needs nothing else to run it.
* :func:`parity` - cosine between PyTorch and ONNX Runtime embeddings of real aligned crops;
  the CLI refuses to write a float export below :data:`PARITY_MIN_COSINE`.
* :func:`quantize_int8` - post-training *static* quantization with
  ``onnxruntime.quantization``: per-channel int8 weights, activations calibrated on aligned
  crops the caller passes in (CelebA, never LFW pair images), QDQ or QOperator format.
* :func:`latency_ms` - ONNX Runtime latency at a batch size, median and p95 per batch.

This module never imports ``eval`` or ``gallery``: callers pass crops, thresholds and
metadata in (dependencies point one way).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from slimface.errors import ModelError, ModelFileError
from slimface.io.atomic import atomic_path
from slimface.models.embedding import l2_normalize
from slimface.runtime.ort_session import run_onnx, session  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
PARITY_MIN_COSINE = 0.9999
#: Bumped whenever quantize_int8 writes files differently (same outputs or not), so files
#: an earlier version left in a cache are made again: 2 = compacted graphs, 3 = 7-bit
#: weights by default.
INT8_WRITER = 3
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


def contract_metadata(model: nn.Module, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``metadata_props`` of an exported model: the backbone contract as JSON strings."""
    meta: dict[str, Any] = {"producer": "slimface"}
    for key in ("template", "input_size", "embedding_dim", "detector", "fallback_detector",
                "threshold"):
        value = getattr(model, key, None)
        if value is not None:
            meta[key] = list(value) if isinstance(value, tuple) else value
    meta.update(dict(extra or {}))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def _input_hw(model: nn.Module) -> tuple[int, int]:
    size = getattr(model, "input_size", None)
    if size is None:
        raise ModelError(f"{type(model).__name__} has no input_size attribute; cannot export")
    return int(size[0]), int(size[1])


def export_onnx(model: nn.Module, out: str | os.PathLike[str], *,
                metadata: Mapping[str, Any] | None = None,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as ONNX (dynamic batch) with contract metadata; atomic."""
    import onnx

    model = model.eval()
    h, w = _input_hw(model)
    dummy = torch.full((2, 3, h, w), 127.0)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of torch.export, which needs
            # onnxscript (not a dependency); it still produces standard opset-17 graphs
            warnings.simplefilter("ignore", DeprecationWarning)
            # shapes read as Python ints on purpose (fixed-size crops: constant pads in the
            # graph, see models/dlib_resnet.pad_to); batch stays dynamic
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # F.pad's exporter builds the pad vector with a reversing Slice it cannot fold;
            # ONNX Runtime folds it at load (the pads are constants), so the notice is noise
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(model, (dummy,), str(raw), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        proto = onnx.load(str(raw))
    set_metadata(proto, contract_metadata(model, metadata))
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return Path(out)


def set_metadata(proto: Any, meta: Mapping[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, value


def written_by_this_version(path: str | os.PathLike[str]) -> bool:
    """Whether an int8 file was written by this version of :func:`quantize_int8`."""
    try:
        recipe = json.loads(read_metadata(path).get("quantization", "{}"))
    except (ModelFileError, ValueError):
        return False
    return isinstance(recipe, dict) and recipe.get("writer") == INT8_WRITER


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from None
    return {p.key: p.value for p in proto.metadata_props}


@torch.inference_mode()
def torch_embeddings(model: nn.Module, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(crops), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(crops[start:start + batch_size]))
        out.append(model(x.permute(0, 3, 1, 2).float()).float().numpy())
    return np.concatenate(out)


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Per-crop cosine between two embedding sets: min, mean, and count."""
    cos = np.sum(l2_normalize(reference) * l2_normalize(candidate), axis=1)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "n_crops": int(len(cos))}


@dataclass(frozen=True)
class Int8Options:
    """Post-training static quantization settings (ORT names in brackets).

    Attributes:
        quant_format: "qdq" (QuantizeLinear/DequantizeLinear pairs that ORT fuses into
            integer kernels) or "qoperator" (QLinearConv etc. directly).
        per_channel: one weight scale per output channel (per_channel).
        reduce_range: 7-bit weights (the default). Without VNNI (every AVX2-only x86 CPU)
            ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose
            16-bit sums of two products saturate for 8-bit weights: on an AVX2-only AMD EPYC
            (Zen 3) the default model's 8-bit file read LFW 94.5 (all-pairs TAR at FAR 1e-4
            27.6) against 98.4 (83.3) in float, its 7-bit file 98.3 (83.2), in `slimface
            report`. A file is made once and run on any CPU, so it is 7-bit unless asked.
        activation_type: "uint8" or "int8" activations.
        calibrate_method: "minmax", "entropy" or "percentile".
        float_depthwise: keep depthwise (grouped) convolutions in float (nodes_to_exclude).
            They hold few weights but lose the most from 8 bits: on the imported
            MobileFaceNet this with percentile calibration took int8's LFW loss from -0.47 to
            -0.15 points for 6% more bytes.
        half_float_weights: store the weights of the convolutions left in float as float16
            (cast back to float32 when ONNX Runtime loads the file): half their bytes.
        int4_head: store the embedding head's fully connected weights (layers after the
            global pooling, which run once per face) in 4 bits; those layers run as float
            matrix products of weights dequantized on each call. Needs the qdq format.

    Every int8 file is also compacted (:func:`slimface.runtime.onnx_compact.compact_qdq`):
    zero zero-points, stored bias scales and long names go, the outputs stay bit-identical.
    """

    quant_format: str = "qdq"
    per_channel: bool = True
    reduce_range: bool = True
    activation_type: str = "uint8"
    calibrate_method: str = "minmax"
    float_depthwise: bool = False
    half_float_weights: bool = False
    int4_head: bool = False

    def label(self) -> str:
        extras = [name for name, on in (("float-depthwise", self.float_depthwise),
                                        ("float16-float-weights", self.half_float_weights),
                                        ("int4-head", self.int4_head)) if on]
        weights = "reduce_range" if self.reduce_range else "full_range"
        return (f"{self.quant_format},{'per-channel' if self.per_channel else 'per-tensor'},"
                f"act={self.activation_type},{weights},"
                f"{self.calibrate_method}" + "".join("," + e for e in extras))


def weight_bits(meta: Mapping[str, str]) -> int | None:
    """The bits of an int8 file's weights (7 or 8), None for a file slimface did not
    quantize. Files written before the quantization record carried ``weight_bits`` say it
    only in their options label, which names ``reduce_range`` when that was on."""
    try:
        recipe = json.loads(meta.get("quantization", ""))
    except ValueError:
        return None
    if not isinstance(recipe, dict) or "options" not in recipe:
        return None
    return int(recipe.get("weight_bits", 7 if "reduce_range" in recipe["options"] else 8))


def saturation_note(meta: Mapping[str, str],
                    cpu: Mapping[str, Any] | None = None) -> str | None:
    """Why an int8 file's embeddings will be wrong on this CPU, or None when they will not.

    8-bit weights compute exactly only where the CPU has VNNI; without it ONNX Runtime's
    u8*s8 products saturate (see :class:`Int8Options`). ``meta`` is the file's metadata;
    ``cpu`` is :func:`slimface._provenance.describe_cpu`, read only for an 8-bit file.
    """
    if weight_bits(meta) != 8:
        return None
    if cpu is None:
        from slimface._provenance import describe_cpu

        cpu = describe_cpu()
    if cpu.get("avx512_vnni") or cpu.get("avx_vnni"):
        return None
    return ("its int8 weights use the full 8 bits, which ONNX Runtime computes exactly only "
            f"on CPUs with VNNI; this CPU ({cpu.get('cpu', 'unknown')}) has none, so its "
            "embeddings drift far from the float model's. Export it again with this slimface "
            "(7-bit weights by default): slimface export --model M --out F.onnx --int8")


def _depthwise_nodes(path: Path) -> list[str]:
    """Names of the grouped convolutions of an ONNX file (depthwise when group == channels)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


class _CropReader:
    """ORT CalibrationDataReader over uint8 NHWC crops, in batches."""

    def __init__(self, crops: np.ndarray, input_name: str, batch_size: int = 16):
        self._batches: Iterator[np.ndarray] = (
            np.ascontiguousarray(crops[i:i + batch_size].transpose(0, 3, 1, 2), np.float32)
            for i in range(0, len(crops), batch_size))
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:  # not needed for a single calibration pass
        raise NotImplementedError


def quantize_int8(fp32_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  calib_crops: np.ndarray, options: Int8Options = Int8Options()) -> Path:
    """Static int8 PTQ of an exported float model; metadata is carried over. Atomic."""
    import onnx
    from onnxruntime import quantization as q

    if len(calib_crops) == 0:
        raise ModelError("int8 calibration needs at least one aligned crop")
    formats = {"qdq": q.QuantFormat.QDQ, "qoperator": q.QuantFormat.QOperator}
    types = {"uint8": q.QuantType.QUInt8, "int8": q.QuantType.QInt8}
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    for value, table, what in ((options.quant_format, formats, "quant_format"),
                               (options.activation_type, types, "activation_type"),
                               (options.calibrate_method, methods, "calibrate_method")):
        if value not in table:
            raise ModelError(f"int8 {what} {value!r} unknown (choose from {sorted(table)})")
    if options.int4_head and options.quant_format != "qdq":
        raise ModelError("int4_head (--int4-head) needs the qdq format (--quant-format qdq): "
                         "4-bit weights are dequantized by DequantizeLinear nodes")
    meta = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        prepped = Path(tmp) / "prep.onnx"
        q.quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        qpath = Path(tmp) / "int8.onnx"
        q.quantize_static(str(prepped), str(qpath), _CropReader(calib_crops, INPUT_NAME),
                          quant_format=formats[options.quant_format],
                          per_channel=options.per_channel, reduce_range=options.reduce_range,
                          activation_type=types[options.activation_type],
                          weight_type=q.QuantType.QInt8,
                          calibrate_method=methods[options.calibrate_method],
                          nodes_to_exclude=(_depthwise_nodes(prepped)
                                            if options.float_depthwise else []))
        proto = _smaller(onnx.load(str(qpath)), onnx.load(str(prepped)), options, fp32_path)
    set_metadata(proto, {**meta, "quantization": json.dumps(
        {"scheme": "int8 static PTQ (onnxruntime)", "options": options.label(),
         "weight_bits": 7 if options.reduce_range else 8,
         "n_calibration_crops": int(len(calib_crops)), "writer": INT8_WRITER})})
    with atomic_path(out) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return Path(out)


def _smaller(proto: Any, prepped: Any, options: Int8Options,
             source: str | os.PathLike[str]) -> Any:
    """The quantizer's graph with the options' storage savings, then compacted."""
    from slimface.runtime import onnx_compact as oc

    if options.int4_head:
        try:
            oc.int4_weights(proto, oc.head_weight_names(prepped, proto))
        except Exception as exc:  # the version converter raises its own error types
            raise ModelError(f"{source}: cannot store the head in 4 bits ({exc})") from exc
    if options.half_float_weights:
        oc.float16_weights(proto)
    return oc.compact_qdq(proto)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer warns on the root logger about every int64 shape tensor it leaves in
    float (harmless); keep those hundreds of lines off the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def latency_ms(sess: Any, input_hw: tuple[int, int], batch: int, repeats: int = 30,
               warmup: int = 3, seed: int = 0) -> dict[str, float]:
    """Median and p95 wall time of one ``sess.run`` at ``batch``, plus ms per face."""
    return interleaved_latency_ms({"session": sess}, input_hw, batch, repeats, warmup,
                                  seed)["session"]


def interleaved_latency_ms(sessions: Mapping[str, Any], input_hw: tuple[int, int], batch: int,
                           repeats: int = 30, warmup: int = 3, seed: int = 0,
                           rounds: int = 5) -> dict[str, dict[str, float]]:
    """Like :func:`latency_ms` for several sessions, timed in alternating blocks
    (:func:`slimface.runtime.timing.time_in_blocks`) so a change of machine load hits every
    model alike and their ratio stays fair."""
    from slimface.runtime.timing import time_in_blocks

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch, 3, *input_hw)).astype(np.float32)
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    fns = {k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()}
    out = {}
    for key, ts in time_in_blocks(fns, repeats, rounds, warmup).items():
        med = float(np.median(ts))
        out[key] = {"batch": batch, "median_ms": med, "p95_ms": float(np.percentile(ts, 95)),
                    "ms_per_face": med / batch, "repeats": len(ts)}
    return out


def summarise_parity(name: str, stats: Mapping[str, float]) -> str:
    return (f"{name}: cosine vs PyTorch min {stats['min_cosine']:.6f} mean "
            f"{stats['mean_cosine']:.6f} over {stats['n_crops']} crops")


def check_parity(stats: Mapping[str, float], path: str | os.PathLike[str],
                 minimum: float = PARITY_MIN_COSINE) -> None:
    if stats["min_cosine"] < minimum:
        raise ModelError(f"{path}: ONNX export disagrees with PyTorch (min cosine "
                         f"{stats['min_cosine']:.6f} < {minimum}); not written")


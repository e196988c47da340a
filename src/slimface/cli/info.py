"""``slimface info --model FILE``: what a ``.slim`` file holds, layer by layer, and what it saves.

For every compressed layer: its kind (binary, kbit, pq...), bits per weight, bytes stored and
the bytes the same parameters take in fp32 (``fp32_bytes`` recorded by the codec). Float
tensors are grouped by module. Two ratios against fp32: the quantized part (compressed layers
only) and the whole file.

``--paths`` also runs the model once on a random batch (``--batch``) and lists, for every
1-bit layer, the path it took on this machine (the binary kernel or torch's float conv of
its unpacked weights) and why: the two times measured for its input shape, or the setting
that forced it (``SLIMFACE_KERNEL``), with the CPU and instruction set in use; and for every
product-quantized FC layer, whether table lookups or the plain float product measured
faster when the file was loaded.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from slimface.cli._common import (add_json_arg, add_model_arg, emit_result, format_table,
                                   positive_int, print_result)

_NO_WEIGHTS = ("folded_bn", "identity")
#: Model files ``info`` does not read, by suffix: what they are.
_OTHER_FORMATS = {".onnx": "an ONNX model", ".tflite": "a TFLite model",
                  ".pt": "a PyTorch checkpoint", ".pth": "a PyTorch checkpoint"}


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="layers, bits, bytes and compression of a .slim file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, required=True, positional_alias=True, help="a .slim model file")
    p.add_argument("--all", action="store_true", help="list float modules one by one too")
    p.add_argument("--paths", action="store_true",
                   help="run the model once and show which path each binary layer took, and why")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="batch size of the --paths run (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of the --paths run (torch and the kernels; default: as loaded)")
    add_json_arg(p)
    p.set_defaults(func=run)


def _tensor_bytes(path: str | os.PathLike[str]) -> dict[str, tuple[str, int, int]]:
    """name -> (dtype, element count, bytes), read from the safetensors header only."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="numpy") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            count = int(np.prod(sl.get_shape())) if sl.get_shape() else 1
            dtype = np.dtype(_NP_DTYPES.get(sl.get_dtype(), "uint8"))
            out[key] = (str(dtype), count, count * dtype.itemsize)
    return out


_NP_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "uint16", "F64": "float64",
              "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
              "U32": "uint32", "I64": "int64", "U64": "uint64", "BOOL": "bool"}


def _ratio(num: float, den: float) -> float | None:
    return float(num) / den if den else None


def _derived_fp32_bytes(lm: dict[str, Any], layer: str, sizes: dict[str, Any]) -> int | None:
    """fp32 size of a PQ layer from its shape, for files written before codecs recorded it."""
    if lm.get("kind") != "pq":
        return None
    from slimface.runtime.pq import pq_fp32_bytes

    return pq_fp32_bytes(int(lm["m"]), int(lm["d"]), int(lm["rows"]), int(lm["positions"]),
                         f"{layer}/bias" in sizes)


def describe_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Per-layer sizes and compression ratios of a ``.slim`` file (the ``--json`` object)."""
    from slimface.runtime.slimfile import read_slim_metadata

    meta = read_slim_metadata(path)
    sizes = _tensor_bytes(path)
    rows: list[dict[str, Any]] = []
    q_bytes = q_fp32 = 0
    for layer, lm in meta.get("layers", {}).items():
        kind = lm.get("kind", "?")
        if kind in _NO_WEIGHTS:
            continue
        stored = sum(b for k, (_, _, b) in sizes.items() if k.startswith(f"{layer}/"))
        fp32 = lm.get("fp32_bytes") or _derived_fp32_bytes(lm, layer, sizes)
        rows.append({"layer": layer, "kind": kind, "bits": lm.get("bits"), "bytes": stored,
                     "fp32_bytes": fp32, "ratio": _ratio(fp32, stored) if fp32 else None})
        q_bytes += stored
        q_fp32 += int(fp32 or 0)
    float_rows = _float_modules(sizes)
    f_bytes = sum(r["bytes"] for r in float_rows)
    f_fp32 = sum(r["fp32_bytes"] for r in float_rows)
    file_bytes = Path(path).stat().st_size
    return {"file": str(path), "file_bytes": file_bytes,
            "architecture": meta.get("architecture"), "quantization": meta.get("quantization"),
            "template": meta.get("template"), "embedding_dim": meta.get("embedding_dim"),
            "kinds": _by_kind(rows, f_bytes, f_fp32),
            "quantized_bytes": q_bytes, "quantized_fp32_bytes": q_fp32,
            "quantized_ratio": _ratio(q_fp32, q_bytes),
            "float_bytes": f_bytes, "fp32_equivalent_bytes": q_fp32 + f_fp32,
            "overall_ratio": _ratio(q_fp32 + f_fp32, file_bytes),
            "rows": rows, "float_modules": float_rows}


def _float_modules(sizes: dict[str, tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Float tensors grouped by module path; fp32 size counts float tensors at 4 bytes."""
    groups: dict[str, dict[str, Any]] = {}
    for key, (dtype, count, nbytes) in sizes.items():
        if not key.startswith("float/"):
            continue
        module = key[len("float/"):].rpartition(".")[0]
        g = groups.setdefault(module, {"layer": module, "kind": "float", "bits": 32,
                                       "bytes": 0, "fp32_bytes": 0})
        g["bytes"] += nbytes
        g["fp32_bytes"] += 4 * count if dtype.startswith("float") else nbytes
        if key.endswith(".weight") and dtype == "float16":
            g["bits"] = 16
    for g in groups.values():
        g["ratio"] = _ratio(g["fp32_bytes"], g["bytes"])
    return list(groups.values())


def _by_kind(rows: list[dict[str, Any]], f_bytes: int, f_fp32: int) -> list[dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for r in rows:
        k = kinds.setdefault(r["kind"], {"kind": r["kind"], "layers": 0, "bytes": 0,
                                         "fp32_bytes": 0})
        k["layers"] += 1
        k["bytes"] += r["bytes"]
        k["fp32_bytes"] += int(r["fp32_bytes"] or 0)
    out = list(kinds.values())
    out.append({"kind": "float", "layers": None, "bytes": f_bytes, "fp32_bytes": f_fp32})
    for k in out:
        k["ratio"] = _ratio(k["fp32_bytes"], k["bytes"])
    return out


def layer_paths(path: str | os.PathLike[str], batch: int = 1,
                threads: int | None = None) -> list[dict[str, Any]]:
    """Load the file, embed one random batch, and report each 1-bit layer's path and why."""
    import torch

    from slimface.runtime.binary import BinaryConv2d, BinaryLinear, load_deploy

    model = load_deploy(path).eval()
    layers = {m: name for name, m in model.named_modules()
              if isinstance(m, (BinaryConv2d, BinaryLinear))}
    if threads is not None:
        torch.set_num_threads(threads)
        for m in layers:
            m.threads = threads
    shapes: dict[str, Any] = {}

    def hook(mod: Any, inp: tuple[Any, ...], out: Any) -> None:
        shapes[layers[mod]] = list(inp[0].shape) if isinstance(inp[0], torch.Tensor) \
            else "sign words"

    handles = [m.register_forward_hook(hook) for m in layers]
    h, w = tuple(getattr(model, "input_size", (112, 112)))
    with torch.inference_mode():
        model(torch.rand(batch, 3, h, w) * 255)
    for handle in handles:
        handle.remove()
    rows = []
    for mod, name in layers.items():
        c = mod.path_choice
        rows.append({"layer": name, "input": shapes.get(name), "path": c.path if c else None,
                     "reason": c.reason if c else "not called", "kernel_ms": c and c.kernel_ms,
                     "torch_ms": c and c.torch_ms})
    for name, choice in getattr(model, "pq_fc_paths", {}).items():  # measured at load
        rows.append({"layer": name, "input": choice["input"], "path": choice["path"],
                     "reason": choice["reason"]})
    return rows


def _refuse_other_formats(path: str) -> None:
    """Say what ``info`` reads when given another model file; read as a ``.slim`` it would
    fail as a corrupt file (the first 8 bytes of a protobuf taken as a header length)."""
    from slimface.errors import ModelFileError

    suffix = Path(path).suffix.lower()
    if suffix not in _OTHER_FORMATS or not Path(path).is_file():
        return
    hint = (f"; import it first (slimface import --model {path} --out M.slim), then run "
            f"slimface info --model M.slim" if suffix in (".onnx", ".tflite") else "")
    raise ModelFileError(f"{path}: {_OTHER_FORMATS[suffix]}; slimface info describes .slim "
                         f"files only (slimface's own model format){hint}")


def run(args: argparse.Namespace) -> int:
    _refuse_other_formats(args.model)
    info = describe_file(args.model)
    cols = ("layer", "kind", "bits", "bytes", "fp32_bytes", "ratio")
    rows = info["rows"] + (info["float_modules"] if args.all else [])
    arch = info.get("architecture") or {}
    qr, orr = info["quantized_ratio"], info["overall_ratio"]
    print_result(args.json,
                 format_table(rows, cols, title=f"{args.model}: {arch.get('backbone', '?')}, "
                                                f"{info['file_bytes']:,} bytes"),
                 format_table(info["kinds"], ("kind", "layers", "bytes", "fp32_bytes", "ratio"),
                              title="\nby kind"),
                 f"\nquantized part: {info['quantized_bytes']:,} bytes vs "
                 f"{info['quantized_fp32_bytes']:,} fp32 ({qr:.2f}x)" if qr
                 else "\nno compressed layers",
                 f"whole file: {info['file_bytes']:,} bytes vs {info['fp32_equivalent_bytes']:,} "
                 f"fp32 ({orr:.2f}x)" if orr else None)
    paths = None
    if args.paths:
        from slimface.runtime.timing import cpu_info

        info["cpu_info"] = cpu_info()
        info["paths"] = layer_paths(args.model, args.batch, args.threads)
        paths = format_table(info["paths"], ("layer", "input", "path", "reason"),
                             title=f"\npaths at batch {args.batch}, {info['cpu_info']['label']}")
    emit_result(args.json, info, paths)
    return 0

"""``slimface export --model M --format onnx --out F.onnx [--int8 --calib DIR]``.

The float export is checked against PyTorch on real aligned crops (cosine >= 0.9999, else
nothing is written). ``--int8`` adds a statically quantized copy (per-channel int8 weights,
activations calibrated on aligned crops of ``--calib``, CelebA by default - never LFW).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from slimface.cli._common import add_json_arg, add_model_arg, emit_result
from slimface.data.calibration import DEFAULT_CALIB_SUBDIR

#: CelebA (no LFW people) under the data root: int8 calibration and parity crops.
CELEBA_DIR = DEFAULT_CALIB_SUBDIR


def add_int8_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calib", default=None,
                   help=f"folder of face images for int8 calibration (default: "
                        f"<data>/{CELEBA_DIR}); never LFW pair images")
    p.add_argument("--calib-n", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--quant-format", choices=("qdq", "qoperator"), default="qdq",
                   help="ONNX int8 graph form: QuantizeLinear/DequantizeLinear pairs (qdq, "
                        "default) or integer operators (qoperator)")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--reduce-range", dest="reduce_range", action="store_true",
                         default=True,
                         help="7-bit weights, exact on every x86 CPU (the default)")
    weights.add_argument("--full-range", dest="reduce_range", action="store_false",
                         help="8-bit weights: exact only on CPUs with VNNI (AVX-512 VNNI, "
                              "AVX-VNNI); on AVX2-only CPUs ONNX Runtime saturates them and "
                              "accuracy collapses")
    p.add_argument("--activation-type", choices=("uint8", "int8"), default="uint8",
                   help="integer type of the quantized activations (default uint8)")
    p.add_argument("--calibrate-method", choices=("minmax", "entropy", "percentile"),
                   default="minmax",
                   help="how activation ranges are set from the calibration crops (default "
                        "minmax)")
    p.add_argument("--float-depthwise", action="store_true",
                   help="keep depthwise convolutions in float (MobileFaceNet-style networks "
                        "lose far less accuracy; a few percent more bytes)")
    p.add_argument("--float16-float-weights", action="store_true",
                   help="store the weights of convolutions left in float as float16 (half "
                        "their bytes; cast back to float32 at load)")
    p.add_argument("--int4-head", action="store_true",
                   help="store the embedding head's fully connected weights in 4 bits (qdq "
                        "format; measure the accuracy it costs)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root (default: $SLIMFACE_DATA, ../shared/data)")


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (optionally int8)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, help="registry name or model file (default: the default model)")
    p.add_argument("--format", choices=("onnx",), default="onnx",
                   help="file format (onnx, the only one so far)")
    p.add_argument("--out", required=True, help="output .onnx file (float)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--int8", action="store_true", help="also write an int8 model")
    p.add_argument("--int8-out", default=None, help="int8 file (default: OUT with .int8.onnx)")
    p.add_argument("--parity-n", type=int, default=64, help="real crops for the parity check")
    add_int8_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def int8_options(args: argparse.Namespace) -> Any:
    from slimface.runtime.export import Int8Options

    return Int8Options(quant_format=args.quant_format, per_channel=not args.per_tensor,
                       reduce_range=args.reduce_range, activation_type=args.activation_type,
                       calibrate_method=args.calibrate_method,
                       float_depthwise=args.float_depthwise,
                       half_float_weights=args.float16_float_weights,
                       int4_head=args.int4_head)


def folder_images(folder: Path, n: int, seed: int, skip: int = 0,
                  data: str | None = None) -> list[Path]:
    """``n`` images of ``folder`` (recursive), a seeded sample; ``skip`` drops the first
    ``skip`` of that sample so calibration and parity crops never overlap. Never LFW pair
    images (:func:`slimface.data.calibration.calibration_images`)."""
    from slimface.data.calibration import calibration_images

    return calibration_images(folder, n, seed=seed, skip=skip, data_root=data)


def aligned_crops(model: Any, paths: list[Path]) -> np.ndarray:
    """Crops aligned the way this model expects (its template, detector and fallback)."""
    from slimface.align.pipeline import align_paths

    batch = align_paths([str(p) for p in paths], model.template,
                        detector=getattr(model, "detector", None) or "retinaface",
                        fallback_detector=getattr(model, "fallback_detector", None),
                        multi_face="largest", no_face="centre", cache=True, progress=True)
    return batch.crops


def calibration_folder(args: argparse.Namespace) -> Path:
    from slimface.data.calibration import default_calibration_folder

    return Path(args.calib) if args.calib else default_calibration_folder(args.data)


def model_metadata(model: Any, name: str) -> dict[str, Any]:
    """Threshold (when calibrated) and source name for the exported file's metadata."""
    from slimface.gallery.embedder import DEFAULT_FLIP, model_fingerprint
    from slimface.gallery.thresholds import lookup_threshold

    meta: dict[str, Any] = {"source_model": name}
    found = lookup_threshold(model, name, DEFAULT_FLIP, fingerprint=model_fingerprint(model))
    if found is not None:
        meta["threshold"] = {**found.as_dict(), "flip": DEFAULT_FLIP}
    return meta


def run(args: argparse.Namespace) -> int:
    from slimface.gallery.embedder import load_model
    from slimface.runtime import export as ex

    model, name = load_model(args.model)
    out = Path(args.out)
    folder = calibration_folder(args)
    parity_crops = aligned_crops(model, folder_images(folder, args.parity_n, seed=1,
                                                      data=args.data))
    tmp = out.with_name(f".{out.name}.unchecked.onnx")
    try:
        ex.export_onnx(model, tmp, metadata=model_metadata(model, name), opset=args.opset)
        reference = ex.torch_embeddings(model, parity_crops)
        fp32 = ex.parity(reference, ex.run_onnx(ex.session(tmp), parity_crops))
        ex.check_parity(fp32, out)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    report: dict[str, Any] = {"model": name, "onnx": str(out), "parity_fp32": fp32}
    lines = [ex.summarise_parity(f"{out} (fp32)", fp32)]
    if args.int8:
        int8_out = Path(args.int8_out or out.with_suffix(".int8.onnx"))
        calib = aligned_crops(model, folder_images(folder, args.calib_n, seed=1,
                                                   skip=args.parity_n, data=args.data))
        options = int8_options(args)
        ex.quantize_int8(out, int8_out, calib, options)
        int8 = ex.parity(reference, ex.run_onnx(ex.session(int8_out), parity_crops))
        lines.append(ex.summarise_parity(f"{int8_out} (int8, {options.label()})", int8))
        report.update(int8=str(int8_out), parity_int8=int8, int8_options=options.label(),
                      n_calibration_crops=len(calib), calibration_folder=str(folder))
    emit_result(args.json, report, *lines)
    return 0

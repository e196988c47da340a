"""``slimface bench int8 --model M``: fp32 ONNX vs int8 ONNX, speed and LFW accuracy, one run.

Exports the float model (parity-checked), quantizes it statically (calibrated on CelebA
crops aligned with the model's template), then measures ONNX Runtime latency at batch 1 and
32 and LFW view-2 accuracy (10-fold, ``slimface.eval.run.evaluate_lfw``) of both files.
``--sweep`` also times the other ORT int8 recipes (QOperator, per-tensor, the other weight range,
int8 activations, graph optimisation levels) so a disappointing speed-up can be explained.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from slimface.conventions import DEFAULT_FLIP, FLIP_MODES
from slimface._provenance import describe_cpu
from slimface.cli._common import (Several, add_json_arg, add_model_arg, emit_result,
                                   format_table, hidden_alias, positive_int)
from slimface.cli.export import (add_int8_args, aligned_crops, calibration_folder,
                                 folder_images, int8_options, model_metadata)


def register(sub: Any) -> None:
    p = sub.add_parser("int8", help="int8 vs fp32 ONNX: latency and LFW accuracy",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, help="registry name or model file (default: the default model)")
    p.add_argument("--threads", type=int, default=2,
                   help="ONNX Runtime and torch CPU threads (default 2)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per batch size")
    batch = p.add_argument("--batch", action=Several, type=positive_int, default=[1, 32],
                           help="batch sizes to time (default 1 32)")
    hidden_alias(p, batch, "--batches")
    p.add_argument("--flip", choices=FLIP_MODES, default=DEFAULT_FLIP,
                   help="LFW feature for both models: the mirror image's embedding summed "
                        "(default, as embed and verify), none, or concatenated")
    p.add_argument("--no-lfw", action="store_true", help="skip the accuracy part")
    p.add_argument("--sweep", action="store_true", help="also time other int8 recipes")
    p.add_argument("--workdir", default=None,
                   help="where the .onnx files go (default: $SLIMFACE_CACHE/export/<model>)")
    add_int8_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def _workdir(args: argparse.Namespace, name: str) -> Path:
    from slimface.io.paths import cache_root

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name)
    path = Path(args.workdir) if args.workdir else cache_root() / "export" / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sweep_options(base: Any) -> list[Any]:
    variants = [dataclasses.replace(base, quant_format="qoperator"),
                dataclasses.replace(base, per_channel=False),
                dataclasses.replace(base, reduce_range=not base.reduce_range),
                dataclasses.replace(base, activation_type="int8")]
    return [v for v in variants if v != base]


def _time_all(files: dict[str, tuple[Path, str]], args: argparse.Namespace,
              hw: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Latency of every (file, optimisation level), interleaved per batch size."""
    from slimface.runtime import export as ex

    # no spinning: idle pools of the other sessions must not steal the timed one's cores
    sessions = {label: ex.session(path, threads=args.threads, optimization=opt, spin=False)
                for label, (path, opt) in files.items()}
    out: dict[str, dict[str, Any]] = {label: {} for label in files}
    for b in args.batch:
        for label, stats in ex.interleaved_latency_ms(sessions, hw, b, args.repeats).items():
            out[label][f"b{b}"] = stats
    return out


def _lfw(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from slimface.eval.run import evaluate_lfw, json_summary
    from slimface.runtime.loader import OnnxModel

    model = OnnxModel(path, threads=args.threads)
    model.name = str(path)
    res = json_summary(evaluate_lfw(model, args.data, flip=args.flip))
    return {k: res.get(k) for k in ("accuracy_mean", "accuracy_std", "tar_at_far_1e-3",
                                    "no_face", "seconds_embed")}


def run(args: argparse.Namespace) -> int:
    import torch

    from slimface.gallery.embedder import load_model
    from slimface.runtime import export as ex

    torch.set_num_threads(args.threads)
    model, name = load_model(args.model)
    hw = tuple(int(v) for v in model.input_size)
    work = _workdir(args, name)
    folder = calibration_folder(args)
    parity_crops = aligned_crops(model, folder_images(folder, 64, seed=1, data=args.data))
    calib = aligned_crops(model, folder_images(folder, args.calib_n, seed=1, skip=64,
                                               data=args.data))
    fp32_path = ex.export_onnx(model, work / "fp32.onnx", metadata=model_metadata(model, name))
    reference = ex.torch_embeddings(model, parity_crops)
    base = int8_options(args)
    recipes = [base] + (_sweep_options(base) if args.sweep else [])
    rows, files = [], {"fp32": fp32_path}
    for i, opt in enumerate(recipes):
        files[opt.label()] = ex.quantize_int8(fp32_path, work / f"int8_{i}.onnx", calib, opt)
    results: dict[str, Any] = {}
    for label, path in files.items():
        par = ex.parity(reference, ex.run_onnx(ex.session(path), parity_crops))
        results[label] = {"file": str(path), "parity_vs_torch": par,
                          "size_bytes": path.stat().st_size}
    timed = {label: (path, "all") for label, path in files.items()}
    if args.sweep:
        for level in ("extended", "basic"):
            label = f"{base.label()} opt={level}"
            timed[label] = (files[base.label()], level)
            results[label] = {"file": str(files[base.label()])}
    print(f"timing {len(timed)} sessions, interleaved", file=sys.stderr)
    for label, lat in _time_all(timed, args, hw).items():
        results[label]["latency"] = lat
    if not args.no_lfw:
        for label in ("fp32", base.label()):
            results[label]["lfw"] = _lfw(files[label], args)
    fp = results["fp32"]["latency"]
    for label, r in results.items():
        row = {"model": label}
        for b in args.batch:
            ms = r["latency"][f"b{b}"]["ms_per_face"]
            r.setdefault("speedup_vs_fp32", {})[f"b{b}"] = fp[f"b{b}"]["ms_per_face"] / ms
            row[f"b{b} ms/face"] = ms
            row[f"b{b} x fp32"] = r["speedup_vs_fp32"][f"b{b}"]
        if "lfw" in r:
            row["LFW acc"] = r["lfw"]["accuracy_mean"]
        if "parity_vs_torch" in r:
            row["min cos"] = r["parity_vs_torch"]["min_cosine"]
        rows.append(row)
    import os

    table = format_table(rows, title=f"{name}: ONNX Runtime, {args.threads} threads, LFW view "
                                     f"2 flip={args.flip}; int8 calibrated on {len(calib)} "
                                     f"crops of {folder}")
    emit_result(args.json, {"model": name, "threads": args.threads, "flip": args.flip,
                            "cpu": describe_cpu(), "load_average": list(os.getloadavg()),
                            "n_calibration_crops": len(calib),
                            "calibration_folder": str(folder), "default_int8": base.label(),
                            "results": results}, table)
    return 0

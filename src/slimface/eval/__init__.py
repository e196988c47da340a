"""LFW verification: pairs parsing (``lfw``), the 10-fold protocol (``verification``), ROC
metrics (``metrics``), plots (``plots``) and the raw-image evaluation runner (``run``).

``evaluate_lfw`` is imported lazily so that importing the light modules (e.g. to exclude LFW
pair images from training) does not load torch.
"""
from __future__ import annotations

from typing import Any

from slimface.eval.lfw import (Pair, View1Split, find_images_root, find_lfw_root,
                               lfw_pair_images, lfw_people_not_in_pairs, load_view1, load_view2,
                               parse_pairs, unique_images)
from slimface.eval.metrics import (TarAtFar, roc_auc, roc_curve, tar_at_far, threshold_at_far,
                                   verification_metrics)
from slimface.eval.verification import (FoldResult, best_threshold, cosine_scores,
                                        k_fold_verification, split_verification)

_LAZY = {"evaluate_lfw": "slimface.eval.run", "json_summary": "slimface.eval.run",
         "plot_roc": "slimface.eval.plots"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slimface.eval' has no attribute {name!r}")


__all__ = ["FoldResult", "Pair", "TarAtFar", "View1Split", "best_threshold", "cosine_scores",
           "evaluate_lfw", "find_images_root", "find_lfw_root", "json_summary",
           "k_fold_verification", "lfw_pair_images", "lfw_people_not_in_pairs", "load_view1",
           "load_view2", "parse_pairs", "plot_roc", "roc_auc", "roc_curve", "split_verification",
           "tar_at_far", "threshold_at_far", "unique_images", "verification_metrics"]

"""ROC plots (PNG) for one or several models on one figure.

matplotlib runs on the Agg backend so plots work on headless machines and in CI; the figure
uses a log FAR axis because the interesting region for verification is FAR 1e-4..1e-2.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from slimface.eval.metrics import roc_auc, roc_curve
from slimface.io.atomic import atomic_path

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def curves_from_results(results: Sequence[Mapping]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``evaluate_lfw`` results -> ``{label: (scores, labels)}``; the label names model+flip."""
    curves = {}
    for r in results:
        label = str(r.get("model", f"model {len(curves) + 1}"))
        if r.get("flip", "none") != "none":
            label += f" (flip {r['flip']})"
        curves[label] = (np.asarray(r["scores"]), np.asarray(r["labels"]))
    return curves


def plot_roc(path: str | os.PathLike[str], curves: Curves, title: str = "LFW ROC",
             min_far: float | None = None) -> Path:
    """Write a ROC PNG with one line per ``label -> (scores, labels)``; returns the path.

    Args:
        path: PNG file to write (atomically; parent folders are created).
        curves: label -> (scores, same-person labels) of all pairs.
        title: figure title.
        min_far: left end of the log FAR axis; default: a bit below ``1 / n_negatives``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.5), dpi=120)
    smallest = 1.0
    for label, (scores, labels) in curves.items():
        far, tar, _ = roc_curve(scores, labels)
        n_neg = int(np.sum(~np.asarray(labels, dtype=bool)))
        smallest = min(smallest, 1.0 / max(n_neg, 1))
        ax.plot(np.maximum(far, 1e-12), tar, lw=1.5,
                label=f"{label}  AUC {roc_auc(scores, labels):.4f}")
    ax.set_xscale("log")
    ax.set_xlim(min_far or smallest / 2, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target

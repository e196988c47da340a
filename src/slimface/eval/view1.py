"""Periodic LFW **view 1** check during training (view 2 is only for final reports).

The threshold is chosen on ``pairsDevTrain`` and accuracy is measured on ``pairsDevTest``,
using the eval stage's verification code. Crops are aligned once (and cached by the alignment
stage) the first time the check runs.

Training never imports this module: ``slimface train`` and ``slimface compress distill`` hand
:class:`LfwView1Evaluator` to the loop as its ``view1_check`` (any callable
``(data_root, template, detector, batch_size) -> (backbone -> metrics)`` will do).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from slimface.data.lfw import find_lfw_root, load_view1, unique_images
from slimface.eval.verification import cosine_scores, split_verification


class LfwView1Evaluator:
    """Callable ``(backbone) -> {"lfw_view1_acc", "lfw_view1_threshold", ...}``: view-1 pair
    accuracy plus the all-pairs and 1:N read-outs over view 1's images
    (``lfw_view1_tar_at_far_1e-3``, ``..._1e-4``, ``lfw_view1_rank1``,
    ``lfw_view1_dir_at_far_1e-2``; None where the images cannot resolve the rate)."""

    def __init__(self, data_root: str | Path, template: str, detector: str = "retinaface",
                 batch_size: int = 128):
        self.data_root = Path(data_root)
        self.template = template
        self.detector = detector
        self.batch_size = batch_size
        self._crops: np.ndarray | None = None
        self._index: dict[Path, int] = {}
        self._pairs: Any = None

    def _prepare(self) -> None:
        from slimface.align.pipeline import align_paths

        split = load_view1(find_lfw_root(self.data_root))
        images = unique_images(split.pairs)
        batch = align_paths(images, self.template, detector=self.detector,
                            multi_face="central", no_face="centre", cache=True, progress=True)
        self._crops = batch.crops
        self._images = images
        self._index = {p: i for i, p in enumerate(images)}
        self._pairs = split

    def _scores(self, emb: np.ndarray, pairs: list) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([self._index[p.path_a] for p in pairs])
        b = np.array([self._index[p.path_b] for p in pairs])
        return cosine_scores(emb[a], emb[b]), np.array([p.same for p in pairs])

    @property
    def crops(self) -> np.ndarray:
        """View 1's aligned crops, one per image (aligned on first use)."""
        if self._crops is None:
            self._prepare()
        return self._crops

    def __call__(self, backbone: nn.Module) -> dict[str, float]:
        from slimface.models.inference import embed_crops

        was_training = backbone.training
        try:
            emb = embed_crops(backbone, self.crops, batch_size=self.batch_size, flip="none")
        finally:
            backbone.train(was_training)
        return self.metrics(emb)

    def metrics(self, emb: np.ndarray) -> dict[str, float]:
        """The read-outs of embeddings of :attr:`crops` (same order), however they were made
        (another flip policy, a map applied after the network)."""
        tr_s, tr_y = self._scores(emb, self._pairs.train)
        te_s, te_y = self._scores(emb, self._pairs.test)
        res = split_verification(tr_s, tr_y, te_s, te_y)
        out = {"lfw_view1_acc": res["test_accuracy"], "lfw_view1_threshold": res["threshold"]}
        return {**out, **self._readouts(emb)}

    def _readouts(self, emb: np.ndarray) -> dict[str, Any]:
        from slimface.eval.protocols import deployment_readouts

        r = deployment_readouts(emb, self._images)
        return {"lfw_view1_tar_at_far_1e-3": r["tar_at_far"]["1e-3"],
                "lfw_view1_tar_at_far_1e-4": r["tar_at_far"]["1e-4"],
                "lfw_view1_rank1": r["rank1"], "lfw_view1_dir_at_far_1e-2": r["dir_at_far"]["1e-2"]}

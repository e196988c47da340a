"""Teachers for function-matching distillation: run on every augmented batch, so speed counts.

``load_teacher("mobilefacenet-tflite")`` runs the imported MobileFaceNet in LiteRT (XNNPACK),
the fastest runtime measured here for its depthwise convolutions; any other registered
backbone runs in torch. Every teacher maps a uint8
NHWC RGB batch to L2-normalised float32 embeddings, and its ``template`` names the crop it
expects, so a training loop can check that teacher and student see the same view.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from slimface.errors import ModelError


class Teacher(Protocol):
    template: str
    embedding_dim: int
    name: str

    def embed(self, crops_nhwc: np.ndarray) -> np.ndarray: ...


class LiteRTTeacher:
    """A float TFLite face model in LiteRT, resized to whatever batch it is given."""

    def __init__(self, path: str | Path, pixel_mean: float, pixel_std: float, template: str,
                 name: str, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError("LiteRT is not installed (pip install ai-edge-litert); or pass "
                             "teacher_runtime='torch'") from None
        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.batch = int(self.inp["shape"][0])
        self.embedding_dim = int(self.out["shape"][-1])
        self.pixel_mean, self.pixel_std = pixel_mean, pixel_std
        self.template, self.name = template, name

    def _try_batch(self, batch: int) -> None:
        """Resize the input to ``batch`` once; files whose graph fixes the batch (a constant
        reshape, as in the expo MobileFaceNet) keep their own and are fed in chunks."""
        self.interp.allocate_tensors()
        if batch == self.batch:
            return
        h, w, c = (int(d) for d in self.inp["shape"][1:])
        try:
            self.interp.resize_tensor_input(self.inp["index"], [batch, h, w, c])
            self.interp.allocate_tensors()
            self.batch = batch
        except (RuntimeError, ValueError):
            self.interp.resize_tensor_input(self.inp["index"], [self.batch, h, w, c])
            self.interp.allocate_tensors()

    def embed(self, crops_nhwc: np.ndarray) -> np.ndarray:
        x = (crops_nhwc.astype(np.float32) - self.pixel_mean) / self.pixel_std
        if not getattr(self, "_prepared", False):
            self._try_batch(len(x))
            self._prepared = True
        rows = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            fed = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - len(chunk), 0)])
            self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(fed))
            self.interp.invoke()
            rows.append(self.interp.get_tensor(self.out["index"])[:len(chunk)].astype(np.float32))
        e = np.concatenate(rows)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


class ModelTeacher:
    """Any registered slimface backbone (with its pretrained weights) through ``embed_crops``."""

    def __init__(self, spec: str, threads: int = 1):
        """``threads`` is accepted for a uniform factory; torch's thread count is the
        training process's own (``TrainConfig.threads``)."""
        from slimface.models import create_backbone

        self.model = create_backbone(spec, pretrained=True).eval()
        self.template = str(getattr(self.model, "template", "arcface112"))
        self.embedding_dim = int(self.model.embedding_dim)
        self.name = spec

    @torch.inference_mode()
    def embed(self, crops_nhwc: np.ndarray) -> np.ndarray:
        from slimface.models.inference import embed_crops

        return embed_crops(self.model, crops_nhwc, batch_size=len(crops_nhwc), flip="none")


def load_teacher(spec: str, runtime: str = "auto", threads: int = 1) -> Teacher:
    """The teacher ``spec`` in its fastest runtime here (``runtime="torch"`` forces ours)."""
    from slimface.models.pretrained import PRETRAINED, require_pretrained

    entry = PRETRAINED.get(spec.replace("_", "-"))
    if entry is not None and runtime in ("auto", "litert"):
        try:
            return LiteRTTeacher(require_pretrained(entry), entry.pixel_mean, entry.pixel_std,
                                 entry.template, entry.name, threads)
        except ModelError:
            if runtime == "litert":
                raise
    return ModelTeacher(spec, threads)

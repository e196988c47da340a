"""Teachers for function-matching distillation: run on every augmented batch, so speed counts.

``load_teacher("mobilefacenet-tflite")`` runs the imported MobileFaceNet in LiteRT (XNNPACK),
the fastest runtime measured here for its depthwise convolutions; any other registered
backbone runs in torch. Every teacher maps a uint8
NHWC RGB batch to L2-normalised float32 embeddings, and its ``template`` names the crop it
expects, so a training loop can check that teacher and student see the same view.

A spec naming several teachers joined by ``+`` (``"dlib-resnet+mobilefacenet-tflite"``) loads
an :class:`EnsembleTeacher`: each member embeds the face on its own template, and the
teacher's embedding is the members' L2-normalised embeddings concatenated with equal weight
and scaled by ``1/sqrt(n)``, so it is unit-norm again.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from slimface.errors import ConfigError, ModelError, UnknownNameError


class Teacher(Protocol):
    """Crops on ``template`` -> L2-normalised embeddings (an :class:`EnsembleTeacher` takes
    one crop batch per member instead, and has ``members``)."""

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
        self._path, self._threads = str(path), threads
        self._open(Interpreter)
        self.embedding_dim = int(self.out["shape"][-1])
        self.pixel_mean, self.pixel_std = pixel_mean, pixel_std
        self.template, self.name = template, name

    def __getstate__(self) -> dict:
        """Picklable for a data worker (spawned): the interpreter is made again there, with
        the batch size this copy was resized to, so both copies run the same graph."""
        return {k: v for k, v in self.__dict__.items() if k not in ("interp", "inp", "out")}

    def __setstate__(self, state: dict) -> None:
        from ai_edge_litert.interpreter import Interpreter

        batch, prepared = state.pop("batch"), state.pop("_prepared", False)
        self.__dict__.update(state)
        self._open(Interpreter)
        if prepared:
            self._try_batch(batch)
            self._prepared = True

    def _open(self, interpreter: Any) -> None:
        """The interpreter of the file at its own batch size, and its input and output."""
        self.interp = interpreter(model_path=self._path, num_threads=self._threads)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.batch = int(self.inp["shape"][0])

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

    def __init__(self, spec: str, threads: int = 1, device: str = "cpu"):
        """``threads`` is accepted for a uniform factory; torch's thread count is the
        training process's own (``TrainConfig.threads``). ``device`` is where the teacher
        runs (a GPU run keeps teacher and student on the GPU)."""
        from slimface.models import create_backbone

        self.device = torch.device(device)
        self.model = create_backbone(spec, pretrained=True).eval().to(self.device)
        self.template = str(getattr(self.model, "template", "arcface112"))
        self.embedding_dim = int(self.model.embedding_dim)
        self.name = spec

    def __getstate__(self) -> dict:
        """Picklable for a data worker by name: the worker loads the same pretrained weights
        (sending the tensors would go through shared memory, small in containers)."""
        return {"spec": self.name, "device": str(self.device)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["spec"], device=state["device"])

    @torch.inference_mode()
    def embed(self, crops_nhwc: np.ndarray) -> np.ndarray:
        from slimface.models.inference import embed_crops

        return embed_crops(self.model, crops_nhwc, batch_size=len(crops_nhwc), flip="none",
                           device=self.device)


class EnsembleTeacher:
    """Several teachers as one: the equal-weight concatenation of their embeddings.

    ``embed`` takes one crop batch per member, in member order, each on that member's
    template (``templates``), and returns ``concat(e_1, ..., e_n) / sqrt(n)`` of the
    L2-normalised member embeddings ``e_k``: unit-norm, ``embedding_dim`` the members' sum.
    Cosine similarity of two ensemble embeddings is the mean of the members' cosines.

    Attributes:
        members: the member teachers.
        templates: each member's template, in member order.
        template: the distinct templates joined by ``+`` (a description, not a template
            name: a training loop reads ``templates``).
    """

    def __init__(self, members: Sequence[Teacher]):
        members = tuple(members)
        if len(members) < 2:
            raise ConfigError(f"an ensemble teacher needs at least two members, got "
                              f"{[m.name for m in members]}")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"ensemble teacher {'+'.join(names)!r} names a member twice")
        self.members = members
        self.templates = tuple(m.template for m in members)
        self.template = "+".join(dict.fromkeys(self.templates))
        self.embedding_dim = sum(int(m.embedding_dim) for m in members)
        self.name = "+".join(names)

    def embed(self, crops_per_member: Sequence[np.ndarray]) -> np.ndarray:
        """``[(B, H_k, W_k, 3) uint8 per member]`` -> ``(B, embedding_dim)`` float32."""
        if len(crops_per_member) != len(self.members):
            raise ValueError(f"{self.name}: expected {len(self.members)} crop batches (one "
                             f"per member), got {len(crops_per_member)}")
        parts = []
        for member, crops in zip(self.members, crops_per_member):
            e = np.asarray(member.embed(crops), dtype=np.float32)
            parts.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
        return np.concatenate(parts, axis=1) / np.float32(math.sqrt(len(parts)))


def teacher_members(teacher: Teacher) -> tuple[Teacher, ...]:
    """The teachers whose crops ``teacher.embed`` takes: an ensemble's members, else itself."""
    return tuple(getattr(teacher, "members", None) or (teacher,))


def embed_views(teacher: Any, views: dict[str, np.ndarray]) -> np.ndarray:
    """The teacher's embeddings of one step's views (one batch per template): an ensemble's
    members each get their own template's."""
    if hasattr(teacher, "members"):
        return teacher.embed([views[m.template] for m in teacher_members(teacher)])
    return teacher.embed(views[teacher.template])


def _load_one(spec: str, runtime: str, threads: int, device: str = "cpu") -> Teacher:
    from slimface.models.pretrained import PRETRAINED, require_pretrained

    entry = PRETRAINED.get(spec.replace("_", "-"))
    on_cpu = torch.device(device).type == "cpu"
    if runtime == "litert" and not on_cpu:
        raise ConfigError(f"teacher_runtime='litert' runs on the CPU; device={device!r} "
                          "needs teacher_runtime='torch' or 'auto'")
    if entry is not None and on_cpu and runtime in ("auto", "litert"):
        try:
            return LiteRTTeacher(require_pretrained(entry), entry.pixel_mean, entry.pixel_std,
                                 entry.template, entry.name, threads)
        except ModelError:
            if runtime == "litert":
                raise
    return ModelTeacher(spec, threads, device)


def load_teacher(spec: str, runtime: str = "auto", threads: int = 1,
                 device: str = "cpu") -> Teacher:
    """The teacher ``spec`` in its fastest runtime here (``runtime="torch"`` forces ours; on
    a GPU ``device`` every member runs in torch there).

    ``spec`` is a registry name, or several joined by ``+`` for an :class:`EnsembleTeacher`
    (each member in its own fastest runtime); an unknown member is a :class:`ConfigError`
    that names it.
    """
    names = [part.strip() for part in spec.split("+")]
    if len(names) == 1:
        return _load_one(names[0], runtime, threads, device)
    if not all(names):
        raise ConfigError(f"teacher {spec!r}: empty member name (write e.g. "
                          "'dlib-resnet+mobilefacenet-tflite')")
    members = []
    for name in names:
        try:
            members.append(_load_one(name, runtime, threads, device))
        except UnknownNameError as exc:
            raise ConfigError(f"teacher {spec!r}: unknown member {name!r} ({exc})") from None
    return EnsembleTeacher(members)

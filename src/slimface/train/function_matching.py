"""The distill objective: function matching, a live teacher embeds the very batch the student
sees.

Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and consistent")
measured that distillation from little data works when teacher and student see exactly the
same augmented view, inputs are mixed aggressively, and the schedule is long; cached teacher
outputs of un-augmented crops overfit. Each step here:

1. takes this step's aligned face canvases and augments them from ``(seed, step)`` alone
   (:mod:`slimface.train.augment`: jitter, photo effects, mixup), so a resumed run replays
   the same stream;
2. runs the teacher (:mod:`slimface.train.teacher`) on those pixels; a teacher on another
   alignment template (the dlib ResNet's ``dlib150`` for an ``arcface112`` student) gets its
   own canvas, warped from the same landmarks, and the same draw rendered in its frame
   (:func:`slimface.train.augment.augment_views`): the same face region, mirror, photo
   effects, colour and mixup partners. An ensemble teacher
   (:class:`slimface.train.teacher.EnsembleTeacher`) gets one such view per member
   template, all of one draw;
3. trains the student on two losses (``loss_weights``): ``embed``, the embedding regressed
   onto the teacher's, centred and rescaled per dimension (``(t - mu) / sigma``, mapped back
   inside the student by its ``TeacherSpaceMap``; a student without one is trained, and
   compared by cosine, in the centred space, through a learned projection when its width
   differs from the teacher's), and ``relational``, matching the batch's cosine-similarity
   matrix to the teacher's (what verification and search compare).

The loop itself (checkpoints, resume, log, view-1 check, kept ``backbone.pt``) is
:class:`slimface.train.trainer.Trainer`'s.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ConfigError, DataError, ModelFileError
from slimface.train.augment import AugmentConfig
from slimface.train.config import TrainConfig
from slimface.train.distributed import DistInfo, model_device
from slimface.train.teacher import embed_views, teacher_members
from slimface.train.workers import ViewMaker, ViewWorkers

log = logging.getLogger("slimface.train")


@dataclass
class FaceCanvases:
    """Aligned face canvases for distillation.

    Attributes:
        canvas: ``(N, H, W, 3)`` uint8 on the student's template padded by ``crop_pad``.
        info: a JSON-ready description (image counts per source).
        teacher_canvases: per teacher template other than the student's, its
            ``(N, Ht, Wt, 3)`` padded canvases of the same faces (empty when every teacher
            shares the student's template: they then see the student's pixels).
        to_teachers: per key of ``teacher_canvases``, the ``(N, 2, 3)`` student-canvas ->
            that canvas's coordinates per face.
    """

    canvas: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    teacher_canvases: dict[str, np.ndarray] = field(default_factory=dict)
    to_teachers: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.canvas)

    def on_template(self, template: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(canvases, student -> canvas maps) on ``template``, or None when there are none."""
        if template in self.teacher_canvases:
            return self.teacher_canvases[template], self.to_teachers[template]
        return None


def teacher_pad(student_template: str, teacher_template: str, pad: int) -> int:
    """The teacher canvas's padding: ``pad`` student pixels in the teacher's pixels."""
    from slimface.align.templates import get_template
    from slimface.align.warp import crop_ratio, similarity_transform

    m = similarity_transform(get_template(student_template).landmarks_for("5pt"),
                             get_template(teacher_template).landmarks_for("5pt"))
    return int(math.ceil(pad / crop_ratio(m)))


def canvas_to_teacher(landmarks: np.ndarray, kind: str, student: Any, teacher: Any
                      ) -> np.ndarray:
    """2x3 map from the student's canvas to the teacher's, both warped from ``landmarks``."""
    from slimface.align.warp import compose_affine, face_transform, invert_affine

    return compose_affine(face_transform(landmarks, teacher, kind),
                          invert_affine(face_transform(landmarks, student, kind)))


def training_canvases(data_root: Path, sources: tuple, template: str, pad: int,
                      detector: str, progress: bool = True,
                      max_images: int = 0, seed: int = 0,
                      teacher_templates: tuple[str, ...] = ()) -> FaceCanvases:
    """Aligned face canvases (template padded by ``pad``) of every training image.

    The image list excludes every LFW pair image (view 1 and view 2); images where no face
    is found are dropped (a centre crop would teach a misaligned view). For every teacher
    template in ``teacher_templates`` (one, or an ensemble's) other than
    ``template``, every face is also warped onto it (from the same landmarks; detections
    come from the crop cache), padded by the same margin in the teacher's pixels.
    ``max_images`` keeps a ``seed``-drawn random subset.
    """
    from slimface.align.pipeline import align_paths
    from slimface.align.templates import get_template
    from slimface.data.training import list_training_images, padded_copies

    images = list_training_images(data_root, sources)
    if max_images and max_images < len(images):
        pick = np.random.default_rng([seed, 3]).choice(len(images), max_images, replace=False)
        images = images.subset(sorted(pick.tolist()))
    det_paths = padded_copies(images, 0.25, 2, progress)
    student = get_template(template).padded(pad)
    batch = align_paths(det_paths, student, detector=detector, multi_face="largest",
                        no_face="centre", workers=2, progress=progress)
    keep = np.flatnonzero([s != "centre" for s in batch.status])
    if not len(keep):
        raise DataError(f"{data_root}: no face found in any training image")
    info = {"images": int(len(keep)), "dropped_no_face": int(len(images) - len(keep)),
            "per_source": images.subset(keep.tolist()).counts(), "lfw_pair_images": 0}
    canvases = FaceCanvases(np.ascontiguousarray(batch.crops[keep]), info=info)
    others = [t for t in dict.fromkeys(teacher_templates)
              if t and t != template]
    faces = [batch.faces[i] for i in keep]
    names = []
    for name in others:
        teacher = get_template(name).padded(teacher_pad(template, name, pad))
        tbatch = align_paths([det_paths[i] for i in keep], teacher, detector=detector,
                             multi_face="largest", no_face="centre", workers=2,
                             progress=progress)
        canvases.teacher_canvases[name] = np.ascontiguousarray(tbatch.crops)
        canvases.to_teachers[name] = np.stack([canvas_to_teacher(f.landmarks, f.kind, student,
                                                                 teacher) for f in faces])
        names.append(teacher.name)
    if len(others) == 1:
        info["teacher_template"] = names[0]
    elif others:
        info["teacher_templates"] = names
    return canvases


def centre_views(canvas: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The un-augmented crop at the centre of each canvas."""
    top = (canvas.shape[1] - out_hw[0]) // 2
    left = (canvas.shape[2] - out_hw[1]) // 2
    return np.ascontiguousarray(canvas[:, top:top + out_hw[0], left:left + out_hw[1]])


def relational_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal cosine similarities within the batch."""
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    diff = s @ s.T - t @ t.T
    n = len(s)
    return (diff.pow(2).sum() - diff.diagonal().pow(2).sum()) / max(n * (n - 1), 1)


class DistillModel(nn.Module):
    """The student as trained: ``(raw output, raw projected to the teacher's width)``.

    ``raw`` is ``forward_raw`` for a student with a ``TeacherSpaceMap`` (the centred space),
    else its plain output; the projection is the identity when the widths agree.
    """

    def __init__(self, backbone: nn.Module, projection: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.maps_to_teacher = hasattr(backbone, "output_map")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.backbone.forward_raw(x) if self.maps_to_teacher else self.backbone(x)
        return raw, self.projection(raw)


def _warn_output_dropout(student: nn.Module) -> None:
    """Dropout before a softmax is a regulariser; on the regressed embedding it zeroes half the
    prediction (a binary Face-ResNet distilled that way stayed at the mean's loss)."""
    last = list(student.modules())[-1]
    if isinstance(last, nn.Dropout) and last.p > 0:
        log.warning("the student ends in Dropout(p=%.2f): distillation regresses its output, "
                    "so pass dropout=0.0 in its kwargs", last.p)


class FunctionMatching:
    """The ``distill`` objective; canvases and teacher are injected (tests pass fakes).

    The teacher is one model (``embed`` of one crop batch) or an ensemble (``members``;
    ``embed`` of one crop batch per member), each member on its own template.
    """

    name = "distill"

    def __init__(self, config: TrainConfig, data: FaceCanvases, teacher: Any):
        self.config = config
        self.data = data
        self.teacher = teacher
        self.augment = AugmentConfig(**config.augment)
        self.model: DistillModel | None = None
        self._workers: ViewWorkers | None = None   # ``config.data_workers`` processes
        # centring of a student without a TeacherSpaceMap (else its buffers hold them)
        self.target_mean = torch.zeros(teacher.embedding_dim)
        self.target_std = torch.ones(teacher.embedding_dim)

    def __len__(self) -> int:
        return len(self.data)

    # ------------------------------------------------------------------ setup
    def bind(self, student: nn.Module) -> nn.Module:
        from slimface.align.templates import get_template

        template = getattr(student, "template", None)
        self.out_hw = tuple(student.input_size)
        self.members = teacher_members(self.teacher)
        self.view_hw: dict[str, tuple[int, int]] = {}   # per teacher template: its view size
        for member in self.members:
            hw = tuple(getattr(member, "size", None) or get_template(member.template).size)
            if self.view_hw.setdefault(member.template, hw) != hw:
                raise ConfigError(f"teachers on template {member.template!r} expect different "
                                  f"inputs: {self.view_hw[member.template]} and {hw}")
        others = [t for t in self.view_hw if t != template]
        # per teacher template other than the student's: (canvases, maps, view size)
        self.others: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}
        for name in others:
            found = self.data.on_template(name)
            if found is None:
                raise ConfigError(f"student template {template!r} differs from the teacher's "
                                  f"{name!r}: the data needs teacher canvases "
                                  "(training_canvases(..., teacher_templates=...))")
            self.others[name] = (*found, self.view_hw[name])
        if template in self.view_hw and self.out_hw != self.view_hw[template]:
            raise ConfigError(f"student input {self.out_hw} differs from the teacher's "
                              f"{self.view_hw[template]} on the same template")
        maps = hasattr(student, "output_map")
        projection: nn.Module = nn.Identity()
        if student.embedding_dim != self.teacher.embedding_dim:
            if maps:
                raise ConfigError(f"student embedding_dim {student.embedding_dim} != teacher "
                                  f"{self.teacher.embedding_dim}: set backbone_kwargs "
                                  "embedding_dim")
            projection = nn.Linear(student.embedding_dim, self.teacher.embedding_dim,
                                   bias=False)
        _warn_output_dropout(student)
        self.maker = ViewMaker(self.data.canvas, self.others, self.out_hw, self.augment,
                               self.config.seed,
                               template if template in self.view_hw else "")
        self.model = DistillModel(student, projection)
        return self.model

    def fresh_start(self) -> None:
        """Per-dimension mean and spread of the teacher's embeddings of centre crops."""
        n = min(len(self.data), 2048)
        idx = np.sort(np.random.default_rng([self.config.seed, 7]).choice(len(self.data), n,
                                                                          replace=False))
        views = {name: centre_views(self.others[name][0][idx] if name in self.others
                                    else self.data.canvas[idx], hw)
                 for name, hw in self.view_hw.items()}
        emb = np.concatenate([self.embed_teacher({k: v[i:i + 64] for k, v in views.items()})
                              for i in range(0, n, 64)])
        mean = torch.from_numpy(emb.mean(0))
        std = torch.from_numpy(emb.std(0)).clamp_min(1e-4)
        if self.model.maps_to_teacher:
            self.model.backbone.output_map.set_target_stats(mean, std)
        else:
            self.target_mean, self.target_std = mean.float(), std.float()
        log.info("teacher target stats from %d crops: |mean| %.3f, mean std %.4f", n,
                 float(mean.norm()), float(std.mean()))

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.model.maps_to_teacher:
            out_map = self.model.backbone.output_map
            return out_map.target_mean, out_map.target_std
        return self.target_mean, self.target_std

    # ------------------------------------------------------------------ one step
    def views(self, idx: np.ndarray, step: int, info: DistInfo
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(student views, teacher views per template) of step ``step``: one draw for all."""
        return self.maker.views(idx, step, info)

    def prefetch(self, upcoming: list[tuple[int, np.ndarray]], info: DistInfo) -> None:
        """Start augmenting the batches of ``upcoming`` ``(step, indices)`` in the data
        workers (``config.data_workers`` processes, :mod:`slimface.train.workers`; the
        trainer calls it only when there are some)."""
        if self._workers is None:
            # on the CPU the workers run the teacher too (on a GPU it stays with the student)
            on_cpu = torch.device(self.config.device).type == "cpu"
            self._workers = ViewWorkers(self.maker, self.config.data_workers,
                                        teacher=self.teacher if on_cpu else None,
                                        threads=self.config.threads)
        for step, idx in upcoming:
            self._workers.submit(step, idx, info)

    def close(self) -> None:
        """Stop the data workers, if any."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def _views_of_step(self, idx: np.ndarray, step: int, info: DistInfo
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """This step's views: made ahead by a data worker (with the teacher's targets when
        it ran the teacher, on the CPU), or now (targets None: the loop runs the teacher)."""
        made = self._workers.take(step) if self._workers is not None else None
        return made if made is not None else (*self.views(idx, step, info), None)

    def embed_teacher(self, views: dict[str, np.ndarray]) -> np.ndarray:
        """The teacher's embeddings of ``views`` (per template): each member gets its own."""
        return embed_views(self.teacher, views)

    def loss(self, model: nn.Module, idx: np.ndarray, slots: np.ndarray, step: int,
             info: DistInfo) -> tuple[torch.Tensor, dict[str, float]]:
        t0 = time.perf_counter()
        views, teacher_views, made = self._views_of_step(idx, step, info)
        t1 = time.perf_counter()
        device = model_device(model)
        target = torch.from_numpy(self.embed_teacher(teacher_views) if made is None
                                  else made).to(device)
        t2 = time.perf_counter()
        x = torch.from_numpy(views).to(device).permute(0, 3, 1, 2).float()
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        raw, projected = model(x)
        mean, std = (t.to(device) for t in self._stats())
        centred = (target - mean) / std
        embed = F.mse_loss(projected, centred)
        if self.model.maps_to_teacher:   # compared in the teacher's space
            student_space, teacher_space = self.model.backbone.output_map(raw), target
            matched = student_space
        else:                             # compared in the centred space
            student_space, teacher_space = raw, centred
            matched = projected
        rel = relational_loss(student_space, teacher_space)
        weights = self.config.loss_weights
        loss = weights.get("embed", 1.0) * embed + weights.get("relational", 0.0) * rel
        cos = F.cosine_similarity(matched.detach(), teacher_space, dim=1).mean()
        return loss, {"embed": float(embed.detach()), "relational": float(rel.detach()),
                      "cos_to_teacher": float(cos), "augment_s": t1 - t0,
                      "teacher_s": t2 - t1}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"teacher": self.teacher.name}
        if not self.model.maps_to_teacher:
            state["target_mean"], state["target_std"] = self.target_mean, self.target_std
        if isinstance(self.model.projection, nn.Linear):
            state["projection"] = self.model.projection.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        if state.get("teacher") != self.teacher.name:
            raise ModelFileError(f"{path}: trained against teacher {state.get('teacher')!r}, "
                                 f"not {self.teacher.name!r}")
        if "target_mean" in state:
            self.target_mean, self.target_std = state["target_mean"], state["target_std"]
        if "projection" in state:
            self.model.projection.load_state_dict(state["projection"])

    def summary(self) -> dict[str, Any]:
        return {"teacher": self.teacher.name, "num_images": len(self.data)}

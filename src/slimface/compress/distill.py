"""Knowledge distillation: a frozen teacher, a student, and the losses that tie them.

Losses (each a module with its own test; combine any of them, weights in the config):

* :class:`EmbeddingDistillLoss`: L2 or cosine between the student's embedding and the
  teacher's, through a learned linear projection when the dimensions differ. Needs no labels.
  The targets are the teacher embeddings *centred and rescaled*, ``(t - mean) / std``: raw dlib
  embeddings share one dominant direction (their mean has norm ~0.91; two random faces have
  cosine ~0.83), and a student regressing them learns
  mostly the mean. The inverse map is folded into the student (``TeacherSpaceMap``).
* :class:`HintLoss`: FitNets hints (Romero et al., https://arxiv.org/abs/1412.6550): a 1x1
  regressor maps a student feature map onto a teacher feature map (resized when the spatial
  sizes differ), mean squared error.
* :class:`KDLoss`: Hinton et al. (https://arxiv.org/abs/1503.02531) softened-logit KL
  divergence at temperature ``T``, scaled by ``T**2`` so gradients keep their magnitude.
* a margin head (``slimface.models.heads``, e.g. ArcFace) on labelled images.

:func:`run_distillation` trains a student from a :class:`DistillConfig` with cached teacher
targets (see ``distill_data``), atomic checkpoints, ``resume``, a JSONL log and LFW *view-1*
accuracy as the health signal; :func:`export_student` writes the shipped safetensors file.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ConfigError, ModelFileError
from slimface.train.config import load_config_object

log = logging.getLogger(__name__)

EMBED_LOSSES: tuple[str, ...] = ("l2", "cosine")


# ============================================================================ losses

class EmbeddingDistillLoss(nn.Module):
    """Student embedding -> teacher embedding, label-free.

    Args:
        student_dim: the student's embedding size.
        teacher_dim: the teacher's; a learned ``Linear`` projects the student when they differ.
        kind: ``"l2"`` (mean squared error per dimension) or ``"cosine"`` (``1 - cos``).
    """

    def __init__(self, student_dim: int, teacher_dim: int, kind: str = "l2"):
        super().__init__()
        if kind not in EMBED_LOSSES:
            raise ValueError(f"embedding loss must be one of {EMBED_LOSSES}, got {kind!r}")
        self.kind = kind
        self.proj = (nn.Identity() if student_dim == teacher_dim else
                     nn.Linear(student_dim, teacher_dim, bias=False))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = self.proj(student)
        if self.kind == "l2":
            return F.mse_loss(s, teacher)
        return (1.0 - F.cosine_similarity(s, teacher, dim=1)).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class HintLoss(nn.Module):
    """FitNets hint: ``|| r(student_features) - teacher_features ||^2`` with a 1x1 regressor ``r``.

    The regressor output is resized (bilinear) to the teacher map's spatial size, so the
    student may hint from a different resolution.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
            nn.BatchNorm2d(teacher_channels))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        r = self.regressor(student)
        if r.shape[-2:] != teacher.shape[-2:]:
            r = F.interpolate(r, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(r, teacher.detach())


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    s = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature ** 2


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss`."""

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return kd_loss(student_logits, teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class FeatureTap:
    """Records the outputs of named submodules on every forward (for hint losses)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(f"no module {missing[0]!r} in {type(model).__name__} (e.g. "
                              f"{', '.join(list(modules)[1:8])})")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            self.outputs[name] = out
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@dataclass
class LossTerms:
    """The weighted total and each term (floats, for logs)."""

    total: torch.Tensor
    parts: dict[str, float]


class DistillLoss(nn.Module):
    """Weighted sum of embedding, hint, KD and margin-head losses; zero weights are skipped.

    Args:
        embed: the embedding loss (always present; weight may be 0).
        hints: student-layer name -> (HintLoss, teacher-layer name).
        head: a margin head ``(embedding, labels) -> HeadOutput`` for labelled rows, or None.
        weights: ``{"embed", "hint", "kd", "margin"}``.
        temperature: KD temperature (teacher logits come from ``teacher_head``).
    """

    def __init__(self, embed: EmbeddingDistillLoss, weights: dict[str, float],
                 hints: dict[str, tuple[HintLoss, str]] | None = None,
                 head: nn.Module | None = None, temperature: float = 4.0):
        super().__init__()
        unknown = set(weights) - {"embed", "hint", "kd", "margin"}
        if unknown:
            raise ConfigError(f"unknown loss weight(s) {sorted(unknown)} (known: embed, hint, "
                              "kd, margin)")
        self.embed = embed
        self.weights = dict(weights)
        self.hints = nn.ModuleDict({k.replace(".", "__"): v[0] for k, v in (hints or {}).items()})
        self.hint_pairs = {k: v[1] for k, v in (hints or {}).items()}
        self.head = head
        self.kd = KDLoss(temperature)

    def forward(self, student_emb: torch.Tensor, teacher_target: torch.Tensor,
                labels: torch.Tensor | None = None,
                student_feats: dict[str, torch.Tensor] | None = None,
                teacher_feats: dict[str, torch.Tensor] | None = None,
                teacher_logits: torch.Tensor | None = None) -> LossTerms:
        parts: dict[str, torch.Tensor] = {}
        w = self.weights
        if w.get("embed", 0):
            parts["embed"] = self.embed(student_emb, teacher_target)
        if w.get("hint", 0) and self.hint_pairs:
            parts["hint"] = sum(self.hints[s.replace(".", "__")](student_feats[s],
                                                                  teacher_feats[t])
                                for s, t in self.hint_pairs.items()) / len(self.hint_pairs)
        labelled = labels is not None and bool((labels >= 0).any())
        if self.head is not None and labelled and (w.get("margin", 0) or w.get("kd", 0)):
            keep = labels >= 0
            out = self.head(student_emb[keep], labels[keep])
            if w.get("margin", 0):
                parts["margin"] = out.loss
            if w.get("kd", 0) and teacher_logits is not None:
                parts["kd"] = self.kd(out.logits, teacher_logits[keep])
        if not parts:
            raise ConfigError("every loss weight is zero (or needs labels the batch lacks)")
        total = sum(w[k] * v for k, v in parts.items())
        return LossTerms(total, {k: float(v.detach()) for k, v in parts.items()})


# ============================================================================ config

@dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on; schedules are counted in optimizer steps."""

    # networks
    student: str = "slimnet_m"
    student_kwargs: dict = field(default_factory=dict)
    teacher: str = "dlib_resnet"
    init_from: str = ""                  # student weights to start from (model.pt/.safetensors)
    # data
    sources: tuple = ("utkface", "celeba", "lfw_unpaired", "att")
    pad_fraction: float = 0.25           # border replication before detecting tight crops
    crop_pad: int = 8                    # random crops from a canvas 2*crop_pad larger
    detector: str = "retinaface"
    teacher_mirror: bool = False         # embed mirrors with the teacher too (2x teacher time)
    limit_images: int = 0                # 0 = all (smoke tests use a few hundred)
    # augmentation
    flip: bool = True
    max_shift: int = -1                  # crop offset +-pixels from centre (-1 = whole canvas)
    jitter: float = 0.2                  # brightness/contrast +-jitter, saturation +-jitter/2
    grey_prob: float = 0.05
    # losses
    embed_loss: str = "l2"
    loss_weights: dict = field(default_factory=lambda: {"embed": 1.0})
    hint_layers: dict = field(default_factory=dict)   # student module -> teacher module
    head: str = "arcface"
    head_kwargs: dict = field(default_factory=dict)
    kd_temperature: float = 4.0
    # optimisation
    batch_size: int = 128
    steps: int = 20000
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    min_lr_ratio: float = 0.0
    # bookkeeping
    seed: int = 0
    threads: int = 2
    channels_last: bool = True
    compile: bool = False
    checkpoint_minutes: float = 5.0
    eval_every: int = 1000               # LFW view-1 accuracy every N steps (0 = off)
    log_every: int = 20
    out: str = ""                        # "" = work_dirs/<config stem>


def _convert(key: str, raw: str, current: Any) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if isinstance(current, (int, float, str)):
            return type(current)(raw)
        value = json.loads(raw)
        return tuple(value) if isinstance(current, tuple) else value
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"--set {key}={raw!r}: not a valid {type(current).__name__}") from None


def validate_config(cfg: DistillConfig) -> DistillConfig:
    """Reject values that would fail later with a less helpful message."""
    from slimface.compress.distill_data import SOURCES

    for name in ("batch_size", "steps", "threads", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.embed_loss not in EMBED_LOSSES:
        raise ConfigError(f"embed_loss must be one of {EMBED_LOSSES}, got {cfg.embed_loss!r}")
    bad = [s for s in cfg.sources if s not in SOURCES]
    if bad:
        raise ConfigError(f"unknown source(s) {bad} (choose from {', '.join(SOURCES)})")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    return cfg


def apply_overrides(cfg: DistillConfig, overrides: Iterable[str]) -> DistillConfig:
    """``key=value`` strings; unknown keys and unparsable values raise ConfigError."""
    current = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        key = key.replace("-", "_")
        if key not in current:
            raise ConfigError(f"unknown config key {key!r}; valid keys: "
                              f"{', '.join(sorted(current))}")
        changes[key] = _convert(key, raw, current[key])
    return validate_config(replace(cfg, **changes))


def load_distill_config(path: str | Path, overrides: Iterable[str] = ()) -> DistillConfig:
    """Import ``configs/<name>.py`` by path and take its ``config = DistillConfig(...)``."""
    return apply_overrides(validate_config(load_config_object(path, DistillConfig)), overrides)


def config_to_dict(cfg: DistillConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(values: dict[str, Any]) -> DistillConfig:
    known = {f.name for f in fields(DistillConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"checkpoint config has unknown keys {sorted(unknown)}")
    base = DistillConfig()
    return DistillConfig(**{k: tuple(v) if isinstance(getattr(base, k), tuple) else v
                            for k, v in values.items()})


# ============================================================================ training

def target_stats(teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-dimension std of the (N, 2, D) teacher embeddings (the centring map)."""
    flat = teacher.reshape(-1, teacher.shape[-1]).astype(np.float64)
    mean = flat.mean(0)
    std = np.maximum(flat.std(0), 1e-6)
    return mean.astype(np.float32), std.astype(np.float32)


def lr_at(step: int, cfg: DistillConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def augment_batch(crops: np.ndarray, idx: np.ndarray, size: tuple[int, int],
                  rng: np.random.Generator, cfg: DistillConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Random crop from the padded canvas, flip, mild colour jitter -> float NCHW 0..255.

    Returns the batch and the flip flags (which select the teacher's mirror target).
    """
    n = len(idx)
    hp, wp = crops.shape[1:3]
    h, w = size
    cy, cx = (hp - h) // 2, (wp - w) // 2
    sy = cy if cfg.max_shift < 0 else min(cy, cfg.max_shift)
    sx = cx if cfg.max_shift < 0 else min(cx, cfg.max_shift)
    oy = rng.integers(cy - sy, cy + sy + 1, n)
    ox = rng.integers(cx - sx, cx + sx + 1, n)
    flips = rng.random(n) < 0.5 if cfg.flip else np.zeros(n, bool)
    out = np.empty((n, h, w, 3), np.uint8)
    for k, i in enumerate(idx):
        patch = crops[i, oy[k]:oy[k] + h, ox[k]:ox[k] + w]
        out[k] = patch[:, ::-1] if flips[k] else patch
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float()
    if cfg.jitter > 0:
        x = colour_jitter(x, rng, cfg.jitter, cfg.grey_prob)
    return x, flips


def colour_jitter(x: torch.Tensor, rng: np.random.Generator, strength: float,
                  grey_prob: float = 0.0) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors in ``1 +- strength``."""
    n = x.shape[0]

    def factors(s: float) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(1 - s, 1 + s, (n, 1, 1, 1)).astype(np.float32))

    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = x * factors(strength)                                    # brightness
    mean = grey.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * factors(strength) + mean                    # contrast
    g = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    sat = factors(strength / 2)
    if grey_prob > 0:
        sat = torch.where(torch.from_numpy(rng.random((n, 1, 1, 1)) < grey_prob),
                          torch.zeros_like(sat), sat)
    x = (x - g) * sat + g                                        # saturation
    return x.clamp_(0, 255)


@dataclass
class RunState:
    step: int = 0
    seconds: float = 0.0
    best_view1: float = 0.0
    history: list = field(default_factory=list)


def _rng_for(cfg: DistillConfig, step: int) -> np.random.Generator:
    """Augmentation and sampling depend only on (seed, step): resuming replays exactly."""
    return np.random.default_rng([cfg.seed, step])


def _batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Epoch-wise shuffles: step's rows are a slice of the permutation of its epoch."""
    per_epoch = max(1, n // batch)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, 10_000_019, epoch]).permutation(n)
    return perm[k * batch:(k + 1) * batch]


def warn_output_dropout(student: nn.Module) -> bool:
    """Warn when the student's last module is a live Dropout (Face-ResNet's after Fc5).

    Dropout before a softmax is a regulariser; on the embedding that the loss regresses it
    zeroes half the prediction, and a binary Face-ResNet distilled that way stayed at the
    loss of predicting the mean (1.0) for 220 steps.
    """
    last = list(student.modules())[-1]
    if isinstance(last, nn.Dropout) and last.p > 0:
        log.warning("the student ends in Dropout(p=%.2f): distillation regresses its output, "
                    "so pass dropout=0.0 in its kwargs (e.g. student_kwargs / base_kwargs)",
                    last.p)
        return True
    return False


def init_student_weights(student: nn.Module, path: str | Path) -> list[str]:
    """Start from trained weights (a distilled ``model.pt`` or a shipped ``.safetensors``).

    Every tensor of the file must fit the student by name and shape; tensors the student has
    beyond the file's keep their fresh initialisation and are returned. Why: a binarized
    student learns far faster from its float twin's weights (a quantized layer keeps the
    float layer's tensor names), and a deeper slimnet grows from a trained shallower one
    (its extra residual blocks start as identity: zero-initialised last BatchNorm).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"init_from: {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            record = torch.load(path, map_location="cpu", weights_only=True)
            state = record["state_dict"] if "state_dict" in record else record
    except Exception as exc:  # noqa: BLE001 - corrupt or not a weights file
        raise ModelFileError(f"{path}: cannot read student weights ({exc})") from None
    own = student.state_dict()
    misfit = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if misfit:
        raise ModelFileError(f"{path}: {len(misfit)} tensors do not fit the student "
                             f"{type(student).__name__} (e.g. {misfit[:3]})")
    student.load_state_dict(state, strict=False)
    fresh = [k for k in own if k not in state]
    if fresh:
        log.info("init_from %s: %d student tensors keep their initialisation (e.g. %s)",
                 path, len(fresh), fresh[:3])
    return fresh


class Distiller:
    """Owns the student, the optimizer and the loop; data and evaluator are injected."""

    def __init__(self, cfg: DistillConfig, crops: np.ndarray, targets: np.ndarray,
                 labels: np.ndarray, crop_size: tuple[int, int], out_dir: Path,
                 evaluator: Any = None, num_classes: int = 0):
        from slimface.models import create_backbone, create_head

        torch.manual_seed(cfg.seed)
        self.cfg, self.crops, self.labels = cfg, crops, labels
        self.crop_size = tuple(crop_size)
        self.out_dir = out_dir
        self.evaluator = evaluator
        self.student = create_backbone(cfg.student, **cfg.student_kwargs)
        warn_output_dropout(self.student)
        if cfg.init_from:
            init_student_weights(self.student, cfg.init_from)
        self.mean, self.std = target_stats(targets)
        self.targets = torch.from_numpy((targets - self.mean) / self.std)
        # Students with a TeacherSpaceMap (slimnet) get the inverse map folded in, so their
        # output lives in the teacher's space; any other registered backbone (e.g. a binarized
        # student distilled from a float one) is trained, and compared by cosine, in the
        # centred space directly.
        self.maps_to_teacher = hasattr(self.student, "output_map")
        if self.maps_to_teacher:
            self.student.output_map.set_target_stats(torch.from_numpy(self.mean),
                                                     torch.from_numpy(self.std))
        if cfg.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        head = None
        if num_classes and (cfg.loss_weights.get("margin") or cfg.loss_weights.get("kd")):
            head = create_head(cfg.head, embedding_dim=self.student.embedding_dim,
                               num_classes=num_classes, **cfg.head_kwargs)
        embed = EmbeddingDistillLoss(self.student.embedding_dim, targets.shape[-1],
                                     cfg.embed_loss)
        self.loss = DistillLoss(embed, cfg.loss_weights, head=head,
                                temperature=cfg.kd_temperature)
        params = list(self.student.parameters()) + list(self.loss.parameters())
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        raw = self.student.forward_raw if self.maps_to_teacher else self.student.forward
        self.forward = torch.compile(raw) if cfg.compile else raw
        self.state = RunState()

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        from slimface.io.atomic import atomic_save

        state = {"student": self.student.state_dict(), "loss": self.loss.state_dict(),
                 "optimizer": self.opt.state_dict(), "step": self.state.step,
                 "seconds": self.state.seconds, "best_view1": self.state.best_view1,
                 "config": json.dumps(config_to_dict(self.cfg))}
        atomic_save(self.checkpoint_path, lambda tmp: torch.save(state, tmp))
        self.save_model(self.out_dir / "model.pt")

    def save_model(self, path: Path) -> None:
        """``{"architecture", "state_dict"}``: loadable by ``slimface eval --model path``."""
        from slimface.io.atomic import atomic_save

        record = {"architecture": {"backbone": self.cfg.student,
                                   "kwargs": dict(self.cfg.student_kwargs)},
                  "state_dict": {k: v.detach().cpu().contiguous()
                                 for k, v in self.student.state_dict().items()}}
        atomic_save(path, lambda tmp: torch.save(record, tmp))

    def load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelFileError(f"{path}: not a readable distillation checkpoint ({exc})"
                                 ) from None
        self.student.load_state_dict(state["student"])
        self.loss.load_state_dict(state["loss"])
        self.opt.load_state_dict(state["optimizer"])
        self.state.step = int(state["step"])
        self.state.seconds = float(state["seconds"])
        self.state.best_view1 = float(state.get("best_view1", 0.0))

    # ---------------------------------------------------------------- loop
    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        rng = _rng_for(cfg, step)
        idx = _batch_indices(len(self.crops), cfg.batch_size, step, cfg.seed)
        x, flips = augment_batch(self.crops, idx, self.crop_size, rng, cfg)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = self.targets[torch.from_numpy(idx), torch.from_numpy(flips.astype(np.int64))]
        labels = torch.from_numpy(self.labels[idx])
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        self.student.train()
        terms = self.loss(self.forward(x), target, labels)
        self.opt.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt.step()
        return {"loss": float(terms.total.detach()), **terms.parts, "lr": lr_at(step, cfg)}

    def evaluate(self) -> dict[str, float]:
        if self.evaluator is None:
            return {}
        res = self.evaluator(self.student)
        self.student.train()
        return res

    def run(self, log_path: Path, progress: bool = True, max_minutes: float = 0.0,
            until_step: int = 0) -> RunState:
        """Train to ``cfg.steps`` (or until ``max_minutes`` of this run or step
        ``until_step``, schedule unchanged), checkpointing."""
        from tqdm import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.state.step, desc="distill", unit="step",
                   disable=not progress, dynamic_ncols=True)
        run_start = last_ckpt = time.perf_counter()
        window_t, window_n = time.perf_counter(), 0
        last = min(cfg.steps, until_step) if until_step > 0 else cfg.steps
        with open(log_path, "a", encoding="utf-8") as logf:
            while self.state.step < last:
                t0 = time.perf_counter()
                rec = self.train_step(self.state.step)
                self.state.step += 1
                self.state.seconds += time.perf_counter() - t0
                window_n += cfg.batch_size
                bar.update()
                step = self.state.step
                if step % cfg.log_every == 0 or step == cfg.steps:
                    ips = window_n / max(1e-9, time.perf_counter() - window_t)
                    window_t, window_n = time.perf_counter(), 0
                    rec.update(step=step, img_per_s=round(ips, 1),
                               train_seconds=round(self.state.seconds, 1))
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{ips:.0f}")
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    ev = self.evaluate()
                    if ev:
                        self.state.best_view1 = max(self.state.best_view1,
                                                    ev.get("lfw_view1_acc", 0.0))
                        logf.write(json.dumps({"step": step, **ev}) + "\n")
                        logf.flush()
                        bar.write(f"step {step}: LFW view-1 accuracy "
                                  f"{ev.get('lfw_view1_acc', float('nan')):.4f}")
                now = time.perf_counter()
                if now - last_ckpt >= cfg.checkpoint_minutes * 60 or step == last:
                    self.save_checkpoint()
                    last_ckpt = now
                if max_minutes and now - run_start >= max_minutes * 60:
                    self.save_checkpoint()
                    bar.write(f"stopping after {max_minutes} min at step {step} "
                              "(continue with --resume)")
                    break
        bar.close()
        return self.state


def default_out_dir(config_path: str | Path) -> Path:
    return Path("work_dirs") / Path(config_path).stem


def run_distillation(config_path: str | Path, overrides: Sequence[str] = (),
                     data: str | None = None, out: str | None = None, resume: bool = False,
                     max_minutes: float = 0.0, progress: bool = True,
                     until_step: int = 0, view1_check: Any = None) -> dict[str, Any]:
    """``slimface compress distill CONFIG``: build/cached data, train, write model.pt.

    ``view1_check(data_root, template, detector, batch_size)`` builds the periodic health
    check that ``eval_every`` asks for (the CLI passes
    :class:`slimface.eval.view1.LfwView1Evaluator`).
    """
    from slimface.compress.distill_data import build_distill_set, describe
    from slimface.data.roots import data_root as resolve_data_root
    from slimface.models import create_backbone

    cfg = load_distill_config(config_path, overrides)
    if cfg.eval_every and view1_check is None:
        raise ConfigError(f"eval_every={cfg.eval_every} needs a view-1 check: pass "
                          "view1_check=slimface.eval.view1.LfwView1Evaluator, or set eval_every=0")
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out or cfg.out or default_out_dir(config_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "checkpoint.pt").is_file() and not resume:
        raise ConfigError(f"{out_dir}/checkpoint.pt exists: pass --resume to continue it or "
                          "--out to start elsewhere")
    root = resolve_data_root(data)
    template = create_backbone(cfg.student, **cfg.student_kwargs).template
    ds = build_distill_set(root, cfg.sources, template, cfg.crop_pad, cfg.teacher,
                           cfg.detector, cfg.pad_fraction, cfg.limit_images,
                           workers=cfg.threads, teacher_mirror=cfg.teacher_mirror,
                           progress=progress)
    data_desc = describe(ds)
    log.info("distillation set: %s", data_desc)
    (out_dir / "data.json").write_text(json.dumps(data_desc, indent=2) + "\n")
    (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    evaluator = view1_check(root, template, cfg.detector, 128) if cfg.eval_every else None
    d = Distiller(cfg, ds.crops, ds.teacher, ds.labels, ds.crop_size, out_dir, evaluator,
                  num_classes=len(ds.classes))
    if resume and d.checkpoint_path.is_file():
        d.load_checkpoint(d.checkpoint_path)
        log.info("resumed at step %d", d.state.step)
    state = d.run(out_dir / "log.jsonl", progress=progress, max_minutes=max_minutes,
                  until_step=until_step)
    return {"out": str(out_dir), "step": state.step, "steps": cfg.steps,
            "train_seconds": state.seconds, "best_lfw_view1": state.best_view1,
            "data": data_desc, "model": str(out_dir / "model.pt")}


# ============================================================================ export

MAX_SHIPPED_BYTES = 4_000_000


def export_student(model_pt: str | Path, out: str | Path, metadata: dict[str, Any],
                   max_bytes: int = MAX_SHIPPED_BYTES) -> Path:
    """Write a trained student as fp32 safetensors + ``slimface`` JSON metadata (no pickle).

    The file holds the full state dict, including the folded teacher-space map
    (``output_map.target_mean``/``target_std``), so loading needs only the architecture name.
    """
    from safetensors.torch import save_file

    from slimface.io.atomic import atomic_save
    from slimface.models import create_backbone

    try:
        record = torch.load(model_pt, map_location="cpu", weights_only=True)
        arch = record["architecture"]
        state = record["state_dict"]
    except Exception as exc:
        raise ModelFileError(f"{model_pt}: not a distilled model.pt ({exc})") from None
    model = create_backbone(arch["backbone"], **arch.get("kwargs", {}))
    model.load_state_dict(state)  # validates the architecture before we ship it
    tensors = {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": "slimface-student", "architecture": arch,
            "template": model.template, "input_size": list(model.input_size),
            "embedding_dim": model.embedding_dim, **metadata}
    atomic_save(out, lambda tmp: save_file(tensors, str(tmp),
                                           metadata={"slimface": json.dumps(meta)}))
    size = Path(out).stat().st_size
    if size > max_bytes:
        raise ModelFileError(f"{out}: {size} bytes exceeds the {max_bytes}-byte limit")
    return Path(out)

"""``slimface train CONFIG``: config + data -> trained backbone, one entry point for every
objective, for one process and for ``torchrun``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import torch

from slimface.data.lfw import VIEW2_FILE, find_lfw_root, lfw_excluded_images
from slimface.data.roots import data_root, find_data_root
from slimface.errors import ConfigError, DataError
from slimface.train.checkpoint import BACKBONE_NAME, CHECKPOINT_NAME, export_safetensors
from slimface.train.config import TrainConfig, config_to_dict, load_config
from slimface.train.data import CropSet, load_crop_set, scan_identity_folders
from slimface.train.distributed import (DistInfo, barrier, cleanup, init_distributed,
                                        resolve_device)
from slimface.train.function_matching import FaceCanvases, training_canvases
from slimface.train.margin import MarginObjective
from slimface.train.trainer import EvaluatorFactory, Objective, Trainer

log = logging.getLogger("slimface.train")


def default_out_dir(config_path: str | Path) -> Path:
    """``work_dirs/<config stem>`` (insightface's convention)."""
    return Path("work_dirs") / Path(config_path).stem


def resolve_train_folder(config: TrainConfig, data: str | None) -> tuple[Path, Path | None]:
    """(identity folder root, data root for LFW). ``--data`` may be either."""
    if Path(config.data).is_absolute():
        return Path(config.data), find_data_root(data)
    if data is not None and (Path(data) / config.data).is_dir():
        return Path(data) / config.data, Path(data)
    if data is not None and Path(data).is_dir() and not (Path(data) / config.data).exists():
        return Path(data), find_data_root()  # --data names the identity folder itself
    root = data_root(data)
    return root / config.data, root


def lfw_pair_images_under(root: Path | None) -> set[Path]:
    """LFW pair images (view 1 and view 2) of the data root, to keep out of training; empty
    when the root holds no LFW."""
    if root is None or not any((c / VIEW2_FILE).is_file() for c in (root / "lfw", root)):
        return set()
    return lfw_excluded_images(find_lfw_root(root))


def prepare_data(config: TrainConfig, folder: Path, template: str, info: DistInfo,
                 progress: bool = True, exclude: set[Path] | frozenset[Path] = frozenset()
                 ) -> CropSet:
    """Rank 0 aligns (and fills the crop cache) first; other ranks then read the cache.

    ``exclude`` (resolved paths) never enter the training set: LFW pair images.
    """
    ids = scan_identity_folders(folder, config.min_images_per_identity, config.max_identities,
                                exclude=exclude)
    if info.is_main:
        log.info("%s: %d images of %d identities (%d+ images each)", folder, len(ids.paths),
                 len(ids.classes), max(config.min_images_per_identity, 1))
        crops = load_crop_set(ids, template, config.crop_pad, config.detector, progress)
    barrier(info)
    if not info.is_main:
        crops = load_crop_set(ids, template, config.crop_pad, config.detector, False)
    return crops


def prepare_canvases(config: TrainConfig, root: Path, template: str,
                     teacher_templates: str | tuple[str, ...], info: DistInfo,
                     progress: bool = True) -> FaceCanvases:
    """Distillation canvases, on every teacher template too (one per member of an ensemble);
    rank 0 aligns (and fills the caches) first."""
    if isinstance(teacher_templates, str):
        teacher_templates = (teacher_templates,)

    if config.data_pack:
        return canvases_from_pack(config, template, teacher_templates)

    def load(show: bool) -> FaceCanvases:
        return training_canvases(root, tuple(config.sources), template, config.crop_pad,
                                 config.detector, show, teacher_templates=teacher_templates,
                                 max_images=config.max_images, seed=config.seed)

    if info.is_main:
        canvases = load(progress)
    barrier(info)
    if not info.is_main:
        canvases = load(False)
    return canvases


def canvases_from_pack(config: TrainConfig, template: str,
                       teacher_templates: tuple[str, ...]) -> FaceCanvases:
    """The canvases of ``config.data_pack`` (see :mod:`slimface.train.pack`), checked
    against what the config would have aligned."""
    from slimface.train.pack import MANIFEST, read_pack

    canvas, manifest = read_pack(config.data_pack)
    where = Path(config.data_pack) / MANIFEST
    if (manifest["template"], manifest["pad"]) != (template, config.crop_pad):
        raise ConfigError(f"{where}: canvases on {manifest['template']!r} padded by "
                          f"{manifest['pad']}; the config wants {template!r} padded by "
                          f"{config.crop_pad}")
    others = sorted({t for t in teacher_templates if t and t != template})
    if others:
        raise ConfigError(f"{where}: a pack holds canvases on {template!r} only; teacher "
                          f"{config.teacher!r} needs {others} too")
    info = {**manifest["info"], "pack": str(config.data_pack),
            "jpeg_quality": manifest["jpeg_quality"]}
    return FaceCanvases(canvas, info=info)


def pack_from_config(config_path: str | Path, out: str | Path, data: str | None = None,
                     overrides: Iterable[str] = (), quality: int = 75,
                     shard_mb: float = 40.0, progress: bool = True,
                     check: int = 0) -> dict[str, Any]:
    """Align ``config``'s distillation images (as ``slimface train`` would) and write them
    as a training pack in ``out``; returns the manifest. ``check`` > 0 measures the JPEG
    round trip on that many canvases through the config's teacher
    (:func:`slimface.train.pack.pack_fidelity`)."""
    from slimface.models import create_backbone
    from slimface.train.pack import pack_fidelity, write_pack
    from slimface.train.teacher import load_teacher

    config = load_config(config_path, overrides)
    if config.objective != "distill":
        raise ConfigError(f"{config_path}: a training pack holds distillation canvases; this "
                          f"config trains objective={config.objective!r}")
    probe = create_backbone(config.backbone, **config.backbone_kwargs)
    template = config.template or probe.template
    canvases = training_canvases(data_root(data), tuple(config.sources), template,
                                 config.crop_pad, config.detector, progress,
                                 max_images=config.max_images, seed=config.seed)
    measure = None
    if check:
        teacher = load_teacher(config.teacher, config.teacher_runtime, threads=config.threads)
        if teacher.template != template:
            raise ConfigError(f"--check needs a teacher on the pack's template {template!r}; "
                              f"{config.teacher!r} is on {teacher.template!r}")

        def measure(blobs: list[bytes]) -> dict:
            return pack_fidelity(canvases.canvas, blobs, teacher, tuple(probe.input_size),
                                 check, config.seed)
    return write_pack(canvases.canvas, out, template=template, pad=config.crop_pad,
                      info=canvases.info, quality=quality, shard_mb=shard_mb, check=measure)


def train_from_config(config_path: str | Path, data: str | None = None,
                      out: str | None = None, resume: bool = False,
                      overrides: Iterable[str] = (), progress: bool = True,
                      view1_check: EvaluatorFactory | None = None,
                      until_step: int = 0, max_minutes: float = 0.0) -> dict[str, Any]:
    """Load, prepare, train; returns the summary dict (rank 0's view).

    ``view1_check`` builds the periodic health check that ``eval_every`` asks for
    (``slimface train`` passes :class:`slimface.eval.view1.LfwView1Evaluator`).
    ``until_step`` and ``max_minutes`` end this run early (checkpointed; the schedule is
    unchanged, ``resume=True`` continues).
    """
    from slimface.models import create_backbone

    config = load_config(config_path, overrides)
    if config.eval_every and view1_check is None:
        raise ConfigError(f"eval_every={config.eval_every} needs a view-1 check: pass "
                          "view1_check=slimface.eval.view1.LfwView1Evaluator, or set "
                          "eval_every=0")
    info = init_distributed()
    torch.set_num_threads(config.threads)
    out_dir = Path(out or config.out or default_out_dir(config_path))
    probe = create_backbone(config.backbone, **config.backbone_kwargs)
    template = config.template or probe.template
    objective: Objective
    if config.objective == "distill":
        from slimface.train.function_matching import FunctionMatching
        from slimface.train.teacher import load_teacher, teacher_members

        root = data_root(data)
        teacher = load_teacher(config.teacher, config.teacher_runtime, threads=config.threads,
                               device=str(resolve_device(config.device, info)))
        canvases = prepare_canvases(config, root, template,
                                    tuple(m.template for m in teacher_members(teacher)), info,
                                    progress)
        log.info("distill data: %s", canvases.info)
        objective = FunctionMatching(config, canvases, teacher)
        described = {"data": canvases.info}
    else:
        folder, root = resolve_train_folder(config, data)
        crop_set = prepare_data(config, folder, template, info, progress,
                                exclude=lfw_pair_images_under(root))
        objective = MarginObjective(config, crop_set)
        described = {}
    evaluator = None
    if config.eval_every:
        if root is None or not (root / "lfw").is_dir():
            raise DataError(f"eval_every={config.eval_every} needs LFW under the data root "
                            f"({root}); set eval_every=0 or pass --data")
        evaluator = view1_check(root, template, config.detector, config.eval_batch_size)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(
            json.dumps(config_to_dict(config), indent=2) + "\n")
        if "data" in described:
            (out_dir / "data.json").write_text(json.dumps(described["data"], indent=2) + "\n")
    try:
        trainer = Trainer(config, objective, out_dir, resume=resume, evaluator=evaluator,
                          progress=progress, info=info)
        summary = trainer.fit(until_step=until_step, max_minutes=max_minutes)
    finally:
        cleanup(info)
    return {"config": str(config_path), "objective": config.objective,
            "backbone": config.backbone, "head": config.head, "world_size": info.world_size,
            **summary}


def export_from_config(config_path: str | Path, export: str | Path, out: str | None = None,
                       overrides: Iterable[str] = (),
                       metadata: dict[str, Any] | None = None,
                       last_step: bool = False) -> dict[str, Any]:
    """Write the run's ``backbone.pt`` as a shippable fp32 safetensors file ``export``, with
    the teacher, config name and training data in its metadata.

    ``backbone.pt`` is the checked step with the best view-1 TAR; ``last_step`` exports the
    weights of ``checkpoint.pt`` (the run's latest step) instead, for a run whose last step
    reads better on the other view-1 figures.
    """
    config = load_config(config_path, overrides)
    out_dir = Path(out or config.out or default_out_dir(config_path))
    data_json = out_dir / "data.json"
    meta = {"config": Path(config_path).name,
            "training_data": json.loads(data_json.read_text()) if data_json.is_file() else {},
            **({"distilled_from": config.teacher} if config.objective == "distill" else {}),
            **(metadata or {})}
    source = out_dir / (CHECKPOINT_NAME if last_step else BACKBONE_NAME)
    path = export_safetensors(source, export, meta)
    return {"file": str(path), "size_bytes": path.stat().st_size, "from": str(source)}

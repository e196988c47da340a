"""``slimface train CONFIG``: config + data folder -> trained backbone, one entry point for one
process and for ``torchrun``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable

import torch

from slimface.data.lfw import VIEW2_FILE, find_lfw_root, lfw_excluded_images
from slimface.data.roots import data_root, find_data_root
from slimface.errors import ConfigError, DataError
from slimface.train.config import TrainConfig, config_to_dict, load_config
from slimface.train.data import CropSet, load_crop_set, scan_identity_folders
from slimface.train.distributed import DistInfo, barrier, cleanup, init_distributed
from slimface.train.trainer import EvaluatorFactory, Trainer

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


def train_from_config(config_path: str | Path, data: str | None = None,
                      out: str | None = None, resume: bool = False,
                      overrides: Iterable[str] = (), progress: bool = True,
                      view1_check: EvaluatorFactory | None = None,
                      until_step: int = 0) -> dict[str, Any]:
    """Load, prepare, train; returns the summary dict (rank 0's view).

    ``view1_check`` builds the periodic health check that ``eval_every`` asks for
    (``slimface train`` passes :class:`slimface.eval.view1.LfwView1Evaluator`).
    """
    from slimface.models import create_backbone

    config = load_config(config_path, overrides)
    if config.eval_every and view1_check is None:
        raise ConfigError(f"eval_every={config.eval_every} needs a view-1 check: pass "
                          "view1_check=slimface.eval.view1.LfwView1Evaluator, or set "
                          "eval_every=0")
    if config.objective == "distill":
        return distill_from_config(config, config_path, data, out, resume, progress,
                                   view1_check, until_step)
    info = init_distributed()
    torch.set_num_threads(config.threads)
    out_dir = Path(out or config.out or default_out_dir(config_path))
    folder, root = resolve_train_folder(config, data)
    probe = create_backbone(config.backbone, **config.backbone_kwargs)
    template = config.template or probe.template
    crop_set = prepare_data(config, folder, template, info, progress,
                            exclude=lfw_pair_images_under(root))
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
    try:
        trainer = Trainer(config, crop_set, out_dir, resume=resume, evaluator=evaluator,
                          progress=progress, info=info)
        summary = trainer.fit()
        if evaluator is not None and info.is_main and "lfw_view1_acc" not in summary:
            summary.update(evaluator(trainer.backbone))
    finally:
        cleanup(info)
    return {"config": str(config_path), "backbone": config.backbone, "head": config.head,
            "world_size": info.world_size, **summary}


def distill_from_config(config: TrainConfig, config_path: str | Path, data: str | None,
                        out: str | None, resume: bool, progress: bool,
                        view1_check: EvaluatorFactory | None = None,
                        until_step: int = 0) -> dict[str, Any]:
    """The ``distill`` objective: function matching against a live teacher (one process)."""
    from slimface.train.function_matching import FunctionMatchingTrainer, training_canvases
    from slimface.train.teacher import load_teacher

    torch.set_num_threads(config.threads)
    out_dir = Path(out or config.out or default_out_dir(config_path))
    root = data_root(data)
    teacher = load_teacher(config.teacher, config.teacher_runtime, threads=config.threads)
    canvas, info = training_canvases(root, tuple(config.sources), teacher.template,
                                     config.crop_pad, config.detector, progress)
    log.info("distill data: %s", info)
    evaluator = None
    if config.eval_every and view1_check is not None:
        evaluator = view1_check(root, teacher.template, config.detector,
                                config.eval_batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
    (out_dir / "data.json").write_text(json.dumps(info, indent=2) + "\n")
    trainer = FunctionMatchingTrainer(config, canvas, teacher, out_dir, resume=resume,
                                      evaluator=evaluator, progress=progress)
    summary = trainer.fit(until_step=until_step or config.max_steps)
    return {"config": str(config_path), "backbone": config.backbone, "objective": "distill",
            "teacher": teacher.name, "out": str(out_dir), **summary}

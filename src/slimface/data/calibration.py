"""Calibration sets: the face images that tune a compressed model (PQ error correction and
codebook fine-tuning, int8 activation ranges). CelebA by default; never an LFW pair image
(:func:`slimface.data.lfw.refuse_lfw_pair_images` checks every list)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from slimface.data.lfw import refuse_lfw_pair_images
from slimface.data.roots import data_root as resolve_data_root
from slimface.errors import DataError
from slimface.io.image import IMAGE_EXTENSIONS, image_files

log = logging.getLogger(__name__)

#: CelebA subset under the data root: no LFW person, tight crops of 89x109.
DEFAULT_CALIB_SUBDIR = "celeba_subset/img_align_celeba_89x109"


def default_calibration_folder(data_root: str | Path | None = None) -> Path:
    """``<data>/celeba_subset/img_align_celeba_89x109``."""
    return resolve_data_root(data_root) / DEFAULT_CALIB_SUBDIR


def calibration_images(folder: str | Path, n: int, *, seed: int | None = None, skip: int = 0,
                       data_root: str | Path | None = None,
                       purpose: str = "calibrate") -> list[Path]:
    """``n`` images of ``folder`` (searched recursively), never LFW pair images.

    Args:
        folder: image folder.
        n: how many images.
        seed: ``None`` spreads the images evenly over the sorted folder; a number takes a
            seeded random sample instead.
        skip: with ``seed``, leave out the first ``skip`` images of the sample (so two calls
            with the same seed give disjoint sets, e.g. calibration and parity crops).
        data_root: where to find LFW for the exclusion check (default: the data root).
        purpose: the verb used in error messages.

    Raises:
        DataError: the folder is missing or empty, or the chosen images include an LFW pair
            image (tuning on the benchmark would make its accuracy meaningless).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: calibration folder not found (pass --calib DIR; default "
                        f"<data>/{DEFAULT_CALIB_SUBDIR})")
    files = image_files(root)
    if not files:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) to {purpose} on")
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(files))
        files = [files[i] for i in order[skip:skip + n]]
    elif n < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]
    refuse_lfw_pair_images(files, data_root, purpose)
    return files


def calibration_paths(calib_dir: str | Path, n: int,
                      data_root: str | Path | None = None) -> list[Path]:
    """``n`` images spread evenly over ``calib_dir`` (sorted), never LFW pair images."""
    return calibration_images(calib_dir, n, data_root=data_root)


def calibration_crops(model: Any, calib_dir: str | Path, n: int = 1000,
                      data_root: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Aligned uint8 NHWC crops in ``model``'s template (cached by the align pipeline).

    Centre-crop fallbacks (no face found) are dropped: a misaligned chip would calibrate the
    layers on inputs the deployed model never sees.
    """
    from slimface.align.pipeline import align_paths

    paths = calibration_paths(calib_dir, n, data_root)
    batch = align_paths(paths, getattr(model, "template", "arcface112"),
                        detector=getattr(model, "detector", "retinaface"),
                        fallback_detector=getattr(model, "fallback_detector", None),
                        progress=progress)
    keep = np.array([s != "centre" for s in batch.status], dtype=bool)
    log.info("calibration: %d of %d images aligned (%d without a face dropped)",
             int(keep.sum()), len(paths), int((~keep).sum()))
    return batch.crops[keep]

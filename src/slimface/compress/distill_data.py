"""Training data for distillation: which images, aligned how, and the teacher's targets.

Sources (all under the data root; LFW *pair* images are never used, see
:func:`list_training_images`):

* ``utkface``: UTKFace_160, ~23k faces without identity labels (embedding distillation needs
  none; some LFW celebrities may appear in it with other photos);
* ``celeba``: the CelebA subset, 10k images labelled by CelebA identity;
* ``lfw_unpaired``: LFW people who appear in no pair of ``pairs.txt`` *nor* of the view-1
  files, so view-1 health checks stay honest too;
* ``att``: AT&T faces, 40 people x 10 grey images.

UTKFace, CelebA and AT&T crops are tight (the face fills the frame), so those images are padded
by replicating their borders before detection (a copy is written once to the cache); every
image is detected once, and the student's and the teacher's crops are warped from the same
landmarks. Images where no detector finds a face are dropped (a centre crop would be a
mis-aligned target). The teacher's embeddings of each crop and its mirror are computed once and
cached in ``cache_root()/"teacher"``.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from slimface.data.lfw import (LFW_PAIR_FILES, find_images_root, find_lfw_root,
                               lfw_excluded_images, lfw_pair_names, refuse_lfw_pair_images)
from slimface.errors import DataError
from slimface.io.paths import cache_root

from slimface.data.training import (SOURCES, TIGHT_SOURCES, UNLABELLED, ImageList,  # noqa: F401
                                    list_training_images, padded_copies)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- targets

@dataclass
class DistillSet:
    """Aligned student crops (padded canvas) and the teacher's embeddings of each image."""

    crops: np.ndarray            # (N, Hp, Wp, 3) uint8, student template padded by crop_pad
    teacher: np.ndarray          # (N, 2, D) float32: teacher embedding of image, of mirror
    labels: np.ndarray           # (N,) int64, UNLABELLED when none
    classes: list[str]
    images: ImageList
    crop_size: tuple[int, int]   # the student's input size (crops are cut from the canvas)
    dropped_no_face: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def teacher_cache_path(teacher_name: str, template: str, detector: str,
                       paths: Sequence[Path], mirror: bool) -> Path:
    keys = [teacher_name, template, detector, f"mirror={mirror}"]
    for p in paths:
        st = Path(p).stat()
        keys.append(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return cache_root() / "teacher" / f"{teacher_name}-{_digest(keys)}.npz"


_WORKER_SESSION: list = []


def _init_onnx_worker(path: str) -> None:
    from slimface.runtime.export import session

    _WORKER_SESSION.append(session(path, threads=1))


def _embed_chunk(job: tuple[np.ndarray, bool]) -> np.ndarray:
    """(n, 2, D) normalised embeddings of a chunk and (optionally) of its mirror."""
    from slimface.models.inference import l2_normalize
    from slimface.runtime.export import run_onnx

    crops, mirror = job
    sess = _WORKER_SESSION[0]
    e = l2_normalize(run_onnx(sess, crops, batch_size=32))
    ef = l2_normalize(run_onnx(sess, np.ascontiguousarray(crops[:, :, ::-1]), batch_size=32)
                      ) if mirror else e
    return np.stack([e, ef], axis=1)


def teacher_embeddings(teacher, crops: np.ndarray, cache: Path | None, mirror: bool = True,
                       chunk: int = 256, workers: int = 2, progress: bool = True) -> np.ndarray:
    """(N, 2, D) L2-normalised teacher embeddings of each crop and of its mirror (cached).

    Runs the teacher through ONNX Runtime (~3x faster than eager torch for the dlib ResNet
    here) in ``workers`` single-threaded processes: on a shared, oversubscribed CPU one
    thread per process avoids the thread-pool stalls that made 2-thread sessions ~5x slower.
    With ``mirror=False`` the mirror slot repeats the image's embedding (half the teacher
    time; the dlib teacher is nearly flip-invariant, cosine ~0.98 between the two).
    """
    from tqdm import tqdm

    from slimface.io.atomic import atomic_save
    from slimface.runtime.export import export_onnx

    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if z["emb"].shape[0] == len(crops):
                log.info("teacher embeddings from cache %s", cache)
                return z["emb"]
    onnx_path = cache_root() / "teacher" / f"{type(teacher).__name__}-{os.getpid()}.onnx"
    export_onnx(teacher, onnx_path)
    jobs = ((crops[i:i + chunk], mirror) for i in range(0, len(crops), chunk))
    try:
        with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_init_onnx_worker,
                                 initargs=(str(onnx_path),)) as pool:
            out = list(tqdm(pool.map(_embed_chunk, jobs), total=-(-len(crops) // chunk),
                            desc="teacher embeddings", disable=not progress, unit="chunk"))
    finally:
        onnx_path.unlink(missing_ok=True)
    emb = np.concatenate(out).astype(np.float32)
    if cache is not None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, emb=emb)

        atomic_save(cache, write)
    return emb


def build_distill_set(data_root: Path, sources: Iterable[str], student_template: str,
                      crop_pad: int, teacher_name: str = "dlib_resnet",
                      detector: str = "retinaface", pad_fraction: float = 0.25,
                      limit: int = 0, workers: int = 2, teacher_mirror: bool = True,
                      progress: bool = True) -> DistillSet:
    """List, pad, detect once, warp for student and teacher, embed with the teacher (cached)."""
    from slimface.align.pipeline import align_paths
    from slimface.align.templates import get_template
    from slimface.models import create_backbone

    images = list_training_images(data_root, sources)
    if limit:
        rng = np.random.default_rng(0)
        images = images.subset(sorted(rng.choice(len(images), min(limit, len(images)),
                                                 replace=False).tolist()))
    det_paths = padded_copies(images, pad_fraction, workers, progress)
    base = get_template(student_template)
    student = align_paths(det_paths, base.padded(crop_pad), detector=detector,
                          multi_face="largest", no_face="centre", workers=workers,
                          progress=progress)
    keep = [i for i, s in enumerate(student.status) if s != "centre"]
    teacher = create_backbone(teacher_name)
    tchips = align_paths([det_paths[i] for i in keep], teacher.template, detector=detector,
                         multi_face="largest", no_face="centre", workers=workers,
                         progress=progress)
    cache = teacher_cache_path(teacher_name, teacher.template, detector,
                               [det_paths[i] for i in keep], teacher_mirror)
    emb = teacher_embeddings(teacher, tchips.crops, cache, teacher_mirror, workers=workers,
                             progress=progress)
    kept = images.subset(keep)
    labels, classes = kept.labels()
    return DistillSet(crops=np.ascontiguousarray(student.crops[keep]), teacher=emb,
                      labels=labels, classes=classes, images=kept, crop_size=tuple(base.size),
                      dropped_no_face=len(images) - len(keep), counts=kept.counts())


def describe(ds: DistillSet) -> dict:
    """JSON-ready description of the training set (for logs, the README and model metadata)."""
    return {"images": len(ds.images), "per_source": ds.counts,
            "identities": len(ds.classes), "dropped_no_face": ds.dropped_no_face,
            "lfw_pair_images": 0,
            "note": "LFW people in no pair of pairs.txt/pairsDevTrain/pairsDevTest only"}


__all__ = ["SOURCES", "LFW_PAIR_FILES", "ImageList", "DistillSet", "list_training_images",
           "padded_copies", "build_distill_set", "teacher_embeddings", "describe",
           "lfw_excluded_images", "lfw_pair_names"]

"""Detect + align, for one image (:func:`align_image`) or a list of files (:func:`align_paths`).

Policies are explicit because each caller needs a different one:

* ``multi_face``: ``"largest"`` (batch crops for training), ``"central"`` (protocol images such
  as LFW, where the subject is centred: the face whose box centre is nearest the image
  centre), ``"error"`` (user-facing verify: :class:`~slimface.errors.MultipleFacesError`;
  faces with less than a quarter of the largest face's area are ignored so a small face in
  the background does not block a selfie).
* ``no_face``: ``"centre"`` (protocol images: crop where a centred face would be, status
  ``"centre"``, counted in :attr:`AlignedBatch.n_centre`) or ``"error"``
  (:class:`~slimface.errors.NoFaceError`).
* ``fallback_detector``: tried when the main detector finds nothing (status
  ``"fallback_detector"``), e.g. dlib HOG first for the dlib ResNet, RetinaFace after.

:func:`align_paths` detects in ``workers`` processes (each loads its own models, one thread
each) and keeps an on-disk cache (:mod:`slimface.align.cache`) so a second evaluation
neither detects nor decodes again.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from slimface import errors
from slimface.align.detect import Detector, Face, create_detector
from slimface.align.stages import stage
from slimface.align.templates import Template, get_template
from slimface.align.warp import centre_crop, warp_face
from slimface.io.image import load_image

MULTI_FACE_POLICIES = ("error", "largest", "central")
NO_FACE_POLICIES = ("error", "centre")
STATUSES = ("detected", "fallback_detector", "centre")
#: Faces smaller than this fraction of the largest do not count for ``multi_face="error"``.
MIN_RELATIVE_AREA = 0.25


@dataclass
class AlignedFace:
    """One aligned crop, the face it came from (None for a centre crop) and how it was found."""

    crop: np.ndarray
    face: Face | None
    status: str


@dataclass
class AlignedBatch:
    """Crops of many files in input order, with per-file status and detections."""

    crops: np.ndarray
    status: list[str]
    faces: list[Face | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    template: str = ""

    def __len__(self) -> int:
        return len(self.status)

    @property
    def n_centre(self) -> int:
        """Images where no detector found a face (centre-crop fallback)."""
        return self.status.count("centre")

    def counts(self) -> dict[str, int]:
        """``{"detected": n, "fallback_detector": n, "centre": n}``."""
        return {s: self.status.count(s) for s in STATUSES}


def _check_policy(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise errors.ConfigError(f"{name}={value!r} is not a valid policy "
                                 f"(choose from: {', '.join(allowed)})")


@lru_cache(maxsize=8)
def _cached_detector(name: str) -> Detector:
    return create_detector(name)


def resolve_detector(detector: str | Detector | None) -> Detector | None:
    """A detector instance from a name (built once per process) or an instance."""
    if detector is None or isinstance(detector, Detector):
        return detector
    return _cached_detector(detector)


def select_face(faces: list[Face], image_shape: tuple[int, ...], multi_face: str,
                path: str | os.PathLike[str] | None = None) -> Face:
    """Pick one of several faces according to ``multi_face`` (see module docstring)."""
    if len(faces) == 1:
        return faces[0]
    if multi_face == "largest":
        return max(faces, key=lambda f: f.area)
    if multi_face == "central":
        centre = np.array([image_shape[1], image_shape[0]], dtype=np.float64) / 2
        return min(faces, key=lambda f: float(np.sum((f.centre - centre) ** 2)))
    largest = max(f.area for f in faces)
    big = [f for f in faces if f.area >= MIN_RELATIVE_AREA * largest]
    if len(big) > 1:
        raise errors.MultipleFacesError(
            path, f"{len(big)} faces found; use a photo with one face, or pass "
                  f"multi_face='largest' or 'central'")
    return max(faces, key=lambda f: f.area)


def detect_one(image: np.ndarray, detector: Detector, fallback: Detector | None,
               multi_face: str, path: Any = None) -> tuple[Face | None, str]:
    """The chosen face and its status; ``(None, "centre")`` when no detector found one."""
    for det, status in ((detector, "detected"), (fallback, "fallback_detector")):
        if det is None:
            continue
        faces = det.detect(image)
        if faces:
            return select_face(faces, image.shape, multi_face, path), status
    return None, "centre"


def crop_for(image: np.ndarray, face: Face | None, template: Template) -> np.ndarray:
    """Warp ``face`` onto ``template``; a centre crop when ``face`` is None."""
    if face is None:
        return centre_crop(image, template)
    return warp_face(image, face.landmarks, template, kind=face.kind)


def align_image(image_or_path: np.ndarray | str | os.PathLike[str],
                template: str | Template = "arcface112",
                detector: str | Detector = "retinaface", multi_face: str = "error",
                no_face: str = "error",
                fallback_detector: str | Detector | None = None) -> AlignedFace:
    """Detect, choose and align the face of one image (an RGB uint8 array or a file path).

    Raises:
        NoFaceError: no face and ``no_face="error"``.
        MultipleFacesError: several faces and ``multi_face="error"``.
        ImageError: the file cannot be read (see :func:`slimface.io.image.load_image`).
    """
    _check_policy("multi_face", multi_face, MULTI_FACE_POLICIES)
    _check_policy("no_face", no_face, NO_FACE_POLICIES)
    path = None
    if isinstance(image_or_path, np.ndarray):
        image = image_or_path
    else:
        path = image_or_path
        with stage("decode"):
            image = load_image(path)
    t = get_template(template)
    with stage("detect"):
        face, status = detect_one(image, resolve_detector(detector),
                                  resolve_detector(fallback_detector), multi_face, path)
    if face is None and no_face == "error":
        raise errors.NoFaceError(path, "no face found (tried "
                                       f"{_chain_names(detector, fallback_detector)})")
    with stage("align"):
        crop = crop_for(image, face, t)
    return AlignedFace(crop=crop, face=face, status=status)


def _chain_names(detector: str | Detector, fallback: str | Detector | None) -> str:
    names = [d if isinstance(d, str) else d.name for d in (detector, fallback) if d is not None]
    return " then ".join(names)


# --------------------------------------------------------------------------- batch alignment

@dataclass(frozen=True)
class _Job:
    """What a worker needs (picklable: detectors load their models lazily, per process)."""

    template: Template
    detector: Detector | None
    fallback: Detector | None
    multi_face: str


_WORKER: dict[str, Any] = {}


def _init_worker(job: _Job, forked: bool = True) -> None:
    """Per-process setup: one thread per worker, models loaded once.

    Workers are spawned, not forked: a forked child deadlocks in onnxruntime once the parent
    has run a session (measured: pool hung at 0% CPU). ``SLIMFACE_MP_START=fork`` overrides;
    model caches are then dropped in the child."""
    import cv2

    from slimface.align.detect import dlib_hog, retinaface

    if forked:
        cv2.setNumThreads(1)
        retinaface._session.cache_clear()
        dlib_hog._models.cache_clear()
        _cached_detector.cache_clear()
    _WORKER["job"] = job


def _work(task: tuple[int, str, Face | None, bool]) -> tuple:
    """Align one file; returns ``(index, status, face, crop)`` or ``(index, "error", cls, msg)``.

    ImageError subclasses take (path, problem) and do not survive pickling, so errors travel
    back as data and are re-raised in the parent."""
    index, path, known_face, known = task
    job: _Job = _WORKER["job"]
    try:
        image = load_image(path)
        if known:
            face, status = known_face, ("centre" if known_face is None else "known")
        else:
            face, status = detect_one(image, job.detector, job.fallback, job.multi_face, path)
        return index, status, face, crop_for(image, face, job.template)
    except errors.ImageError as exc:
        return index, "error", type(exc).__name__, exc.path, exc.problem


def _raise_worker_error(result: tuple) -> None:
    _, _, cls_name, path, problem = result
    raise getattr(errors, cls_name)(path, problem)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start spawned workers without re-running the caller's script.

    A spawned child normally re-imports ``__main__`` from its file, which re-runs any script
    that lacks an ``if __name__ == "__main__":`` guard (and slows every start by the script's
    imports). The workers need nothing from ``__main__`` (their code lives in this module), so
    ``__file__``/``__spec__`` are hidden from multiprocessing while the pool starts."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _run_jobs(job: _Job, tasks: list[tuple], workers: int, progress: bool,
              desc: str) -> Iterable[tuple]:
    """Yield worker results (any order), serially or in a process pool."""
    from tqdm import tqdm

    if not tasks:
        return
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress or not tasks,
               dynamic_ncols=True, leave=False)
    workers = max(1, min(workers, math.ceil(len(tasks) / 32)))
    try:
        if workers == 1:
            _init_worker(job, forked=False)
            for task in tasks:
                yield _work(task)
                bar.update()
            return
        ctx = mp.get_context(os.environ.get("SLIMFACE_MP_START", "spawn"))
        with _main_module_hidden():
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(job,))
        with pool:
            for result in pool.imap_unordered(_work, tasks, chunksize=8):
                yield result
                bar.update()
    finally:
        bar.close()


def align_paths(paths: Sequence[str | os.PathLike[str]], template: str | Template,
                detector: str | Detector = "retinaface",
                fallback_detector: str | Detector | None = None, multi_face: str = "largest",
                no_face: str = "centre", cache: bool = True, workers: int = 2,
                progress: bool = True) -> AlignedBatch:
    """Align many files; crops come back in input order as one (N, H, W, 3) uint8 array.

    With ``cache=True`` detections and crops are stored under
    ``cache_root()/"crops"`` keyed by (absolute path, size, mtime, detector chain and
    settings, multi-face policy, template geometry); files already there are neither
    detected nor decoded again. A file that cannot be read raises its ImageError.
    """
    from slimface.align.cache import CropCache, FileKey, chain_signature

    _check_policy("multi_face", multi_face, ("largest", "central", "error"))
    _check_policy("no_face", no_face, NO_FACE_POLICIES)
    t = get_template(template)
    det, fb = resolve_detector(detector), resolve_detector(fallback_detector)
    keys = [FileKey.of(p) for p in paths]
    n = len(keys)
    crops = np.zeros((n, *t.size, 3), dtype=np.uint8)
    status: list[str] = [""] * n
    faces: list[Face | None] = [None] * n
    chain = chain_signature(det, fb, multi_face)
    store = CropCache.open(chain, t) if cache else None

    todo = list(range(n))
    if store is not None:
        todo = store.fill(keys, crops, status, faces)
    unique: dict[FileKey, list[int]] = {}
    for i in todo:
        unique.setdefault(keys[i], []).append(i)
    known = store.detections([k for k in unique]) if store is not None else {}
    tasks = []
    for key, idx in unique.items():
        hit = known.get(key)
        tasks.append((idx[0], key.path, hit[1] if hit else None, hit is not None))
    job = _Job(t, det, fb, multi_face)
    new: list[tuple[FileKey, str, Face | None, np.ndarray]] = []
    try:
        for result in _run_jobs(job, tasks, workers, progress, f"align {t.name}"):
            if result[1] == "error":
                _raise_worker_error(result)
            first, st, face, crop = result
            key = keys[first]
            st = known[key][0] if st == "known" else st
            for i in unique[key]:
                crops[i], status[i], faces[i] = crop, st, face
            new.append((key, st, face, crop))
            if store is not None and len(new) >= store.chunk_rows:
                store.add(new)
                new = []
    finally:
        if store is not None:
            store.add(new)
            store.close()
    if no_face == "error" and "centre" in status:
        bad = [keys[i].path for i, s in enumerate(status) if s == "centre"]
        more = f" ({len(bad) - 1} more files without a face)" if len(bad) > 1 else ""
        raise errors.NoFaceError(bad[0], f"no face found{more}")
    return AlignedBatch(crops=crops, status=status, faces=faces,
                        paths=[k.path for k in keys], template=t.name)

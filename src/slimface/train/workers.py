"""Data workers: processes that augment the next steps' batches while the loop trains.

On the CPU a worker also runs the teacher on the batch it made and hands back its targets
instead of the teacher's views: the teacher is about half of a step there, so with one
worker the loop's core runs only the student while the other core prepares the next step
(a spawned worker gets its own copy of the teacher; LiteRT's interpreter is made again in
it). The targets are the ones the loop would compute: same views, same runtime, same thread
count (``TrainConfig.threads`` applies to each process).

A step's views are a pure function of ``(seed, step, indices)`` (:class:`ViewMaker`), so a
batch made ahead in a worker is bit for bit the batch the loop would make itself. The
workers are *spawned*, not forked: a forked child inherits the locks of the parent's thread
pools (OpenCV's, OpenMP's) in whatever state they were, and can wait on one forever. They
read the canvases from ``.npy`` files memory-mapped from a temporary folder (the page cache
holds one copy for all of them; POSIX shared memory is often a few MiB in containers).
"""
from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from slimface.train.augment import AugmentConfig, augment_views
from slimface.train.distributed import DistInfo

#: Per teacher template other than the student's: its canvases, the student-canvas -> its
#: canvas maps, and the view size on it.
Others = dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]


@dataclass(frozen=True)
class ViewMaker:
    """The augmented views of a step: the student's, and one per teacher template.

    Attributes:
        canvas: ``(N, H, W, 3)`` uint8 canvases on the student's template.
        others: see :data:`Others`.
        out_hw: the student's input size.
        augment: the augmentation settings.
        seed: the run's seed.
        shared_template: the template on which a teacher sees the student's very pixels
            (``""``: none does).
    """

    canvas: np.ndarray
    others: Others
    out_hw: tuple[int, int]
    augment: AugmentConfig
    seed: int
    shared_template: str = ""

    def views(self, idx: np.ndarray, step: int, info: DistInfo
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(student views, teacher views per template) of ``step``: one draw for all."""
        key = [self.seed, step] + ([info.rank, info.world_size] if info.enabled else [])
        rng = np.random.default_rng(key)
        others = {name: (canvas[idx], to[idx], hw) for name, (canvas, to, hw)
                  in self.others.items()}
        views, teacher_views = augment_views(self.canvas[idx], self.out_hw, others, rng,
                                             self.augment)
        if self.shared_template:
            teacher_views[self.shared_template] = views
        return views, teacher_views


#: What a worker hands back for a step: the student's views, the teacher's views (empty
#: when the worker ran the teacher) and the teacher's targets (None when it did not).
Made = tuple[np.ndarray, dict[str, np.ndarray], "np.ndarray | None"]


class ViewWorkers:
    """``n`` spawned processes that make :class:`ViewMaker` views ahead of the loop and,
    given a ``teacher``, its targets for them."""

    def __init__(self, maker: ViewMaker, n: int, teacher: Any = None, threads: int = 1):
        self._folder = Path(tempfile.mkdtemp(prefix="slimface-views-"))
        try:
            spec = replace(maker, canvas=self._save("canvas", maker.canvas),
                           others={name: (self._save(f"other{k}", canvas), to, hw)
                                   for k, (name, (canvas, to, hw))
                                   in enumerate(maker.others.items())})
            self._pool = mp.get_context("spawn").Pool(n, initializer=_start_worker,
                                                      initargs=(spec, _packed(teacher),
                                                                threads))
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self._pending: dict[int, Any] = {}

    def _save(self, name: str, array: np.ndarray) -> Path:
        path = self._folder / f"{name}.npy"
        np.save(path, array)
        return path

    def submit(self, step: int, idx: np.ndarray, info: DistInfo) -> None:
        """Start making ``step``'s views."""
        self._pending[step] = self._pool.apply_async(_worker_views, (idx, step, info))

    def take(self, step: int) -> Made | None:
        """``step``'s views if they were submitted (waiting for them), else None; views of
        earlier steps still pending are dropped."""
        for stale in [s for s in self._pending if s < step]:
            del self._pending[stale]
        pending = self._pending.pop(step, None)
        return None if pending is None else pending.get()

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
        shutil.rmtree(self._folder, ignore_errors=True)


_MAKER: ViewMaker | None = None
_TEACHER: Any = None
#: Why this worker could not start (its teacher could not be made): raised with each batch,
#: so the loop fails with it instead of waiting for a pool that keeps restarting workers.
_START_ERROR: BaseException | None = None


def _packed(teacher: Any) -> bytes | None:
    """The teacher as bytes: unpacked inside :func:`_start_worker`, where a failure (a moved
    model file) can be kept and reported instead of killing the worker at start-up."""
    import pickle

    return None if teacher is None else pickle.dumps(teacher)


def _start_worker(spec: ViewMaker, teacher: bytes | None = None, threads: int = 1) -> None:
    """Map the canvases (their paths stand in ``spec``'s arrays); OpenCV on one thread, torch
    on the run's ``threads`` (a torch teacher then computes as the loop's would)."""
    import cv2
    import torch

    global _MAKER, _TEACHER, _START_ERROR
    cv2.setNumThreads(1)
    torch.set_num_threads(threads)
    try:
        import pickle

        _TEACHER = None if teacher is None else pickle.loads(teacher)
    except Exception as exc:  # noqa: BLE001 - handed back with the first batch
        _START_ERROR = exc
    _MAKER = replace(spec, canvas=np.load(spec.canvas, mmap_mode="r"),
                     others={name: (np.load(path, mmap_mode="r"), to, hw)
                             for name, (path, to, hw) in spec.others.items()})


def _worker_views(idx: np.ndarray, step: int, info: DistInfo) -> Made:
    """One step's views and, with a teacher, its targets (see :data:`Made`)."""
    if _START_ERROR is not None:
        raise _START_ERROR
    views, teacher_views = _MAKER.views(idx, step, info)
    if _TEACHER is None:
        return views, teacher_views, None
    from slimface.train.teacher import embed_views

    return views, {}, embed_views(_TEACHER, teacher_views)

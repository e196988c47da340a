"""Data workers: processes that augment the next steps' batches while the loop trains.

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


class ViewWorkers:
    """``n`` spawned processes that make :class:`ViewMaker` views ahead of the loop."""

    def __init__(self, maker: ViewMaker, n: int):
        self._folder = Path(tempfile.mkdtemp(prefix="slimface-views-"))
        try:
            spec = replace(maker, canvas=self._save("canvas", maker.canvas),
                           others={name: (self._save(f"other{k}", canvas), to, hw)
                                   for k, (name, (canvas, to, hw))
                                   in enumerate(maker.others.items())})
            self._pool = mp.get_context("spawn").Pool(n, initializer=_start_worker,
                                                      initargs=(spec,))
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

    def take(self, step: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
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


def _start_worker(spec: ViewMaker) -> None:
    """Map the canvases (their paths stand in ``spec``'s arrays); one thread per worker."""
    import cv2

    global _MAKER
    cv2.setNumThreads(1)
    _MAKER = replace(spec, canvas=np.load(spec.canvas, mmap_mode="r"),
                     others={name: (np.load(path, mmap_mode="r"), to, hw)
                             for name, (path, to, hw) in spec.others.items()})


def _worker_views(idx: np.ndarray, step: int, info: DistInfo
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _MAKER.views(idx, step, info)

"""Where the time of one photo goes: decode, detect, align, embed.

Code on a photo's path marks its steps with ``with stage("detect"): ...``. That is a no-op
unless the caller opened a :func:`record_stages` block in the same thread (the record lives
in a :class:`contextvars.ContextVar`), which then adds up the seconds of each step.
``slimface bench photos`` uses it to split the public API's own path into stages, with no
hooks and no copy of the pipeline.

Nested steps count once: a decode that happens inside ``align`` (a finer level decoded for
a small face) is decode time, and ``align`` gets only the rest.
"""
from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Callable, Iterator

#: The steps of one photo, in pipeline order (tables list them in this order).
STAGES = ("decode", "detect", "align", "embed")


class StageTimes:
    """Seconds per step (exclusive of nested steps), read from ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [start, seconds spent in nested steps]

    def _enter(self) -> None:
        self._stack.append([self.clock(), 0.0])

    def _exit(self, name: str) -> None:
        start, nested = self._stack.pop()
        elapsed = self.clock() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested
        if self._stack:
            self._stack[-1][1] += elapsed

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


_CURRENT: ContextVar[StageTimes | None] = ContextVar("slimface_stage_times", default=None)


@contextlib.contextmanager
def record_stages(clock: Callable[[], float] = time.perf_counter) -> Iterator[StageTimes]:
    """Collect the seconds of every :func:`stage` run inside the block (this thread only)."""
    times = StageTimes(clock)
    token = _CURRENT.set(times)
    try:
        yield times
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as step ``name`` when a :func:`record_stages` block is open."""
    times = _CURRENT.get()
    if times is None:
        yield
        return
    times._enter()
    try:
        yield
    finally:
        times._exit(name)

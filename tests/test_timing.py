"""Block-alternating timing: every function gets the same number of timed calls, in blocks."""
from __future__ import annotations

from slimface.runtime.timing import time_in_blocks


def test_time_in_blocks_alternates_blocks_and_times_every_call():
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = time_in_blocks(fns, repeats=6, rounds=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    assert all(t >= 0 for v in times.values() for t in v)
    # warm-up a, b; then per round: a (untimed) + 2 timed a, then the same for b
    assert calls[:2] == ["a", "b"]
    assert calls[2:] == (["a"] * 3 + ["b"] * 3) * 3


def test_time_in_blocks_never_has_more_rounds_than_repeats():
    times = time_in_blocks({"a": lambda: None}, repeats=2, rounds=5, warmup=0)
    assert len(times["a"]) == 2

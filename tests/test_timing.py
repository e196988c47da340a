"""Block-alternating timing: every function gets the same number of timed calls, in blocks."""
from __future__ import annotations

from slimface.runtime import timing
from slimface.runtime.timing import time_in_blocks


def test_time_in_blocks_alternates_blocks_and_times_every_call(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []

    def call(name: str, seconds: float):
        def fn() -> None:
            calls.append(name)
            clock[0] += seconds
        return fn

    times = time_in_blocks({"a": call("a", 0.002), "b": call("b", 0.005)}, repeats=6,
                           rounds=3, warmup=1)
    assert {k: [round(t, 9) for t in v] for k, v in times.items()} == {"a": [2.0] * 6,
                                                                      "b": [5.0] * 6}
    # warm-up a, b; then per round: a (untimed) + 2 timed a, then the same for b
    assert calls[:2] == ["a", "b"]
    assert calls[2:] == (["a"] * 3 + ["b"] * 3) * 3


def test_time_in_blocks_never_has_more_rounds_than_repeats():
    times = time_in_blocks({"a": lambda: None}, repeats=2, rounds=5, warmup=0)
    assert len(times["a"]) == 2

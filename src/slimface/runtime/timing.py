"""Fair wall-clock timing of several models in one run: alternating blocks of calls.

Speed in this project is always a ratio against a baseline timed in the same run, so both
sides must see the same machine. Alternating *call by call* (a, b, a, b) looks fairest but is
not: ONNX Runtime and OpenMP keep a pool's idle threads spinning for a while after each call,
and those threads steal the cores of the next model's call. Measured on this 2-core CPU (dlib
teacher fp32 vs int8, ONNX Runtime, 2 threads, batch 32, `python benchmarks/ort_spin.py`):
call-by-call alternation with spinning read 1.86x with both sides slowed; blocks, or spinning
off, 2.2-2.4x. The benchmark commands therefore time in blocks *and* create their ONNX Runtime
sessions with spinning off (``export.session(spin=False)``): a pool's spin-down can outlast a
whole batch-1 call. Cost of that choice: at batch 1 each call then pays the threads' wake-up,
which weighs more on the faster model (int8 vs fp32 at batch 1: 1.8-2.3x without spinning
across runs, 2.7-2.9x in blocks with spinning).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping


def cpu_info() -> dict[str, Any]:
    """What a speed measurement ran on: the CPU model and the instruction set of the binary
    kernels in use (``SLIMFACE_KERNEL`` or ``kernel.set_isa`` may force a lesser one than the
    CPU has), for every benchmark's JSON and table title.

    Keys: ``cpu`` (model name), ``cores``, ``isa`` (``avx512``, ``avx2``, ``portable`` or
    ``numpy``), ``best_isa`` (the best the CPU and build support), ``kernel`` (``c:<isa>`` or
    ``py:numpy``), ``layer_path`` (``auto``, ``kernel`` or ``torch``: how deployed binary
    layers pick their path), ``flags`` (the CPU's vector extensions that matter here) and
    ``label``, one line for a table title.
    """
    from slimface._provenance import describe_cpu
    from slimface.runtime import kernel

    cpu = describe_cpu()
    impl = kernel.implementation()
    isa, best = impl.split(":", 1)[1], kernel.best_isa()
    flags = [k for k in ("avx2", "avx512f", "avx512_vpopcntdq", "avx512_vnni", "avx_vnni")
             if cpu.get(k)]
    forced = f" (forced; CPU has {best})" if isa != best else ""
    return {"cpu": cpu["cpu"], "cores": cpu["cores"], "isa": isa, "best_isa": best,
            "kernel": impl, "layer_path": kernel.layer_path(), "flags": flags,
            "label": f"{cpu['cpu']}, binary kernels {isa}{forced}"}


def time_in_blocks(fns: Mapping[str, Callable[[], Any]], repeats: int, rounds: int = 5,
                   warmup: int = 3) -> dict[str, list[float]]:
    """Milliseconds of ``repeats`` calls of each function, in ``rounds`` alternating blocks.

    Each block starts with one untimed call that absorbs the previous pool's spin-down, so
    every function gets ``ceil(repeats / rounds) * rounds`` timed calls.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rounds = max(1, min(rounds, repeats))
    per_block = max(1, -(-repeats // rounds))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            fn()
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - start) * 1e3)
    return times

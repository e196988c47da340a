"""``slimface bench models``: size, multiply-adds and CPU latency of several models, one run.

Every model is timed in the same process, runtime, precision (fp32) and thread count, at each
batch size, in alternating blocks (a a a, b b b, a a a ...) so a change of machine load hits all
of them alike without one runtime's spinning threads slowing the next (``runtime/timing.py``).
The first model is the baseline: each row gets ``speedup_b<N>`` (baseline ms / model ms) and
``size_ratio`` (baseline bytes / model bytes). Runtimes: ONNX Runtime (the model exported to
ONNX with dynamic batch) and eager torch (``channels_last``).

Both the median and the minimum per-face time are reported: on a shared, oversubscribed CPU
the minimum is the better estimate of the model's own cost, the median of what a user sees.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from slimface.cli._common import (Several, add_json_arg, add_models_arg, emit_result,
                                   format_table, hidden_alias, positive_int)

RUNTIMES: tuple[str, ...] = ("onnx", "torch")


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="size, MACs and latency of models vs a baseline",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    models = add_models_arg(p, default=["dlib-resnet", "slimface-mobile"],
                            help="registry names or model files, the first is the baseline "
                                 "(default dlib-resnet slimface-mobile)")
    hidden_alias(p, models, "--models")
    runtime = p.add_argument("--runtime", dest="runtimes", action=Several, choices=RUNTIMES,
                             default=list(RUNTIMES), metavar="RUNTIME",
                             help=f"runtimes to time: {' '.join(RUNTIMES)} (default both)")
    hidden_alias(p, runtime, "--runtimes")
    batch = p.add_argument("--batch", action=Several, type=positive_int, default=[1, 32],
                           help="batch sizes (default 1 32)")
    hidden_alias(p, batch, "--batches")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every runtime")
    p.add_argument("--repeats", type=int, default=50,
                   help="timed runs per model and batch size (batch >1 uses repeats/10, >=5)")
    add_json_arg(p)
    p.set_defaults(func=run)


def weight_bytes(model: Any) -> int:
    """fp32 bytes of every parameter and buffer (what a plain safetensors file holds)."""
    return int(sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point()))


def describe_model(spec: str) -> tuple[Any, dict[str, Any]]:
    from slimface.models.profile import count_macs, count_params
    from slimface.runtime.loader import load_model

    model = load_model(spec)
    hw = tuple(int(v) for v in model.input_size)
    info = {"model": spec, "params": count_params(model), "macs": count_macs(model, hw),
            "fp32_bytes": weight_bytes(model), "input_size": list(hw),
            "template": getattr(model, "template", None)}
    shipped = getattr(model, "pretrained_meta", None)
    if shipped is not None:
        info["weights_file_bytes"] = _shipped_file_bytes(spec)
    return model, info


def _shipped_file_bytes(spec: str) -> int | None:
    """Bytes of a pretrained model's file (its card in ``slimface.models.pretrained``)."""
    from slimface.models.pretrained import find_card

    card = find_card(spec)
    path = card.path() if card is not None else None
    return path.stat().st_size if path else None


def _onnx_runner(model: Any, workdir: Path, name: str, threads: int) -> Callable[[np.ndarray], Any]:
    from slimface.runtime.export import export_onnx, session

    path = export_onnx(model, workdir / f"{name}.onnx")
    sess = session(path, threads=threads, spin=False)  # see runtime/timing.py
    inp = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {inp: x}), path.stat().st_size  # type: ignore[return-value]


def _torch_runner(model: Any) -> Callable[[np.ndarray], Any]:
    import torch

    m = model.eval().to(memory_format=torch.channels_last)

    def run_one(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return m(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    return run_one


def interleaved_ms(runners: dict[str, Callable[[np.ndarray], Any]],
                   sizes: dict[str, tuple[int, int]], batch: int, repeats: int,
                   warmup: int = 3) -> dict[str, dict[str, float]]:
    """Per-face median/min ms of each runner at ``batch``, timed in alternating blocks
    (:func:`slimface.runtime.timing.time_in_blocks`: fair under load, no spin cross-talk)."""
    from slimface.runtime.timing import time_in_blocks

    rng = np.random.default_rng(0)
    xs = {k: rng.uniform(0, 255, (batch, 3, *sizes[k])).astype(np.float32) for k in runners}
    fns = {k: (lambda fn=fn, x=xs[k]: fn(x)) for k, fn in runners.items()}
    times = time_in_blocks(fns, repeats, warmup=warmup)
    return {k: {"median_ms": float(np.median(v)) / batch, "min_ms": float(np.min(v)) / batch,
                "repeats": len(v)} for k, v in times.items()}


def bench(specs: Sequence[str], runtimes: Sequence[str], batches: Sequence[int], threads: int,
          repeats: int) -> dict[str, Any]:
    import torch

    from slimface._provenance import describe_cpu

    torch.set_num_threads(threads)
    models, rows = {}, []
    for spec in specs:
        models[spec], info = describe_model(spec)
        rows.append(info)
    sizes = {s: tuple(m.input_size) for s, m in models.items()}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rt in runtimes:
            runners = {}
            for i, (spec, model) in enumerate(models.items()):
                if rt == "onnx":
                    runners[spec], onnx_bytes = _onnx_runner(model, Path(tmp), f"m{i}", threads)
                    rows[i]["onnx_bytes"] = onnx_bytes
                else:
                    runners[spec] = _torch_runner(model)
            for b in batches:
                reps = repeats if b == 1 else max(5, repeats // 10)
                results[f"{rt}_b{b}"] = interleaved_ms(runners, sizes, b, reps)
    base = specs[0]
    for row in rows:
        spec = row["model"]
        for key, per_model in results.items():
            row[f"{key}_median_ms"] = per_model[spec]["median_ms"]
            row[f"{key}_min_ms"] = per_model[spec]["min_ms"]
            row[f"speedup_{key}"] = per_model[base]["median_ms"] / per_model[spec]["median_ms"]
            row[f"speedup_{key}_min"] = per_model[base]["min_ms"] / per_model[spec]["min_ms"]
        row["size_ratio"] = rows[0]["fp32_bytes"] / row["fp32_bytes"]
        row["macs_ratio"] = rows[0]["macs"] / row["macs"]
    return {"baseline": base, "threads": threads, "precision": "fp32",
            "runtimes": list(runtimes), "batches": list(batches), "cpu": describe_cpu(),
            "rows": rows}


def run(args: argparse.Namespace) -> int:
    out = bench(args.models, args.runtimes, args.batch, args.threads, args.repeats)
    cols = ["model", "params", "macs", "fp32_bytes", "size_ratio"]
    for rt in args.runtimes:
        for b in args.batch:
            cols += [f"{rt}_b{b}_median_ms", f"{rt}_b{b}_min_ms", f"speedup_{rt}_b{b}"]
    emit_result(args.json, out, format_table(
        out["rows"], [c for c in cols if c in out["rows"][0]],
        title=f"models vs {out['baseline']} (fp32, {args.threads} threads, ms per face)"))
    return 0

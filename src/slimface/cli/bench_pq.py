"""``slimface bench pq``: lookup-table (PQ) inference against fp32, measured in the same run.

    slimface bench pq --model dlib-resnet --d 4 --k 32 --json
    slimface bench pq --model dlib_pq.slim --json

For every PQ layer, the layer's real batch-1 input is captured once; then the LUT layer and
an ``nn.Conv2d`` / ``nn.Linear`` with the same (reconstructed) weight in fp32 are timed in
alternation (so both see the same machine load) and the median is reported. The whole
model is timed the same way (PQ in LUT mode vs. the float model with the same weights).
A float ``--model`` (registry name or .pt) is product-quantized with plain k-means first
(``--d``, ``--k``); a PQ ``.slim`` file is timed as it is. Speed does not depend on how the
codewords were fitted.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any, Callable

from slimface._provenance import git_commit
from slimface.cli._common import (add_json_arg, add_model_arg, emit_result, format_table,
                                   hidden_alias)


def register(sub: Any) -> None:
    p = sub.add_parser("pq", help="PQ lookup-table inference vs fp32 (per layer + model)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = add_model_arg(p, default="dlib-resnet",
                          help="a PQ .slim file, timed as it is, or a float model (registry "
                               "name or .pt) quantized with k-means first; default dlib-resnet")
    hidden_alias(p, model, "--pq")
    p.add_argument("--d", type=int, default=4,
                   help="subspace size when quantizing a float --model")
    p.add_argument("--k", type=int, default=32,
                   help="codewords when quantizing a float --model")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per variant")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_json_arg(p)
    p.set_defaults(func=run)


def _time_pair(a: Callable[[], Any], b: Callable[[], Any],
               repeats: int) -> dict[str, float]:
    """Median and minimum wall time (ms) of ``a`` and ``b``, called alternately after a
    warm-up, so both see the same machine load (the minimum is the figure least disturbed
    by other processes on a shared CPU)."""
    for _ in range(3):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return {"fp32_ms": 1e3 * statistics.median(ta), "lut_ms": 1e3 * statistics.median(tb),
            "fp32_min_ms": 1e3 * min(ta), "lut_min_ms": 1e3 * min(tb)}


def float_twin(model: Any) -> Any:
    """A copy of ``model`` with every PQ layer replaced by nn.Conv2d/nn.Linear (same weights)."""
    from slimface.runtime.pq import PQ_MODES, plain_layers

    twin = copy.deepcopy(model)
    plain_layers(twin, PQ_MODES)
    return twin.eval()


def _pq_model(args: argparse.Namespace) -> Any:
    """``--model`` as is when it holds PQ layers, else its k-means PQ (``--d``, ``--k``)."""
    from slimface.runtime.loader import load_model
    from slimface.runtime.pq import PQConv2d, PQLinear

    model = load_model(args.model, pq_layers="pq")
    if any(isinstance(m, (PQConv2d, PQLinear)) for m in model.modules()):
        return model
    from slimface.compress.pq import PQConfig, quantize_pq

    quant, _ = quantize_pq(model, PQConfig(d=args.d, k=args.k), error_correction=False)
    return quant


def layer_rows(quant: Any, twin: Any, x: Any, repeats: int) -> list[dict[str, Any]]:
    """Per PQ layer: shape, fp32 (the twin's nn module) and LUT medians at the real input."""
    import torch

    from slimface.compress.pq import layer_inputs
    from slimface.runtime.pq import PQConv2d, PQLinear

    rows = []
    for path, mod in quant.named_modules():
        if not isinstance(mod, (PQConv2d, PQLinear)):
            continue
        inp = layer_inputs(quant, path, x).clone()
        dense = twin.get_submodule(path)
        if isinstance(mod, PQLinear):
            shape = f"fc {mod.in_features}->{mod.out_features}"
        else:
            shape = (f"conv {mod.in_channels}->{mod.out_channels} {mod.kernel_size[0]}x"
                     f"{mod.kernel_size[1]}/{mod.stride[0]} @{inp.shape[-2]}x{inp.shape[-1]}")
        with torch.inference_mode():
            torch.testing.assert_close(mod(inp), dense(inp), rtol=1e-3, atol=1e-3)
            times = _time_pair(lambda: dense(inp), lambda: mod(inp), repeats)
        rows.append({"layer": path, "shape": shape, "M": mod.num_subspaces,
                     "K": mod.num_codewords, **times,
                     "speedup": times["fp32_ms"] / times["lut_ms"]})
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    from slimface.runtime.pq import lut_kernel, set_pq_mode

    torch.set_num_threads(args.threads)
    quant = _pq_model(args).eval()
    set_pq_mode(quant, "lut")
    twin = float_twin(quant)
    h, w = getattr(quant, "input_size", (112, 112))
    x = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255
    rows = layer_rows(quant, twin, x, args.repeats)
    with torch.inference_mode():
        times = _time_pair(lambda: twin(x), lambda: quant(x), max(5, args.repeats // 3))
    model_row = {"layer": "whole model", "shape": f"{args.batch}x3x{h}x{w}", **times,
                 "speedup": times["fp32_ms"] / times["lut_ms"]}
    table = format_table(rows + [model_row], ["layer", "shape", "M", "K", "fp32_ms", "lut_ms",
                                              "speedup", "fp32_min_ms", "lut_min_ms"],
                         title=f"PQ lookup-table vs fp32, batch {args.batch}, {args.threads} "
                               "thread(s), median (and min) ms")
    first = next((r for r in rows), {})
    d = None if not rows else int(quant.get_submodule(first["layer"]).subspace_dim)
    emit_result(args.json, {"benchmark": "pq", "model": args.model, "d": d, "k": first.get("K"),
                            "batch": args.batch, "threads": args.threads,
                            "repeats": args.repeats,
                            "fc_kernel": "c" if lut_kernel() is not None else "torch",
                            "torch": torch.__version__, "commit": git_commit(), "layers": rows,
                            "model_latency": model_row}, table)
    return 0

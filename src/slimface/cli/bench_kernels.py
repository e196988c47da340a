"""``slimface bench kernels``: our binary conv kernel against torch fp32 conv, same threads.

Per conv shape of face_resnet_c and mobilefacenet (dense convs only: the first conv stays
float in every quantized model, and depthwise convs have no popcount GEMM), at batch 1 and
32: the XNOR-popcount kernel (binary weights and activations, NHWC input) against
``torch.nn.functional.conv2d`` in fp32, timed in both NCHW and channels_last memory formats
with the faster one kept. Then the whole model Q (face_resnet_c, XNOR weights and
activations except Conv1a, loaded from its ``.slim`` deploy file) against model C in fp32,
and the shipped binary-weight student (``slimface_mobile_binary.slim``: 1-bit weights, float
activations, the sign-select-and-add kernel) against its fp32 twin (the same architecture in
fp32, BatchNorms unfolded as trained; random weights: speed only).

Every table title and the JSON's ``environment`` name the CPU model and the instruction set
the kernels ran (``runtime.timing.cpu_info``); ``--isa avx2`` (or ``SLIMFACE_KERNEL=c:avx2``)
forces the AVX2 path on an AVX-512 CPU.

Each conv row also times a *deployed* layer of that shape (``runtime.binary.BinaryConv2d``,
torch tensor in and out, as in a loaded model): it runs whichever of the kernel and torch's
float conv it measured faster for that shape (``path``), so ``deployed`` is the speed-up a
model gets from that layer, never far below 1x.

Both sides are timed in alternating blocks of calls (``runtime/timing.time_in_blocks``: a
pool's spinning threads never steal the other side's cores), each call repeated until it has
run for about ``--budget-ms``; ``min_ms`` (the least disturbed call) drives the speed-up and
``median_ms`` is reported too. Our side is a :class:`~slimface.runtime.kernel.BinaryConvPlan`,
what a deployed layer calls: float NHWC in, float NHWC out (torch's contract), sign packing
included; ``speedup`` compares that. A second column times the same plan writing sign words
(``output="signs"``: 1 bit per output, what a binary layer feeding another binary layer
writes, see ``runtime.binary.fuse_sign_outputs``); it is not torch's contract, so it is
reported beside the speed-up, not as it. A third times sign words in and sign words out (a
binary conv between two binary convs: no float touched). None of the three is torch's
contract but the first.

For float outputs big enough to be streamed (batch 32 on MobileFaceNet's large maps) the
table also shows ``float_out_ceiling``: torch's time divided by the time this machine takes
just to write that many floats with the same threads and the same non-temporal stores
(``kernel.streamed_write_ms``). No float-output conv can beat torch by more than that here;
where it is under 10x, the memory bus, not the popcounts, caps the speed-up. Table on
stdout (stderr with ``--json``), one JSON object with ``--json`` (device, threads, commit, load
average).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from slimface._provenance import git_commit
from slimface.cli._common import (Several, add_json_arg, add_models_arg, emit_json,
                                   format_table, hidden_alias, positive_int, print_result)
from slimface.runtime.timing import cpu_info, time_in_blocks

MODELS = {"face_resnet_c": (112, 96), "mobilefacenet": (112, 112)}


def register(sub: Any) -> None:
    p = sub.add_parser("kernels", help="binary conv kernel and model Q vs torch fp32",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=2, help="threads for torch and our kernel")
    p.add_argument("--batch", action=Several, type=positive_int, default=[1, 32],
                           help="batch sizes (default 1 32)")
    repeats = p.add_argument("--repeats", type=positive_int, default=10,
                             help="least timed calls per case (more for fast calls, see "
                                  "--budget-ms)")
    hidden_alias(p, repeats, "--reps")
    p.add_argument("--budget-ms", type=float, default=60.0,
                   help="time per function and case the repeats aim at")
    models = add_models_arg(p, default=list(MODELS), choices=list(MODELS),
                            help=f"whose conv shapes to time: {' '.join(MODELS)} (default both)")
    hidden_alias(p, models, "--models")
    p.add_argument("--no-model", action="store_true",
                   help="skip the whole-model runs (Q vs C, binary-weight student vs fp32 twin)")
    p.add_argument("--no-convs", action="store_true",
                   help="skip the conv-shape rows: only the whole-model runs (a minute, not "
                        "a quarter of an hour)")
    p.add_argument("--isa", choices=("best", "avx512", "avx2", "portable"), default="best",
                   help="instruction set of the binary kernels (default: the best this CPU has)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights")
    add_json_arg(p)


# ------------------------------------------------------------------ environment
def environment(threads: int) -> dict[str, Any]:
    import torch

    info = cpu_info()
    return {"cpu": info["cpu"], "cpus": os.cpu_count(), "threads": threads,
            "isa": info["isa"], "best_isa": info["best_isa"], "cpu_label": info["label"],
            "cpu_flags": info["flags"], "kernel": info["kernel"],
            "layer_path": info["layer_path"], "torch": torch.__version__,
            "python": platform.python_version(), "commit": git_commit(),
            "loadavg_before": list(os.getloadavg())}


# ------------------------------------------------------------------ timing
def timed(fns: dict[str, Callable[[], Any]], reps: int,
          budget_ms: float) -> dict[str, dict[str, float]]:
    """min/median ms per function over alternating blocks; fast calls get more repeats."""
    once = {k: _one_call_ms(fn) for k, fn in fns.items()}
    n = max(reps, min(5000, int(budget_ms / max(min(once.values()), 1e-3))))
    times = time_in_blocks(fns, repeats=n, rounds=5)
    return {k: {"min_ms": float(np.min(v)), "median_ms": float(np.median(v)), "calls": len(v)}
            for k, v in times.items()}


def _one_call_ms(fn: Callable[[], Any]) -> float:
    fn()  # warm-up (allocations, weight layout, oneDNN primitive cache)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def conv_shapes(model_name: str) -> list[dict[str, Any]]:
    """Distinct dense conv shapes met in a forward pass (first conv excluded)."""
    import torch

    from slimface.models import create_backbone

    model = create_backbone(model_name).eval()
    seen: list[dict[str, Any]] = []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    def hook(mod: torch.nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if mod is convs[0] or mod.groups != 1:
            return
        c, h, w = inp[0].shape[1:]
        shape = {"model": model_name, "cin": int(c), "h": int(h), "w": int(w),
                 "cout": mod.out_channels, "k": mod.kernel_size[0], "stride": mod.stride[0],
                 "pad": mod.padding[0]}
        if shape not in seen:
            seen.append(shape)

    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.inference_mode():
        model(torch.zeros(1, 3, *MODELS[model_name]))
    for h in handles:
        h.remove()
    return seen


def time_conv(shape: dict[str, Any], batch: int, threads: int, reps: int,
              rng: np.random.Generator, budget_ms: float = 60.0) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from slimface.runtime import kernel
    from slimface.runtime.binary import BinaryConv2d

    cin, cout, k, s, p = shape["cin"], shape["cout"], shape["k"], shape["stride"], shape["pad"]
    x = rng.standard_normal((batch, shape["h"], shape["w"], cin)).astype(np.float32)
    bits = rng.random((cout, cin, k, k)) > 0.5
    wwords = kernel.prepare_binary_weights(bits)
    affine = {"scale": rng.random(cout).astype(np.float32) + 0.5,
              "bias": rng.standard_normal(cout).astype(np.float32), "threads": threads}
    plan = kernel.BinaryConvPlan(wwords, cout, cin, k, s, p, **affine)
    signs = kernel.BinaryConvPlan(wwords, cout, cin, k, s, p, output="signs", **affine)
    words = kernel.pack_signs(x)  # what a fused binary producer would hand this conv
    x_cl = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels_last view
    x_nchw = x_cl.contiguous()
    w = torch.from_numpy(np.where(bits, 1.0, -1.0).astype(np.float32))
    w_cl = w.contiguous(memory_format=torch.channels_last)
    layer = BinaryConv2d(bits, torch.from_numpy(affine["scale"]), torch.from_numpy(affine["bias"]),
                         s, p, input_mode="sign", threads=threads).eval()
    with torch.inference_mode():
        layer(x_cl)  # measures both paths once for this shape (not timed)
        t = timed({
            "binary": lambda: plan(x),
            "deployed": lambda: layer(x_cl),
            "binary_signs": lambda: signs(x),
            "binary_words": lambda: signs(words),
            "torch_nchw": lambda: F.conv2d(x_nchw, w, None, s, p),
            "torch_cl": lambda: F.conv2d(x_cl, w_cl, None, s, p),
        }, reps, budget_ms)
    torch_best = min(t["torch_nchw"]["min_ms"], t["torch_cl"]["min_ms"])
    torch_med = min(t["torch_nchw"]["median_ms"], t["torch_cl"]["median_ms"])
    oh, ow = (shape["h"] + 2 * p - k) // s + 1, (shape["w"] + 2 * p - k) // s + 1
    macs = batch * oh * ow * cout * cin * k * k
    out_bytes = batch * oh * ow * cout * 4
    floor = kernel.streamed_write_ms(out_bytes, threads) if out_bytes >= kernel.STREAM_BYTES \
        else None
    return {**shape, "batch": batch, "binary_ms": t["binary"]["min_ms"],
            "torch_fp32_ms": torch_best,
            "torch_layout": "cl" if t["torch_cl"]["min_ms"] <= t["torch_nchw"]["min_ms"] else "nchw",
            "speedup": torch_best / t["binary"]["min_ms"],
            "speedup_median": torch_med / t["binary"]["median_ms"],
            "binary_signs_ms": t["binary_signs"]["min_ms"],
            "speedup_signs": torch_best / t["binary_signs"]["min_ms"],
            "binary_words_ms": t["binary_words"]["min_ms"],
            "speedup_words": torch_best / t["binary_words"]["min_ms"],
            "path": layer.path_choice.path, "path_reason": layer.path_choice.reason,
            "deployed_ms": t["deployed"]["min_ms"],
            "speedup_deployed": torch_best / t["deployed"]["min_ms"],
            "output_write_ms": floor,
            "float_out_ceiling": None if floor is None else torch_best / floor,
            "binary_gmacs": macs / t["binary"]["min_ms"] / 1e6,
            "torch_gmacs": macs / torch_best / 1e6, "timings": t}


def time_models(batches: list[int], threads: int, reps: int,
                budget_ms: float = 60.0) -> list[dict[str, Any]]:
    """Model Q from its deploy file against model C in fp32 (random weights: speed only)."""
    import torch

    from slimface.quant.qat import quantize_model
    from slimface.models import create_backbone
    from slimface.runtime.binary import load_deploy, save_deploy

    torch.manual_seed(0)
    kw = {"act_order": "conv_pool_bn_act"}
    c_model = create_backbone("face_resnet_c").eval()
    c_cl = create_backbone("face_resnet_c").eval().to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        q_path = Path(tmp) / "q.slim"
        q_train = quantize_model(create_backbone("face_resnet_c", **kw), "xnor", 1, 1)
        save_deploy(q_train, q_path, backbone="face_resnet_c", backbone_kwargs=kw)
        q_bytes = q_path.stat().st_size
        q_model = load_deploy(q_path)
    for m in q_model.modules():
        if hasattr(m, "threads"):
            m.threads = threads
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, 112, 96) * 255
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            t = timed({"q_deploy": lambda: q_model(x_cl), "c_fp32_nchw": lambda: c_model(x),
                       "c_fp32_cl": lambda: c_cl(x_cl)}, max(3, reps // 2), budget_ms)
        c_best = min(t["c_fp32_nchw"]["min_ms"], t["c_fp32_cl"]["min_ms"])
        c_med = min(t["c_fp32_nchw"]["median_ms"], t["c_fp32_cl"]["median_ms"])
        rows.append({"batch": batch, "q_ms": t["q_deploy"]["min_ms"], "c_fp32_ms": c_best,
                     "speedup": c_best / t["q_deploy"]["min_ms"],
                     "speedup_median": c_med / t["q_deploy"]["median_ms"],
                     "q_file_bytes": q_bytes, "timings": t})
    return rows


STUDENT = "slimface-mobile-binary"  # a pretrained model's name (slimface models)


def time_student(batches: list[int], threads: int, reps: int,
                 budget_ms: float = 60.0) -> list[dict[str, Any]]:
    """The shipped binary-weight student from its file against its fp32 twin, channels_last
    input (both faster so), ms per face; each row counts the paths its binary layers took."""
    import torch

    from slimface.models import create_backbone
    from slimface.models.pretrained import get_card
    from slimface.runtime.binary import BinaryConv2d, BinaryLinear, load_deploy
    from slimface.runtime.slimfile import read_slim_metadata

    path = get_card(STUDENT).path()
    if path is None:
        return []
    student = load_deploy(path).eval()
    for m in student.modules():
        if hasattr(m, "threads"):
            m.threads = threads
    arch = read_slim_metadata(path)["architecture"]
    torch.manual_seed(0)
    twin = create_backbone(arch["backbone"], **{**arch.get("kwargs", {}), "pretrained": False})
    twin = twin.eval().to(memory_format=torch.channels_last)
    layers = [m for m in student.modules() if isinstance(m, (BinaryConv2d, BinaryLinear))]
    rows = []
    for batch in batches:
        x = (torch.rand(batch, 3, *student.input_size) * 255).contiguous(
            memory_format=torch.channels_last)
        with torch.inference_mode():
            student(x)  # each binary layer measures its two paths for this batch (not timed)
            t = timed({"binary": lambda: student(x), "fp32": lambda: twin(x)},
                      max(3, reps // 2), budget_ms)
        paths = [m.path_choice.path for m in layers]
        rows.append({"model": path.name, "twin": arch["backbone"], "batch": batch,
                     "binary_ms_per_face": t["binary"]["min_ms"] / batch,
                     "fp32_ms_per_face": t["fp32"]["min_ms"] / batch,
                     "speedup": t["fp32"]["min_ms"] / t["binary"]["min_ms"],
                     "speedup_median": t["fp32"]["median_ms"] / t["binary"]["median_ms"],
                     "kernel_layers": paths.count("kernel"), "torch_layers": paths.count("torch"),
                     "timings": t})
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    from slimface.runtime import kernel

    if args.isa != "best":
        kernel.set_isa(args.isa)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    env = environment(args.threads)
    shapes = [] if args.no_convs else [s for m in args.models for s in conv_shapes(m)]
    from tqdm import tqdm

    convs = []
    cases = [(s, b) for b in args.batch for s in shapes]
    for shape, batch in tqdm(cases, desc="conv shapes", file=sys.stderr, leave=False):
        convs.append(time_conv(shape, batch, args.threads, args.repeats, rng, args.budget_ms))
    conv_rows = [{**{k: r[k] for k in ("model", "batch", "cin", "cout", "h", "w", "k", "stride")},
                  "binary_ms": r["binary_ms"], "torch_fp32_ms": r["torch_fp32_ms"],
                  "speedup": r["speedup"], "speedup_median": r["speedup_median"],
                  "signs_out_speedup": r["speedup_signs"],
                  "words_in_out_speedup": r["speedup_words"],
                  "float_out_ceiling": r["float_out_ceiling"],
                  "path": r["path"], "deployed_speedup": r["speedup_deployed"]}
                 for r in convs]
    if conv_rows:
        print_result(args.json, format_table(
            conv_rows, title=f"binary conv (XNOR-popcount) vs torch fp32, {args.threads} "
                             f"threads; {env['cpu_label']}"))
    models = [] if args.no_model else time_models(args.batch, args.threads, args.repeats,
                                                  args.budget_ms)
    if models:
        print_result(args.json, format_table(
            [{k: r[k] for k in ("batch", "q_ms", "c_fp32_ms", "speedup", "speedup_median")}
             for r in models],
            title=f"\nmodel Q (deploy file) vs model C fp32, face_resnet_c 112x96; "
                  f"{env['cpu_label']}"))
    students = [] if args.no_model else time_student(args.batch, args.threads, args.repeats,
                                                     args.budget_ms)
    if students:
        print_result(args.json, format_table(
            [{k: r[k] for k in ("batch", "binary_ms_per_face", "fp32_ms_per_face", "speedup",
                                "speedup_median", "kernel_layers", "torch_layers")}
             for r in students],
            title=f"\n{students[0]['model']} (binary weights, float activations) vs its fp32 "
                  f"twin {students[0]['twin']}; {env['cpu_label']}"))
    env["loadavg_after"] = list(os.getloadavg())
    emit_json({"benchmark": "kernels", "environment": env, "seed": args.seed,
               "repeats": args.repeats, "budget_ms": args.budget_ms, "convs": convs,
               "models": models,
               "students": students, "summary": _summary(convs, models, students)}, args.json)
    return 0


def _summary(convs: list[dict[str, Any]], models: list[dict[str, Any]],
             students: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for batch in sorted({r["batch"] for r in convs}):
        for model in sorted({r["model"] for r in convs}):
            sp = [r["speedup"] for r in convs if r["batch"] == batch and r["model"] == model]
            out[f"{model}_b{batch}"] = {"min_speedup": min(sp), "max_speedup": max(sp),
                                        "geomean_speedup": float(np.exp(np.mean(np.log(sp))))}
    if convs:
        sp = [r["speedup"] for r in convs]
        dep = [r["speedup_deployed"] for r in convs if "speedup_deployed" in r]
        out["all_convs"] = {"median_speedup": float(np.median(sp)), "min_speedup": min(sp),
                            "rows": len(sp)}
        if dep:
            out["all_convs"].update(median_deployed_speedup=float(np.median(dep)),
                                    min_deployed_speedup=min(dep))
    for r in models:
        out[f"model_q_vs_c_b{r['batch']}"] = r["speedup"]
    for r in students or []:
        out[f"student_vs_fp32_twin_b{r['batch']}"] = r["speedup"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``benchmarks/bench_kernels.py``: JSON on stdout unless ``--json OUT``."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(json="-")
    return run(p.parse_args(argv))

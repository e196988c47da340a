"""Render ``slimface bench kernels --json`` output as the Markdown tables of kernels.md.

    slimface bench kernels --threads 1 --json k1.json
    python benchmarks/kernels_table.py k1.json >> benchmarks/kernels.md
"""
from __future__ import annotations

import json
import sys
from typing import Any


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _optional(v: float | None) -> str:
    """Columns older runs lack, or that apply to some rows only."""
    return "" if v is None else f"{v:.1f}"


def render(run: dict[str, Any]) -> str:
    env = run["environment"]
    cpu = env.get("cpu_label") or f"{env['cpu']}, kernel {env['kernel']}"
    deployed = any("speedup_deployed" in r for r in run["convs"])
    lines = [f"threads={env['threads']}, {cpu} ({env['cpus']} CPUs), kernel {env['kernel']}, "
             f"torch {env['torch']}, commit {env['commit']}, load average "
             f"{env['loadavg_before'][0]:.1f} -> {env['loadavg_after'][0]:.1f}", "",
             "| model | batch | C_in | C_out | HxW | k | binary ms | torch fp32 ms | speed-up (min) "
             "| speed-up (median) | sign-words out: speed-up | words in and out: speed-up "
             "| float-out ceiling |" + (" deployed layer: path | deployed: speed-up |" if deployed
                                        else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if deployed
                                                                       else "")]
    for r in run["convs"]:
        row = (f"| {r['model']} | {r['batch']} | {r['cin']} | {r['cout']} | {r['h']}x{r['w']} "
               f"| {r['k']} | {_fmt(r['binary_ms'])} | {_fmt(r['torch_fp32_ms'])} "
               f"| {r['speedup']:.1f} | {r['speedup_median']:.1f} "
               f"| {r['speedup_signs']:.1f} | {_optional(r.get('speedup_words'))} "
               f"| {_optional(r.get('float_out_ceiling'))} |")
        if deployed:
            row += f" {r.get('path', '')} | {_optional(r.get('speedup_deployed'))} |"
        lines.append(row)
    summary = run.get("summary", {}).get("all_convs")
    if summary:
        lines += ["", f"All {summary['rows']} rows: speed-up median {summary['median_speedup']:.1f}x, "
                      f"minimum {summary['min_speedup']:.1f}x"
                  + (f"; deployed layer median {summary['median_deployed_speedup']:.1f}x, "
                     f"minimum {summary['min_deployed_speedup']:.1f}x"
                     if "min_deployed_speedup" in summary else "") + "."]
    if run["models"]:
        lines += ["", "| whole model | batch | Q (deploy file) ms | C fp32 ms | speed-up (min) "
                      "| speed-up (median) |", "|---|---|---|---|---|---|"]
        for r in run["models"]:
            lines.append(f"| face_resnet_c Q vs C | {r['batch']} | {_fmt(r['q_ms'])} "
                         f"| {_fmt(r['c_fp32_ms'])} | {r['speedup']:.1f} "
                         f"| {r['speedup_median']:.1f} |")
    if run.get("students"):
        lines += ["", "| binary-weight student vs fp32 twin | batch | binary ms/face "
                      "| fp32 ms/face | speed-up (min) | speed-up (median) "
                      "| binary layers on kernel / torch |", "|---|---|---|---|---|---|---|"]
        for r in run["students"]:
            lines.append(f"| {r['model']} vs {r['twin']} | {r['batch']} "
                         f"| {_fmt(r['binary_ms_per_face'])} | {_fmt(r['fp32_ms_per_face'])} "
                         f"| {r['speedup']:.2f} | {r['speedup_median']:.2f} "
                         f"| {r['kernel_layers']} / {r['torch_layers']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(render(json.load(f)))

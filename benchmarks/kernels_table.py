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
    lines = [f"threads={env['threads']}, kernel {env['kernel']}, {env['cpu']} ({env['cpus']} CPUs), "
             f"torch {env['torch']}, commit {env['commit']}, load average "
             f"{env['loadavg_before'][0]:.1f} -> {env['loadavg_after'][0]:.1f}", "",
             "| model | batch | C_in | C_out | HxW | k | binary ms | torch fp32 ms | speed-up (min) "
             "| speed-up (median) | sign-words out: speed-up | words in and out: speed-up "
             "| float-out ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in run["convs"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['cin']} | {r['cout']} | {r['h']}x{r['w']} "
                     f"| {r['k']} | {_fmt(r['binary_ms'])} | {_fmt(r['torch_fp32_ms'])} "
                     f"| {r['speedup']:.1f} | {r['speedup_median']:.1f} "
                     f"| {r['speedup_signs']:.1f} | {_optional(r.get('speedup_words'))} "
                     f"| {_optional(r.get('float_out_ceiling'))} |")
    if run["models"]:
        lines += ["", "| whole model | batch | Q (deploy file) ms | C fp32 ms | speed-up (min) "
                      "| speed-up (median) |", "|---|---|---|---|---|---|"]
        for r in run["models"]:
            lines.append(f"| face_resnet_c Q vs C | {r['batch']} | {_fmt(r['q_ms'])} "
                         f"| {_fmt(r['c_fp32_ms'])} | {r['speedup']:.1f} "
                         f"| {r['speedup_median']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(render(json.load(f)))

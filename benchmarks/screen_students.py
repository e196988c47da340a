"""The student screen: every candidate architecture trained by ``configs/screen_students.py``
(the same short function-matching run from random weights), then one table of its LFW
view-1 read-outs beside its size.

Usage: ``python benchmarks/screen_students.py --out DIR [--backbones A B ...] [--steps N]``

Each candidate trains into ``DIR/NAME`` (its log in ``DIR/NAME/train.log``); a candidate whose
run already reached its last step is read, not trained again, and a stopped one resumes, so
the command can be run again after an interruption. Training holds both cores (the teacher
runs in a data worker): time nothing else meanwhile. Speed is not measured here (it needs an
idle machine): ``slimface bench models --model dlib-resnet NAME ... --runtime onnx`` gives it.

Prints a table on stderr and one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "screen_students.py"
CANDIDATES = ("slimnet_s", "slimnet_s2", "slimnet_m", "slimnet_l", "mobilefacenet_050")
#: The default model's budget: an fp32 file of at most 4 MB.
FP32_BUDGET_BYTES = 4_000_000
READ_OUTS = (("lfw_view1_acc", "acc"), ("lfw_view1_tar_at_far_1e-4", "TAR@1e-4"),
             ("lfw_view1_rank1", "rank-1"))


def last_eval(log: Path) -> dict[str, Any] | None:
    """The last log line with view-1 read-outs, or None when the run has none yet."""
    if not log.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "lfw_view1_acc" in r]
    return evals[-1] if evals else None


def train(name: str, out: Path, steps: int) -> None:
    """Run (or resume) the screen's training of ``name`` into ``out``; its output to a log."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["slimface", "train", str(CONFIG), "--set", f"backbone={name}",
           "--set", f"steps_per_epoch={steps}", "--set", f"eval_every={steps}",
           "--out", str(out)]
    if (out / "checkpoint.pt").is_file():
        cmd.append("--resume")
    print(f"training {name}: {' '.join(cmd)}", file=sys.stderr)
    with open(out / "train.log", "a") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{out / 'train.log'}: training {name} stopped with exit code {code}; "
                         f"the end of that log says why (run the command again to resume)")


def size_of(name: str) -> dict[str, Any]:
    """Parameters and fp32 bytes of ``name`` as the screen builds it (192-d embedding)."""
    from slimface.models import create_backbone

    model = create_backbone(name, embedding_dim=192)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "fp32_bytes": 4 * params,
            "within_budget": 4 * params <= FP32_BUDGET_BYTES}


def screen(names: list[str], out: Path, steps: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        done = last_eval(out / name / "log.jsonl")
        if done is None or done.get("step", 0) < steps:
            train(name, out / name, steps)
            done = last_eval(out / name / "log.jsonl")
        if done is None:
            raise SystemExit(f"{out / name / 'log.jsonl'}: the run wrote no view-1 read-outs")
        rows.append({"backbone": name, **size_of(name), "steps": done["step"],
                     "hours": round(done["hours"], 3),
                     **{key: round(100 * done[key], 2) for key, _ in READ_OUTS}})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ["backbone", "params", "fp32 MB", "budget", "steps", "hours",
            *[label for _, label in READ_OUTS]]
    lines = [" | ".join(head)]
    for r in rows:
        lines.append(" | ".join([r["backbone"], f"{r['params']:,}",
                                 f"{r['fp32_bytes'] / 1e6:.2f}",
                                 "ok" if r["within_budget"] else "over", str(r["steps"]),
                                 f"{r['hours']:.2f}",
                                 *[f"{r[key]:.2f}" for key, _ in READ_OUTS]]))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="folder of the candidates' runs")
    p.add_argument("--backbones", nargs="+", default=list(CANDIDATES),
                   help=f"registry names (default: {' '.join(CANDIDATES)})")
    p.add_argument("--steps", type=int, default=1500, help="steps of each run (default 1500)")
    args = p.parse_args()
    rows = screen(args.backbones, args.out, args.steps)
    print(table(rows), file=sys.stderr)
    print(json.dumps({"config": str(CONFIG.name), "steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

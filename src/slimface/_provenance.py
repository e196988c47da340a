"""Where a measurement came from: the commit and the CPU, recorded by every benchmark and
report so a number can be traced to the code and machine that produced it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]


def git_commit() -> str | None:
    """Short hash of the checkout slimface runs from, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe_cpu() -> dict[str, Any]:
    """CPU model and the instruction sets that decide kernel and int8 speed."""
    flags: set[str] = set()
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "avx512_vpopcntdq": "avx512_vpopcntdq" in flags, "avx_vnni": "avx_vnni" in flags}

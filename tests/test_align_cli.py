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
        raise MultipleFacesError(files[0], "2 faces found", remedy="use a photo with one face, "
                                 "or pass multi_face='largest' or 'central'")

    monkeypatch.setattr(slimface.align, "align_paths", two_faces)
    _tree(tmp_path / "src")
    assert main(["align", str(tmp_path / "src" / "x.jpg"), str(tmp_path / "dst"),
                 "--face", "error"]) == 1
    err = capsys.readouterr().err
    assert "x.jpg: 2 faces found" in err and "--face largest or --face central" in err


def test_crops_never_overwrite_the_sources(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    before = (tmp_path / "src" / "a" / "y.png").read_bytes()
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "src"), "--workers", "1"]) == 1
    assert "would overwrite a source image" in capsys.readouterr().err
    assert (tmp_path / "src" / "a" / "y.png").read_bytes() == before


def test_two_sources_for_one_crop_are_refused(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    Image.fromarray(np.zeros((60, 50, 3), np.uint8)).save(tmp_path / "src" / "x.png")
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "x.jpg" in err and "x.png" in err and "rename one" in err
    assert not (tmp_path / "dst").exists()


def test_bad_pad_and_file_as_destination(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    src = str(tmp_path / "src" / "x.jpg")
    assert main(["align", src, str(tmp_path / "dst"), "--pad", "abc"]) == 1
    assert "--pad 'abc'" in capsys.readouterr().err
    (tmp_path / "afile").write_text("keep")
    assert main(["align", src, str(tmp_path / "afile"), "--workers", "1"]) == 1
    assert "afile: exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "keep"


def _with_bad_files(src: Path) -> None:
    """Beside the good images: text named .jpg, an empty .png and a truncated JPEG (whose
    header reads fine: only decoding finds the damage)."""
    import io

    (src / "text.jpg").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    whole = io.BytesIO()
    Image.fromarray(noise).save(whole, format="JPEG")
    (src / "a" / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) * 3 // 4])


def test_an_unreadable_file_stops_the_run_and_names_the_option(tmp_path: Path, capsys) -> None:
    _tree(tmp_path / "src")
    _with_bad_files(tmp_path / "src")
    assert main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "cut.jpg: damaged image data" in err and "--bad-file skip" in err
    assert not (tmp_path / "dst").exists()


def test_bad_file_skip_writes_the_good_ones_and_reports_the_others(tmp_path: Path,
                                                                   capsys) -> None:
    _tree(tmp_path / "src")
    _with_bad_files(tmp_path / "src")
    out = tmp_path / "summary.json"
    rc = main(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "1",
               "--bad-file", "skip", "--json", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 6 and summary["written"] == 3 and summary["bad_files"] == 3
    problems = {Path(b["path"]).name: b["problem"] for b in summary["skipped"]}
    assert set(problems) == {"cut.jpg", "empty.png", "text.jpg"}
    assert "empty" in problems["empty.png"] and "not an image" in problems["text.jpg"]
    assert "damaged" in problems["cut.jpg"]  # found by decoding, not by the header
    err = capsys.readouterr().err
    for name in problems:
        assert f"{name}: {problems[name]}; skipped" in err
    written = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*"))
    assert written == ["a", "a/b", "a/b/z.png", "a/y.png", "x.png"]  # no temporary files


def test_a_damaged_crop_cache_is_rebuilt(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SLIMFACE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "crops").mkdir(parents=True)
    (tmp_path / "cache" / "crops" / "index.sqlite").write_bytes(b"\x17" * 5000)
    _tree(tmp_path / "src")
    assert main(["align", str(tmp_path / "src" / "x.jpg"), str(tmp_path / "dst"),
                 "--workers", "1"]) == 0
    assert (tmp_path / "dst" / "x.png").is_file()
    assert (tmp_path / "cache" / "crops" / "index.sqlite.corrupt").read_bytes() == b"\x17" * 5000


def test_allow_damaged_aligns_a_truncated_jpeg_with_a_warning(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("SLIMFACE_CACHE", str(tmp_path / "cache"))
    _tree(tmp_path / "src")
    _with_bad_files(tmp_path / "src")
    cut = tmp_path / "src" / "a" / "cut.jpg"
    assert main(["align", str(cut), str(tmp_path / "strict"), "--workers", "1"]) == 1
    assert "pass --allow-damaged to use it anyway" in capsys.readouterr().err
    assert main(["align", str(cut), str(tmp_path / "dst"), "--workers", "1",
                 "--allow-damaged"]) == 0
    assert (tmp_path / "dst" / "cut.png").is_file()
    assert "cut.jpg: Premature end of JPEG file; aligned anyway" in capsys.readouterr().err
    # a damaged image is never cached: a strict run still reports it
    assert main(["align", str(cut), str(tmp_path / "strict2"), "--workers", "1"]) == 1
    assert "damaged image data" in capsys.readouterr().err

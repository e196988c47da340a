"""``slimface verify``: verdict, similarity and threshold, with fakes for model and aligner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimface.cli.main import main
from _gallery_fakes import register_tiny, two_face_image, write_faces


@pytest.fixture()
def faces(tmp_path: Path, monkeypatch) -> dict[str, list[Path]]:
    register_tiny(monkeypatch)
    return write_faces(tmp_path / "img", 2, 2)


def test_verify_prints_verdict_similarity_and_threshold(faces, capsys):
    a, b = faces["p0"]
    assert main(["verify", str(a), str(b), "--model", "tiny-test", "--threshold", "0.5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["same"] is True and out["threshold"] == 0.5 and out["similarity"] > 0.9
    assert out["threshold_source"] == "given"


def test_verify_different_people_is_different_and_human_line_names_threshold(faces, capsys):
    a, c = faces["p0"][0], faces["p1"][0]
    assert main(["verify", str(a), str(c), "--model", "tiny-test", "--threshold", "0.999"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("different  similarity=") and "threshold=0.9990" in line


def test_verify_uses_the_calibrated_threshold_table(faces, capsys, tmp_path, monkeypatch):
    import slimface.gallery.thresholds as th

    table = tmp_path / "thresholds.json"
    monkeypatch.setattr(th, "THRESHOLDS_PATH", table)
    monkeypatch.setattr(th.lookup_threshold, "__defaults__", (table, None))
    th.save_threshold("tiny-test", {"value": 0.25, "far": 1e-3, "flip": "sum",
                                    "source": "unit test"}, path=table)
    a, b = faces["p0"]
    assert main(["verify", str(a), str(b), "--model", "tiny-test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == 0.25 and out["threshold_source"] == "unit test"


def test_verify_without_any_threshold_says_how_to_calibrate(faces, capsys):
    a, b = faces["p0"]
    assert main(["verify", str(a), str(b), "--model", "tiny-test"]) == 1
    err = capsys.readouterr().err
    assert "no calibrated threshold" in err and "verify --calibrate" in err


def test_verify_refuses_two_faces_unless_face_largest(faces, tmp_path, capsys):
    two = two_face_image(tmp_path / "two.png")
    a = faces["p0"][0]
    assert main(["verify", str(two), str(a), "--model", "tiny-test", "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"{two}: 2 faces found" in err and "--face largest" in err
    assert main(["verify", str(two), str(a), "--model", "tiny-test", "--threshold", "0.5",
                 "--face", "largest"]) == 0


def test_verify_needs_exactly_two_images(faces):
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(faces["p0"][0]), "--model", "tiny-test"])
    assert exc.value.code == 2


@pytest.mark.parametrize("args", [["--threshold", "nan"], ["--threshold", "2"],
                                  ["--pad", "50"], ["--pad", "-0.5"]])
def test_out_of_range_numbers_are_usage_errors(args, capsys):
    from slimface.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["verify", "a.jpg", "b.jpg", *args])
    assert exc.value.code == 2 and "must be between" in capsys.readouterr().err


def test_json_into_a_folder_is_refused_before_the_work(tmp_path, capsys):
    from slimface.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["verify", "a.jpg", "b.jpg", "--json", str(tmp_path)])
    assert exc.value.code == 2 and "is a folder" in capsys.readouterr().err


def test_json_before_the_images_never_overwrites_an_image(faces, capsys):
    """`--json` takes an optional OUT: before the images it takes the first image as OUT,
    which once replaced that photo with the JSON."""
    from slimface.cli.main import main

    a, b = faces["p0"]
    kept = a.read_bytes()
    for argv in (["embed", "--json", str(a), str(b)], ["verify", "--json", str(a), str(b)]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--model", "tiny-test"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"--json {a}: is not a JSON file name" in err
        assert "put --json after them" in err
    photo_without_suffix = a.with_name("photo")
    photo_without_suffix.write_bytes(kept)
    with pytest.raises(SystemExit):
        main(["embed", "--json", str(photo_without_suffix), str(b), "--model", "tiny-test"])
    assert "exists and is not JSON" in capsys.readouterr().err
    assert a.read_bytes() == kept and photo_without_suffix.read_bytes() == kept
    out = a.with_name("out.json")
    for _ in range(2):  # a JSON file of an earlier run is replaced
        assert main(["embed", str(b), "--model", "tiny-test", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["faces"][0]["path"] == str(b)


def test_import_refuses_an_out_that_is_not_a_slim_file(tmp_path, capsys):
    from slimface.cli.main import main

    source = tmp_path / "theirs.onnx"
    source.write_bytes(b"kept")
    assert main(["import", "--model", str(source), "--out", str(source)]) == 1
    assert "an imported model is a .slim file" in capsys.readouterr().err
    assert source.read_bytes() == b"kept"


def test_help_says_what_the_exit_status_means(capsys):
    """A script testing `slimface verify A B` for a match must learn from --help that a
    "different" verdict exits 0 too."""
    for argv in (["--help"], ["verify", "--help"], ["gallery", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert "Exit status: 0" in text and "usage error" in text, argv
        assert ("same or different" in text) == (argv[0] != "gallery"), argv

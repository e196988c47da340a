"""``slimface gallery`` end to end with a tiny registered model and a fake aligner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _gallery_fakes import register_tiny, write_faces

from slimface.cli.main import main


@pytest.fixture()
def people(tmp_path: Path, monkeypatch) -> dict[str, list[Path]]:
    register_tiny(monkeypatch)
    return write_faces(tmp_path / "img", 3, 3)


def _run_json(capsys, argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_create_enroll_identify_list_remove(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    _run_json(capsys, ["gallery", "create", db, "--model", "tiny-test"])
    for name, imgs in people.items():
        out = _run_json(capsys, ["gallery", "enroll", db, "--name", name, *map(str, imgs[:2]),
                                 "--meta", "team=a"])
        assert out == {"name": name, "added": 2, "n_embeddings": 2}
    probes = [str(imgs[2]) for imgs in people.values()]
    out = _run_json(capsys, ["gallery", "identify", db, *probes, "--top", "2"])
    assert [r["candidates"][0]["name"] for r in out["results"]] == list(people)
    assert all(len(r["candidates"]) == 2 for r in out["results"])
    assert out["model"] == "tiny-test"  # which model answered, as embed and verify say
    listed = _run_json(capsys, ["gallery", "list", db])
    assert [i["name"] for i in listed["identities"]] == sorted(people)
    assert listed["identities"][0]["metadata"] == {"team": "a"}
    _run_json(capsys, ["gallery", "remove", db, "--name", "p1"])
    listed = _run_json(capsys, ["gallery", "list", db])
    assert [i["name"] for i in listed["identities"]] == ["p0", "p2"]


def test_gallery_refuses_another_model(tmp_path: Path, people, monkeypatch, capsys):
    db = str(tmp_path / "g.db")
    assert main(["gallery", "create", db, "--model", "tiny-test"]) == 0
    register_tiny(monkeypatch, name="tiny-other", seed=1)
    img = str(people["p0"][0])
    assert main(["gallery", "enroll", db, "--name", "x", img, "--model", "tiny-other"]) == 1
    err = capsys.readouterr().err
    assert f"{db}: gallery was built with model 'tiny-test'" in err
    assert "cannot be used with model 'tiny-other'" in err  # an enroll searches nothing
    assert "--model tiny-test" in err


def test_identify_with_top_zero_is_a_usage_error(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    main(["gallery", "create", db, "--model", "tiny-test"])
    with pytest.raises(SystemExit) as stop:
        main(["gallery", "identify", db, str(people["p0"][0]), "--top", "0"])
    assert stop.value.code == 2
    assert "--top: must be >= 1, got 0" in capsys.readouterr().err


def test_identify_threshold_sets_the_operating_point(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    main(["gallery", "create", db, "--model", "tiny-test"])
    main(["gallery", "enroll", db, "--name", "p0", str(people["p0"][0])])
    capsys.readouterr()
    probe = str(people["p1"][0])  # someone else: only a low enough threshold names p0
    low = _run_json(capsys, ["gallery", "identify", db, probe, "--threshold", "-1"])
    high = _run_json(capsys, ["gallery", "identify", db, probe, "--threshold", "0.9999"])
    assert low["threshold"] == -1 and low["results"][0]["match"] == "p0"
    assert high["threshold"] == 0.9999 and high["results"][0]["match"] is None


def test_verify_far_without_calibrate_is_a_usage_error(people, capsys):
    a = str(people["p0"][0])
    with pytest.raises(SystemExit) as stop:
        main(["verify", a, a, "--model", "tiny-test", "--far", "1e-6"])
    assert stop.value.code == 2
    assert "--far is the rate --calibrate sets the threshold at" in capsys.readouterr().err


def test_missing_gallery_says_how_to_create_one(tmp_path: Path, people, capsys):
    assert main(["gallery", "list", str(tmp_path / "nope.db")]) == 1
    assert "gallery create" in capsys.readouterr().err


def test_a_moved_model_file_is_named_with_the_gallery(tmp_path: Path, people, monkeypatch,
                                                      capsys):
    import slimface.cli.gallery as cli_gallery
    from slimface.errors import ModelFileError

    db = str(tmp_path / "g.db")
    assert main(["gallery", "create", db, "--model", "tiny-test"]) == 0

    def moved(*args, **kwargs):
        raise ModelFileError("/models/moved.slim: model file not found")

    monkeypatch.setattr(cli_gallery, "make_matcher", moved)
    assert main(["gallery", "identify", db, str(people["p0"][0])]) == 1
    err = capsys.readouterr().err
    assert f"{db}: built with the model tiny-test" in err and "moved.slim" in err
    assert "pass --model FILE" in err


def test_enroll_reports_the_name_as_stored(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    assert main(["gallery", "create", db, "--model", "tiny-test"]) == 0
    capsys.readouterr()
    assert main(["gallery", "enroll", db, "--name", "  Ada Lovelace \t",
                 str(people["p0"][0])]) == 0
    assert capsys.readouterr().out.startswith("enrolled Ada Lovelace: 1 image(s)")
    out = _run_json(capsys, ["gallery", "enroll", db, "--name", " Ada Lovelace",
                             str(people["p0"][1])])
    assert out == {"name": "Ada Lovelace", "added": 1, "n_embeddings": 2}
    listed = _run_json(capsys, ["gallery", "list", db])
    assert [i["name"] for i in listed["identities"]] == ["Ada Lovelace"]
    assert main(["gallery", "enroll", db, "--name", "   ", str(people["p0"][1])]) == 1
    assert "identity name is empty" in capsys.readouterr().err


def test_remove_reports_the_name_as_stored(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    assert main(["gallery", "create", db, "--model", "tiny-test"]) == 0
    assert main(["gallery", "enroll", db, "--name", "Ada", str(people["p0"][0])]) == 0
    capsys.readouterr()
    assert _run_json(capsys, ["gallery", "remove", db, "--name", " Ada "]) == {
        "name": "Ada", "removed_embeddings": 1}
    assert main(["gallery", "remove", db, "--name", "Ada"]) == 1
    assert "no identity named 'Ada' (the gallery is empty)" in capsys.readouterr().err


def test_identify_bad_file_skip_answers_the_other_images(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    _run_json(capsys, ["gallery", "create", db, "--model", "tiny-test"])
    for name, imgs in people.items():
        _run_json(capsys, ["gallery", "enroll", db, "--name", name, str(imgs[0])])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    probes = [str(people["p0"][2]), str(text), str(people["p2"][2])]
    # the default stops at the bad image and says how to go on
    assert main(["gallery", "identify", db, *probes]) == 1
    assert "notes.jpg" in (err := capsys.readouterr().err) and "--bad-file skip" in err
    out = _run_json(capsys, ["gallery", "identify", db, *probes, "--bad-file", "skip"])
    assert [r["candidates"][0]["name"] for r in out["results"]] == ["p0", "p2"]
    assert [Path(s["path"]).name for s in out["skipped"]] == ["notes.jpg"]
    assert "not an image" in out["skipped"][0]["problem"]
    # nothing usable at all is an error, each image named
    assert main(["gallery", "identify", db, str(text), "--bad-file", "skip"]) == 1
    assert "notes.jpg" in capsys.readouterr().err


def test_embed_bad_file_skip_embeds_the_other_images(tmp_path: Path, people, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    images = [str(people["p0"][0]), str(text)]
    out = _run_json(capsys, ["embed", *images, "--model", "tiny-test", "--bad-file", "skip"])
    assert [Path(f["path"]).name for f in out["faces"]] == [Path(images[0]).name]
    assert [Path(s["path"]).name for s in out["skipped"]] == ["notes.jpg"]
    assert main(["embed", *images, "--model", "tiny-test"]) == 1
    assert "--bad-file skip" in capsys.readouterr().err


def test_enrolling_the_same_photo_again_stores_it_once(tmp_path: Path, people, capsys):
    db = str(tmp_path / "g.db")
    _run_json(capsys, ["gallery", "create", db, "--model", "tiny-test"])
    first = [str(p) for p in people["p0"][:2]]
    assert _run_json(capsys, ["gallery", "enroll", db, "--name", "p0", *first]
                     )["n_embeddings"] == 2
    out = _run_json(capsys, ["gallery", "enroll", db, "--name", "p0", first[0],
                             str(people["p0"][2]), first[0]])
    assert out["added"] == 1 and out["n_embeddings"] == 3
    assert sum("already enrolled for p0" in w for w in out["warnings"]) == 2


def test_verify_says_which_face_it_chose_among_several(tmp_path: Path, people, capsys):
    from _gallery_fakes import two_face_image

    two = str(two_face_image(tmp_path / "two.png"))
    assert main(["verify", two, str(people["p0"][0]), "--model", "tiny-test",
                 "--threshold", "0.5", "--face", "largest"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"  {two}: the face at (") and len(out) == 3
    assert main(["verify", str(people["p0"][1]), str(people["p0"][0]), "--model", "tiny-test",
                 "--threshold", "0.5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # one face each: nothing to say

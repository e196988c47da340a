"""One face-selection option (error / largest / central) with the same name and choices on
``embed``, ``verify``, ``gallery enroll/identify`` and ``FaceMatcher``; the several-faces
message names the option of the interface in use; ``embed`` uses the matcher's defaults."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _gallery_fakes import make_embedder, small_gallery, two_face_image

import slimface
from slimface.cli.main import build_parser, main
from slimface.errors import MultipleFacesError, SlimfaceError


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch):
    return small_gallery(tmp_path, monkeypatch)


def _commands(db: Path, two: Path, other: Path) -> dict[str, list[str]]:
    return {"embed": ["embed", str(two), "--model", "tiny-test"],
            "verify": ["verify", str(two), str(other), "--model", "tiny-test",
                       "--threshold", "0.5"],
            "enroll": ["gallery", "enroll", str(db), "--name", "p9", str(two)],
            "identify": ["gallery", "identify", str(db), str(two)]}


@pytest.mark.parametrize("command", ["embed", "verify", "enroll", "identify"])
def test_several_faces_message_names_the_command_line_flag(setup, command, capsys):
    faces, two, db = setup
    argv = _commands(db, two, faces["p0"][1])[command]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"slimface: error: {two}: 2 faces found"), err
    assert "--face largest or --face central" in err
    assert "multi_face" not in err and "face=" not in err


@pytest.mark.parametrize("command", ["embed", "verify", "enroll", "identify"])
@pytest.mark.parametrize("choice", ["largest", "central"])
def test_every_command_takes_the_same_face_choices(setup, command, choice, capsys):
    faces, two, db = setup
    argv = _commands(db, two, faces["p0"][1])[command]
    assert main([*argv, "--face", choice]) == 0, capsys.readouterr().err


def test_face_option_has_the_same_name_and_choices_everywhere():
    parser = build_parser()
    for argv in (["embed", "x"], ["verify", "x", "y"], ["gallery", "enroll", "db", "--name",
                                                         "n", "x"],
                 ["gallery", "identify", "db", "x"]):
        assert parser.parse_args(argv).face == "error"
        assert parser.parse_args([*argv, "--face", "central"]).face == "central"
        assert parser.parse_args([*argv, "--multi-face", "largest"]).face == "largest"
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--face", "biggest"])


def test_earlier_spelling_stays_out_of_help(capsys):
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    help_text = capsys.readouterr().out
    assert "--face {error,largest,central,all}" in help_text and "--multi-face" not in help_text


def test_several_faces_message_names_the_python_keyword(tmp_path: Path):
    two = two_face_image(tmp_path / "two.png")
    fm = slimface.FaceMatcher(embedder=make_embedder())
    with pytest.raises(MultipleFacesError) as info:
        fm.embed(two)
    message = str(info.value)
    assert message.startswith(f"{two}: 2 faces found")
    assert 'face="largest" or face="central"' in message and "--face" not in message


def test_face_matcher_takes_central_and_refuses_unknown_choices(tmp_path: Path):
    two = two_face_image(tmp_path / "two.png")
    largest = slimface.FaceMatcher(embedder=make_embedder(), face="largest").embed(two)
    central = slimface.FaceMatcher(embedder=make_embedder(), face="central").embed(two)
    assert largest.shape == central.shape and float(largest @ central) < 0.9999
    with pytest.raises(SlimfaceError, match="face must be one of error, largest, central; "
                                            "got 'biggest'"):
        slimface.FaceMatcher(embedder=make_embedder(), face="biggest")


def test_embed_command_gives_the_vector_face_matcher_gives(setup, monkeypatch, capsys):
    faces, _, _ = setup
    monkeypatch.setenv("SLIMFACE_MODEL", "tiny-test")  # both use the default model
    image = str(faces["p1"][0])
    capsys.readouterr()
    assert main(["embed", image, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flip"] == "sum"
    from_cli = np.array(out["faces"][0]["embedding"], np.float32)
    from_api = slimface.FaceMatcher().embed(image)
    np.testing.assert_allclose(from_cli, from_api, atol=1e-6)
    assert main(["embed", image]) == 0  # without --json: path, a tab, the values
    path, values = capsys.readouterr().out.rstrip("\n").split("\t")
    assert path == image
    np.testing.assert_allclose(np.array(values.split(), np.float32), from_api, atol=1e-6)

"""Every bad input to verify/enroll/identify gives a message naming the file, exit code 1,
and leaves the gallery exactly as it was."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from _gallery_fakes import register_tiny, two_face_image, write_faces
from PIL import Image

from slimface.cli.main import main


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch):
    register_tiny(monkeypatch)
    faces = write_faces(tmp_path / "img", 2, 2)
    db = tmp_path / "g.db"
    assert main(["gallery", "create", str(db), "--model", "tiny-test"]) == 0
    assert main(["gallery", "enroll", str(db), "--name", "p0", str(faces["p0"][0])]) == 0
    return tmp_path, faces, db


def _snapshot(db: Path) -> tuple[list[str], str]:
    from slimface.gallery.store import GalleryStore

    store = GalleryStore.open(db)
    names = [(i.name, i.n_embeddings) for i in store.identities()]
    store.close()
    index = Path(f"{db}.faiss")
    return names, hashlib.sha256(index.read_bytes()).hexdigest()


def _errors_of_refused(commands: list[list[str]], capsys) -> list[str]:
    """Run each command line, check it exits 1 (a bad input), and return its stderr."""
    errors = []
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 1, argv
        errors.append(capsys.readouterr().err)
    return errors


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {"no_face": tmp / "black.png", "corrupt": tmp / "truncated.jpg",
             "not_image": tmp / "notes.jpg", "huge": tmp / "huge.png",
             "missing": tmp / "missing.jpg", "empty": tmp / "empty.png",
             "strip": tmp / "strip.png"}
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(files["no_face"])
    Image.fromarray(np.full((60, 60, 3), 99, np.uint8)).save(tmp / "ok.jpg")
    files["corrupt"].write_bytes((tmp / "ok.jpg").read_bytes()[:200])
    files["not_image"].write_text("this is a text file, not a photo\n")
    Image.fromarray(np.full((100, 120, 3), 80, np.uint8)).save(files["huge"])
    files["empty"].write_bytes(b"")
    Image.new("RGB", (1, 10_000), (120, 90, 80)).save(files["strip"])
    return files


@pytest.mark.parametrize("case,message", [
    ("no_face", "no face found"), ("corrupt", ""), ("not_image", ""), ("huge", ""),
    ("missing", "no such file"), ("empty", "empty"), ("strip", "1x10000 pixels, a strip")])
def test_bad_image_fails_cleanly_everywhere(setup, case, message, capsys, monkeypatch):
    import slimface.io.image as image_io

    monkeypatch.setattr(image_io, "MAX_PIXELS", 10_000)  # makes the 120x100 file "huge"
    tmp, faces, db = setup
    bad = _bad_files(tmp)[case]
    good = str(faces["p1"][0])
    before = _snapshot(db)
    commands = [["verify", str(bad), good, "--model", "tiny-test", "--threshold", "0.5"],
                ["gallery", "enroll", str(db), "--name", "p1", good, str(bad)],
                ["gallery", "identify", str(db), str(bad)]]
    for err in _errors_of_refused(commands, capsys):
        assert err.startswith(f"slimface: error: {bad}:"), err
        assert message in err and "Traceback" not in err
    assert _snapshot(db) == before  # nothing half-enrolled


def test_several_faces_refused_on_enroll_without_partial_write(setup, capsys):
    tmp, faces, db = setup
    two = two_face_image(tmp / "two.png")
    before = _snapshot(db)
    assert main(["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0]),
                 str(two)]) == 1
    assert f"{two}: 2 faces found" in capsys.readouterr().err
    assert _snapshot(db) == before


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "I;16"])
def test_grey_alpha_and_16_bit_images_are_accepted(setup, mode, capsys):
    tmp, faces, _ = setup
    rgb = np.asarray(Image.open(faces["p0"][1]).convert("RGB"))
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)  # 16-bit grey
    else:
        img = Image.fromarray(rgb).convert(mode)
    path = tmp / f"odd_{mode.replace(';', '')}.png"
    img.save(path)
    assert main(["verify", str(path), str(faces["p0"][0]), "--model", "tiny-test",
                 "--threshold", "0.0"]) == 0, capsys.readouterr().err


def test_unknown_model_name_lists_close_matches(setup, capsys):
    _, faces, _ = setup
    a = str(faces["p0"][0])
    assert main(["verify", a, a, "--model", "tiny-tset", "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'tiny-tset'" in err and "tiny-test" in err


@pytest.mark.parametrize("argv", [["verify", "A", "A", "--threshold", "0.5"], ["embed", "A"],
                                  ["gallery", "create", "DB"]])
def test_architecture_with_random_weights_is_refused(setup, argv, capsys, tmp_path):
    """An architecture name would match faces with random weights: refused, with the
    pretrained model it was probably meant to be."""
    _, faces, _ = setup
    argv = [str(faces["p0"][0]) if a == "A" else str(tmp_path / "new.db") if a == "DB" else a
            for a in argv]
    assert main([*argv, "--model", "mobilefacenet"]) == 1
    err = capsys.readouterr().err
    assert "architecture with random weights" in err and "mobilefacenet-tflite" in err
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize("suffix", [".slim", ".pt", ".onnx"])
def test_broken_model_file_is_named(setup, suffix, capsys):
    tmp, faces, _ = setup
    broken = tmp / f"broken{suffix}"
    broken.write_bytes(b"\x00garbage" * 64)
    a = str(faces["p0"][0])
    assert main(["verify", a, a, "--model", str(broken), "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:" in err and "Traceback" not in err


def test_gallery_built_with_another_model_is_refused_without_write(setup, monkeypatch,
                                                                    capsys):
    _, faces, db = setup
    register_tiny(monkeypatch, name="tiny-other", seed=3)
    before = _snapshot(db)
    for argv in (["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0]),
                  "--model", "tiny-other"],
                 ["gallery", "identify", str(db), str(faces["p1"][0]), "--model", "tiny-other"]):
        assert main(argv) == 1
        assert f"{db}: gallery was built with model 'tiny-test'" in capsys.readouterr().err
    assert _snapshot(db) == before


def _damaged_jpeg(tmp: Path, source: Path) -> Path:
    """A face photo saved as JPEG whose middle scan bytes were overwritten (ending in a
    marker, which every libjpeg notices)."""
    clean = tmp / "clean.jpg"
    Image.open(source).convert("RGB").resize((96, 96)).save(clean, quality=90)
    data = clean.read_bytes()
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    mid = (start + len(data) - 2) // 2
    damaged = tmp / "damaged.jpg"
    damaged.write_bytes(data[:mid] + bytes(30) + b"\xff\xd5" + data[mid + 32:])
    return damaged


def test_damaged_jpeg_is_refused_unless_allowed_on_every_command(setup, capsys):
    tmp, faces, db = setup
    bad = _damaged_jpeg(tmp, faces["p1"][0])
    good = str(faces["p1"][1])
    before = _snapshot(db)
    commands = [["verify", str(bad), good, "--model", "tiny-test", "--threshold", "0.5"],
                ["embed", str(bad), "--model", "tiny-test"],
                ["gallery", "enroll", str(db), "--name", "p1", good, str(bad)],
                ["gallery", "identify", str(db), str(bad)]]
    for err in _errors_of_refused(commands, capsys):
        assert err.startswith(f"slimface: error: {bad}: damaged image data (Corrupt JPEG"), err
        assert "pass --allow-damaged to use it anyway" in err
    assert _snapshot(db) == before
    for argv in commands:
        assert main([*argv, "--allow-damaged", "--json"]) == 0, argv
        captured = capsys.readouterr()
        assert f"slimface: warning: {bad}: damaged image data (Corrupt JPEG" in captured.err
        assert "used anyway (--allow-damaged)" in captured.err
        assert f"{bad}: damaged image data" in captured.out  # the warning is in the result too


def test_face_matcher_refuses_damaged_jpeg_unless_allowed(setup):
    import warnings as pywarnings

    import slimface
    from slimface.errors import DamagedImageError
    from slimface.io.image import DamagedImageWarning

    tmp, faces, db = setup
    bad = _damaged_jpeg(tmp, faces["p1"][0])
    with pytest.raises(DamagedImageError, match="pass allow_damaged=True to use it anyway"):
        slimface.FaceMatcher("tiny-test", gallery=db).identify(bad)
    fm = slimface.FaceMatcher("tiny-test", gallery=db, allow_damaged=True)
    result = fm.identify(bad)
    assert result.warnings and "used anyway (allow_damaged=True)" in result.warnings[0]
    assert result.as_dict()["warnings"] == result.warnings
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        fm.enroll("p1", [bad])
    assert any(issubclass(w.category, DamagedImageWarning) for w in caught)


def test_no_face_in_a_big_photo_says_how_small_a_face_can_be_missed():
    from types import SimpleNamespace

    from slimface.align.pipeline import small_face_note

    retinaface = SimpleNamespace(min_face_px=lambda: 16.0)
    assert small_face_note(SimpleNamespace(size=(250, 250)), retinaface) == ""  # LFW-size
    note = small_face_note(SimpleNamespace(size=(6000, 4500)), retinaface)
    assert "6000x4500" in note and "50 px" in note and "crop around the face" in note
    # and the note reaches the error of a real photo with no face
    from slimface.align.pipeline import align_image
    from slimface.errors import NoFaceError

    with pytest.raises(NoFaceError, match="3000x2000 photo, faces narrower than about 25 px"):
        align_image(np.full((2000, 3000, 3), 128, np.uint8))


def test_a_strip_of_an_image_is_refused_before_the_detector_sees_it(tmp_path):
    """The real pipeline's downscaling once shrank a 1x10000 image's short side to nothing
    (an OpenCV traceback); the check reads the size a Photo reports before any decoding."""
    from slimface.align.photo import Photo
    from slimface.errors import NoFaceError
    from slimface.gallery.embedder import _check_proportions

    strip = tmp_path / "strip.png"
    Image.new("RGB", (30, 20_000), (120, 90, 80)).save(strip)
    with pytest.raises(NoFaceError, match=r"strip.png: the image is 30x20000 pixels, a strip"):
        _check_proportions(strip, Photo.open(strip))
    _check_proportions(strip, np.zeros((1000, 10, 3), np.uint8))  # 100:1 still goes through


def test_no_face_advice_does_not_offer_a_centre_crop_of_nothing() -> None:
    from slimface.gallery.embedder import _no_face_advice

    rng = np.random.default_rng(0)
    assert "too small" in _no_face_advice(rng.integers(0, 255, (20, 20, 3), np.uint8))
    assert "blank" in _no_face_advice(np.full((300, 300, 3), 90, np.uint8))
    assert _no_face_advice(rng.integers(0, 255, (300, 300, 3), np.uint8)) == ""

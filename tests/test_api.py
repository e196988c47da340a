"""``slimface.FaceMatcher``: the Python API mirrors verify / embed / enroll / identify."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _gallery_fakes import make_embedder, write_faces

import slimface
from slimface.errors import GalleryError, NoFaceError, SlimfaceError


@pytest.fixture()
def people(tmp_path: Path) -> dict[str, list[Path]]:
    return write_faces(tmp_path / "img", 3, 3)


def test_import_slimface_stays_light_and_exposes_facematcher():
    code = ("import sys, slimface; assert 'torch' not in sys.modules and 'faiss' not in "
            "sys.modules; from slimface import FaceMatcher; print(FaceMatcher.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "FaceMatcher"


def test_verify_and_embed(people):
    fm = slimface.FaceMatcher(embedder=make_embedder(), threshold=0.9)
    e = fm.embed(people["p0"][0])
    assert e.shape == (16,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    same = fm.verify(people["p0"][0], people["p0"][1])
    assert same.same and same.threshold == 0.9 and same.similarity > 0.9
    assert same.as_dict()["faces"][0]["status"] == "detected"


def test_enroll_identify_remove(tmp_path: Path, people):
    with slimface.FaceMatcher(embedder=make_embedder(), gallery=tmp_path / "g.db",
                              threshold=0.5) as fm:
        for name, imgs in people.items():
            assert fm.enroll(name, imgs[:2], metadata={"k": name}) == 2
        hits = fm.identify_many([imgs[2] for imgs in people.values()], top_k=2)
        assert [h.match.name for h in hits] == list(people)
        assert fm.identify(people["p1"][2]).as_dict()["match"] == "p1"
        assert fm.remove("p1") == 2
        assert fm.identify(people["p1"][2]).candidates[0].name != "p1"


def test_enroll_is_all_or_nothing(tmp_path: Path, people):
    from PIL import Image

    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(black)
    fm = slimface.FaceMatcher(embedder=make_embedder(), gallery=tmp_path / "g.db")
    fm.enroll("p0", people["p0"][:1])
    with pytest.raises(NoFaceError, match=f"{black}: no face found"):
        fm.enroll("p1", [people["p1"][0], black])
    assert [i.name for i in fm.open_gallery().identities()] == ["p0"]


def test_gallery_of_another_model_is_refused(tmp_path: Path, people):
    slimface.FaceMatcher(embedder=make_embedder(seed=0), gallery=tmp_path / "g.db").enroll(
        "p0", people["p0"][:1])
    other = slimface.FaceMatcher(embedder=make_embedder(seed=1), gallery=tmp_path / "g.db")
    with pytest.raises(GalleryError, match="other weights under the name 'TinyBackbone'"):
        other.identify(people["p0"][1])


def test_gallery_advice_depends_on_whether_the_name_or_only_the_weights_changed(tmp_path):
    from slimface.gallery.gallery import ModelInfo, check_compatible

    built = ModelInfo("slimface-mobile", "a" * 24, "arcface112", 128, "sum")
    upgraded = ModelInfo("slimface-mobile", "b" * 24, "arcface112", 192, "sum")
    with pytest.raises(GalleryError, match="changed since .*slimface models"):
        check_compatible(tmp_path / "g.db", built, upgraded)
    other = ModelInfo("dlib-resnet", "c" * 24, "dlib150", 128, "sum")
    with pytest.raises(GalleryError, match=r"open it with that model \(--model slimface-mobile, "
                                            r"or FaceMatcher\('slimface-mobile'\) in Python\) "
                                            r"or create a new"):
        check_compatible(tmp_path / "g.db", built, other)
    other_flip = ModelInfo("slimface-mobile", "a" * 24, "arcface112", 128, "none")
    with pytest.raises(GalleryError, match="--model slimface-mobile"):
        check_compatible(tmp_path / "g.db", built, other_flip)  # same weights: no "upgrade"
    check_compatible(tmp_path / "g.db", built, built)  # the same model passes


def test_identify_without_gallery_and_verify_without_threshold_explain_themselves(people):
    fm = slimface.FaceMatcher(embedder=make_embedder())
    with pytest.raises(GalleryError, match="FaceMatcher\\(gallery=PATH\\)"):
        fm.identify(people["p0"][0])
    with pytest.raises(SlimfaceError, match="no calibrated threshold"):
        fm.verify(people["p0"][0], people["p0"][1])


def test_embed_faces_in_threads_match_the_serial_loop_in_input_order(people):
    paths = [p for ps in people.values() for p in ps]
    serial = slimface.FaceMatcher(embedder=make_embedder(), threads=1).embed_faces(paths)
    threaded = slimface.FaceMatcher(embedder=make_embedder(), threads=3).embed_faces(paths)
    assert [f.path for f in threaded] == [str(p) for p in paths]
    np.testing.assert_allclose(np.stack([f.embedding for f in threaded]),
                               np.stack([f.embedding for f in serial]), atol=1e-6)


def test_embed_faces_in_threads_raises_the_first_bad_image(tmp_path: Path, people):
    from PIL import Image

    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(black)
    paths = [people["p0"][0], black, people["p1"][0], people["p2"][0]]
    with pytest.raises(NoFaceError, match="black.png"):
        slimface.FaceMatcher(embedder=make_embedder(), threads=2).embed_faces(paths)


def test_photos_in_threads_share_the_cores_of_a_pytorch_model(people, monkeypatch):
    """Each of n photos in flight gets cores/n PyTorch threads, restored afterwards."""
    import os

    import torch

    monkeypatch.setenv("SLIMFACE_EMBED_RUNTIME", "torch")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    emb = make_embedder()
    seen, forward = [], emb.model.forward
    monkeypatch.setattr(emb.model, "forward",
                        lambda x: seen.append(torch.get_num_threads()) or forward(x))
    before = torch.get_num_threads()
    slimface.FaceMatcher(embedder=emb, threads=2).embed_faces(people["p0"][:2])
    assert seen and set(seen) == {2} and torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [0, -1, True])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(SlimfaceError, match="threads"):
        slimface.FaceMatcher(embedder=make_embedder(), threads=threads)


def test_default_threads_use_the_cores_at_most_four():
    from slimface.gallery.embedder import MAX_DEFAULT_THREADS

    fm = slimface.FaceMatcher(embedder=make_embedder())
    assert 1 <= fm.threads <= MAX_DEFAULT_THREADS


def test_names_top_k_and_empty_queries_are_checked(tmp_path: Path, people):
    with slimface.FaceMatcher(embedder=make_embedder(), gallery=tmp_path / "g.db",
                              threshold=0.5) as fm:
        with pytest.raises(GalleryError, match="must be a string"):
            fm.enroll(None, people["p0"][:1])          # not a person called "None"
        fm.enroll("p0", people["p0"][:1])
        for top_k in (0, -1, 1.5):
            with pytest.raises(GalleryError, match="top_k"):
                fm.identify(people["p0"][1], top_k=top_k)
        assert fm.identify_many([]) == []


@pytest.mark.parametrize("option", [{"flip": "both"}, {"pad": 50}, {"pad": -0.5}])
def test_flip_and_pad_are_checked_before_the_model_loads(option):
    with pytest.raises(SlimfaceError, match=next(iter(option))):
        slimface.FaceMatcher("no-such-model", **option)


def test_pixels_in_memory_embed_as_their_file_does(people, tmp_path):
    """A video frame or a PIL image needs no file: the same embedding as the file's."""
    from PIL import Image

    fm = slimface.FaceMatcher(embedder=make_embedder(), threshold=0.5, gallery=tmp_path / "g.db")
    path = people["p0"][0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    from_file = fm.embed(path)
    np.testing.assert_allclose(fm.embed(pixels), from_file, atol=1e-6)
    np.testing.assert_allclose(fm.embed(Image.open(path)), from_file, atol=1e-6)
    result = fm.verify(pixels, path)
    assert result.same and result.faces[0]["path"].startswith("<pixels 40x40 ")
    # one array enrolls as one image; another of the same size is another image
    other = np.asarray(Image.open(people["p0"][1]).convert("RGB"))
    assert fm.enroll("p0", pixels) == 1 and fm.enroll("p0", [other]) == 2
    assert fm.identify(other).match.name == "p0"


def test_an_image_that_is_not_a_path_or_pixels_or_a_threshold_out_of_range_is_named(people):
    fm = slimface.FaceMatcher(embedder=make_embedder(), threshold=0.5)
    with open(people["p0"][0], "rb") as opened:
        for wrong, kind in ((None, "builtins.NoneType"), (opened, "BufferedReader"),
                            (b"\xff\xd8", "builtins.bytes")):
            with pytest.raises(TypeError, match=rf"file path .*NumPy array or a PIL image; "
                                                rf"got .*{kind}"):
                fm.embed(wrong)
    pixels = np.zeros((112, 112, 3), np.float32)
    with pytest.raises(SlimfaceError, match=r"<pixels of shape \(112, 112, 3\), float32>: "
                                            r"pixels must be uint8"):
        fm.verify(people["p0"][0], pixels)
    with pytest.raises(TypeError, match=r"embed_faces takes a list of images; got one image"):
        fm.embed_faces(pixels.astype(np.uint8))
    for bad in (2.0, -1.5, True):
        with pytest.raises(SlimfaceError, match="threshold is a cosine similarity"):
            slimface.FaceMatcher(embedder=make_embedder(), threshold=bad)


def test_embed_faces_bad_file_skip_leaves_each_error_in_its_place(tmp_path: Path, people):
    from slimface.errors import ImageError

    from PIL import Image

    black = tmp_path / "black.png"  # no face for the test aligner
    Image.new("RGB", (40, 40)).save(black)
    with slimface.FaceMatcher(embedder=make_embedder(), gallery=tmp_path / "g.db",
                              threshold=0.5) as fm:
        fm.enroll("p0", people["p0"][:2])
        images = [people["p0"][2], black]
        with pytest.raises(ImageError, match="black.png"):
            fm.embed_faces(images)
        got = fm.embed_faces(images, bad_file="skip")
        assert isinstance(got[1], NoFaceError) and got[1].path == str(black)
        (result,) = fm.identify_faces([got[0]])
        assert result.match is not None and result.match.name == "p0"
        with pytest.raises(SlimfaceError, match="bad_file must be one of error, skip"):
            fm.embed_faces(images, bad_file="ignore")
        with pytest.raises(TypeError, match="leave out what"):
            fm.identify_faces(got)


def test_enrolling_someone_elses_photo_or_two_people_under_one_name_warns(people, tmp_path):
    import warnings as pywarnings

    from slimface.errors import EnrollmentWarning

    # the tiny model scores one person's photos above 0.999, two people at 0.96-0.98
    fm = slimface.FaceMatcher(embedder=make_embedder(), threshold=0.99, gallery=tmp_path / "g.db")
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("error", EnrollmentWarning)  # a clean enrolment is quiet
        fm.enroll("p0", people["p0"][:2])
    with pytest.warns(EnrollmentWarning, match=r"p0_2.png: matches p0 .*not x; enrolled as x"):
        assert fm.enroll("x", people["p0"][2]) == 1
    with pytest.warns(EnrollmentWarning, match=r"p1_0.png and .*p2_0.png: .*not the same person"):
        assert fm.enroll("y", [people["p1"][0], people["p2"][0]]) == 2


@pytest.mark.data
def test_a_face_too_small_to_match_well_is_embedded_with_a_warning(lfw_root: Path, tmp_path):
    """An LFW photo shrunk to 75 px holds a face about 24 px wide (see
    benchmarks/face_size.py): embedded, with a note; the photo itself gives none."""
    import cv2

    from slimface.errors import SmallFaceWarning
    from slimface.io.image import load_image

    photo = load_image(lfw_root / "lfw-deepfunneled/Colin_Powell/Colin_Powell_0001.jpg")
    small = cv2.resize(photo, (75, 75), interpolation=cv2.INTER_AREA)
    fm = slimface.FaceMatcher(face="central", threshold=0.5, gallery=tmp_path / "g.db")
    assert fm.embed_face(photo).warnings == []
    face = fm.embed_face(small)
    assert face.box[2] - face.box[0] < 32
    assert face.warnings == [f"{face.path}: the face is {face.box[2] - face.box[0]:.0f} pixels "
                             "wide; faces under 32 px match much less reliably (a closer or "
                             "sharper photo helps)"]
    with pytest.warns(SmallFaceWarning, match="pixels wide"):
        fm.enroll("Powell", small)

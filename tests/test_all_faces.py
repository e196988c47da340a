"""Every face of a group photo: ``align_all``, ``FaceMatcher.embed_all`` / ``identify_all``
and ``--face all`` on ``embed``, ``gallery identify`` and ``align`` (one answer per face, left to right,
with its box); the commands that compare one face (verify, enroll) do not offer it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _gallery_fakes import make_embedder, small_gallery, two_face_image
from PIL import Image

import slimface
from slimface.cli.main import build_parser, main
from slimface.errors import NoFaceError, SlimfaceError


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch):
    return small_gallery(tmp_path, monkeypatch)


def test_embed_all_numbers_each_face_and_embeds_it_as_the_single_choices_do(tmp_path):
    # (the left-to-right order is the pipeline's: the group-photo tests below check it)
    two = two_face_image(tmp_path / "two.png")
    faces = slimface.FaceMatcher(embedder=make_embedder()).embed_all(two)
    assert [f.face for f in faces] == [1, 2]
    largest = slimface.FaceMatcher(embedder=make_embedder(), face="largest").embed(two)
    central = slimface.FaceMatcher(embedder=make_embedder(), face="central").embed(two)
    np.testing.assert_allclose(faces[0].embedding, largest, atol=1e-5)
    np.testing.assert_allclose(faces[1].embedding, central, atol=1e-5)


def test_embed_all_of_an_image_without_a_face_follows_no_face(tmp_path):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(black)
    with pytest.raises(NoFaceError, match="black.png"):
        slimface.FaceMatcher(embedder=make_embedder()).embed_all(black)
    faces = slimface.FaceMatcher(embedder=make_embedder(), no_face="centre").embed_all(black)
    assert len(faces) == 1 and faces[0].status == "centre" and faces[0].box is None


def test_face_all_is_not_a_choice_of_one_face():
    with pytest.raises(SlimfaceError, match="embed_all and identify_all"):
        slimface.FaceMatcher(embedder=make_embedder(), face="all")


def test_identify_all_answers_each_face_with_its_box(setup):
    faces, two, db = setup
    fm = slimface.FaceMatcher("tiny-test", gallery=db)
    results = fm.identify_all(two, top_k=1)
    assert [r.face for r in results] == [1, 2]
    assert all(r.path == str(two) and len(r.box) == 4 for r in results)
    record = results[1].as_dict()
    assert record["face"] == 2 and record["box"] == [round(v, 2) for v in results[1].box]
    assert "face" not in fm.identify(faces["p0"][1]).as_dict()  # one face: as before


def test_embed_command_with_face_all_labels_each_face(setup, capsys):
    faces, two, _ = setup
    capsys.readouterr()
    assert main(["embed", str(two), str(faces["p1"][0]), "--model", "tiny-test",
                 "--face", "all"]) == 0
    labels = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert labels == [f"{two}#1", f"{two}#2", f"{faces['p1'][0]}#1"]
    assert main(["embed", str(two), "--model", "tiny-test", "--face", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["face"] for f in out["faces"]] == [1, 2]
    assert all(len(f["box"]) == 4 and len(f["embedding"]) == 16 for f in out["faces"])


def test_identify_command_with_face_all_answers_per_face(setup, capsys):
    _, two, db = setup
    capsys.readouterr()
    assert main(["gallery", "identify", str(db), str(two), "--face", "all", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["face"] for r in results] == [1, 2] and all(r["path"] == str(two)
                                                          for r in results)
    assert main(["gallery", "identify", str(db), str(two), "--face", "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{two} face 1 at (0, 0, ") and lines[1].startswith(
        f"{two} face 2 at (")


@pytest.mark.parametrize("argv", [["verify", "a", "b"], ["gallery", "enroll", "db", "--name",
                                                         "n", "a"]])
def test_commands_that_compare_one_face_do_not_offer_all(argv):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--face", "all"])


@pytest.mark.parametrize("command", ["embed", "identify"])
def test_several_faces_message_offers_face_all_where_it_is_a_choice(setup, command, capsys):
    faces, two, db = setup
    argv = {"embed": ["embed", str(two), "--model", "tiny-test"],
            "identify": ["gallery", "identify", str(db), str(two)]}[command]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--face largest or --face central (--face all: every face)" in err, err


def test_verify_several_faces_message_does_not_offer_all(setup, capsys):
    faces, two, _ = setup
    capsys.readouterr()
    assert main(["verify", str(two), str(faces["p0"][1]), "--model", "tiny-test",
                 "--threshold", "0.5"]) == 1
    assert "--face all" not in capsys.readouterr().err


# ---- a real group photo -------------------------------------------------------------------
GROUP = ["Colin_Powell", "George_W_Bush", "Tony_Blair"]


@pytest.fixture(scope="module")
def group_photo(lfw_root: Path, tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """Three LFW people side by side on a grey 1,500x600 canvas (each face about 200 px
    wide), and two other images of each person to enroll."""
    from slimface.io.image import load_image

    base = lfw_root / "lfw-deepfunneled"
    people = {name: sorted((base / name).glob("*.jpg"))[:3] for name in GROUP}
    if not all(len(files) == 3 for files in people.values()):
        pytest.skip("LFW images of the group photo's people are missing")
    canvas = np.full((600, 1500, 3), 110, np.uint8)
    for i, files in enumerate(people.values()):
        face = load_image(files[0])[50:200, 50:200]  # the face, not the neighbours'
        big = np.asarray(Image.fromarray(face).resize((300, 300), Image.BILINEAR))
        canvas[150:450, 100 + 480 * i: 400 + 480 * i] = big
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    Image.fromarray(canvas).save(path, quality=92)
    return path, {name: files[1:] for name, files in people.items()}


@pytest.mark.data
def test_every_face_of_a_group_photo_is_found_and_named(group_photo, tmp_path):
    path, enrolled = group_photo
    from slimface.align import align_all

    aligned = align_all(path)
    assert len(aligned) == 3 and all(a.status == "detected" for a in aligned)
    centres = [(a.face.box[0] + a.face.box[2]) / 2 for a in aligned]
    # each face where its image was pasted (centres at 250, 730, 1210 px)
    assert all(abs(c - (250 + 480 * i)) < 60 for i, c in enumerate(centres)), centres
    with slimface.FaceMatcher(gallery=tmp_path / "g.db") as fm:
        for name, files in enrolled.items():
            fm.enroll(name, files)
        results = fm.identify_all(path)
    assert [r.match.name if r.match else None for r in results] == GROUP


@pytest.mark.data
def test_align_command_with_face_all_writes_every_face(group_photo, tmp_path, capsys):
    path, enrolled = group_photo
    single = next(iter(enrolled.values()))[0]
    src = tmp_path / "src"
    src.mkdir()
    for file in (path, single):
        (src / file.name).write_bytes(file.read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    argv = ["align", str(src), str(out), "--face", "all", "--json"]
    assert main(argv) == 1  # a bad file stops the run and says how to go on
    assert "--bad-file skip" in capsys.readouterr().err
    assert main([*argv, "--bad-file", "skip"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["bad_files"] == 1
    assert summary["written"] == summary["detected"] == 4
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "group_face1.png", "group_face2.png", "group_face3.png", f"{single.stem}_face1.png"])
    assert Image.open(out / "group_face2.png").size == (112, 112)


@pytest.mark.parametrize("no_face,written", [("centre", ["black_face1.png"]), ("skip", [])])
def test_align_face_all_of_an_image_without_a_face_follows_no_face(tmp_path, capsys, no_face,
                                                                   written):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(black)
    out = tmp_path / "out"
    assert main(["align", str(black), str(out), "--face", "all", "--no-face", no_face,
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["no_face"] == 1 and summary["written"] == len(written)
    assert sorted(p.name for p in out.glob("*")) == written


@pytest.mark.data
def test_small_faces_beside_big_ones_in_a_big_group_photo_are_found(lfw_root, tmp_path):
    """A 4,000x2,000 photo with three faces about 280 px wide and six about 55 px (14 px on
    the 1,024 px copy, too small for RetinaFace there): the tiled look finds the six."""
    from slimface.align import align_all
    from slimface.io.image import load_image

    base = lfw_root / "lfw-deepfunneled"
    files = [sorted((base / name).glob("*.jpg"))[:1] for name in
             (*GROUP, "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez",
              "Jean_Chretien", "John_Ashcroft")]
    if not all(files):
        pytest.skip("LFW images of the group photo's people are missing")
    canvas = np.full((2000, 4000, 3), 110, np.uint8)
    centres = []
    for i, (file,) in enumerate(files):
        side, top = (450, 300) if i < 3 else (90, 1200)
        face = Image.fromarray(load_image(file)[50:200, 50:200]).resize((side, side))
        left = 150 + 420 * i
        canvas[top:top + side, left:left + side] = np.asarray(face)
        centres.append((left + side / 2, top + side / 2, max(20.0, 0.15 * side)))
    path = tmp_path / "big_group.jpg"
    Image.fromarray(canvas).save(path, quality=90)
    boxes = [a.face.box for a in align_all(path)]
    found = [(float(b[0] + b[2]) / 2, float(b[1] + b[3]) / 2) for b in boxes]
    assert len(found) == 9
    assert all(any(abs(x - cx) < tol and abs(y - cy) < tol for x, y in found)
               for cx, cy, tol in centres), (found, centres)


def _whole_image_aligner(image, **kwargs):
    """One 'face' whose box is the whole (possibly padded) image and 3 px past its edges."""
    from types import SimpleNamespace

    from slimface.align.detect import Face

    h, w = image.shape[:2]
    face = Face(np.array([-3.0, -3.0, w + 3.0, h + 3.0]), 0.9, np.zeros((5, 2)), "5pt")
    crop = np.array(Image.fromarray(image).resize((112, 112)))
    return SimpleNamespace(crop=crop, face=face, status="detected")


@pytest.mark.parametrize("pad", [0.0, 0.25])
def test_boxes_are_in_the_files_pixels_and_clipped_to_them(tmp_path, pad):
    from _gallery_fakes import TinyBackbone, fake_load

    from slimface.gallery.embedder import FaceEmbedder

    path = tmp_path / "face.png"
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(path)
    embedder = FaceEmbedder(TinyBackbone().eval(), flip="none", pad=pad,
                            aligner=_whole_image_aligner, image_loader=fake_load)
    assert embedder.embed_file(path).box == [0.0, 0.0, 40.0, 30.0]


def test_identify_all_gives_each_face_its_detection_score(setup):
    _, two, db = setup
    results = slimface.FaceMatcher("tiny-test", gallery=db).identify_all(two)
    assert [r.score for r in results] == [pytest.approx(0.9)] * 2  # the fake detector's
    assert all(r.as_dict()["score"] == round(r.score, 4) for r in results)


@pytest.mark.parametrize("method", ["embed_faces", "embed_all_faces", "identify_many"])
def test_one_path_where_a_list_is_expected_is_refused_clearly(tmp_path, method):
    two = two_face_image(tmp_path / "two.png")
    fm = slimface.FaceMatcher(embedder=make_embedder())
    with pytest.raises(TypeError, match=f"FaceMatcher.{method} takes a list of image paths"):
        getattr(fm, method)(str(two))


def test_python_several_faces_message_names_the_every_face_methods(tmp_path):
    from slimface.errors import MultipleFacesError

    two = two_face_image(tmp_path / "two.png")
    with pytest.raises(MultipleFacesError, match="every face: FaceMatcher.embed_all"):
        slimface.FaceMatcher(embedder=make_embedder()).embed(two)


def test_an_embedder_with_its_own_one_face_aligner_needs_one_for_every_face(tmp_path):
    from _gallery_fakes import TinyBackbone, fake_align, fake_load

    from slimface.gallery.embedder import FaceEmbedder

    two = two_face_image(tmp_path / "two.png")
    embedder = FaceEmbedder(TinyBackbone().eval(), aligner=fake_align, image_loader=fake_load)
    with pytest.raises(SlimfaceError, match="give it all_aligner="):
        embedder.embed_file_all(two)
    nobody = FaceEmbedder(TinyBackbone().eval(), aligner=fake_align, image_loader=fake_load,
                          all_aligner=lambda image, **kw: [])
    with pytest.raises(NoFaceError, match="two.png: no face found"):
        nobody.embed_file_all(two)


def test_a_damage_note_shared_by_every_face_is_printed_once(capsys):
    from slimface.cli.verify import print_warnings

    print_warnings(["g.jpg: damaged", "g.jpg: damaged", "h.jpg: damaged"])
    assert capsys.readouterr().err.count("g.jpg: damaged") == 1


@pytest.mark.data
def test_every_face_with_a_detector_chain_keeps_the_fallbacks_small_faces(lfw_root, tmp_path):
    """dlib's HOG (80 px window) finds the three big faces; RetinaFace, its fallback, finds
    the small one beside them (a chain stopping at the first detector would lose it) and
    hands it back to HOG at HOG's size, as for a single face."""
    from slimface.align import align_all
    from slimface.io.image import load_image

    base = lfw_root / "lfw-deepfunneled"
    files = [sorted((base / name).glob("*.jpg"))[:1] for name in (*GROUP, "Hugo_Chavez")]
    if not all(files):
        pytest.skip("LFW images of the group photo's people are missing")
    canvas = np.full((600, 1500, 3), 110, np.uint8)
    for i, (file,) in enumerate(files):
        side, top, left = (300, 150, 100 + 400 * i) if i < 3 else (80, 40, 1350)
        face = Image.fromarray(load_image(file)[50:200, 50:200]).resize((side, side))
        canvas[top:top + side, left:left + side] = np.asarray(face)
    path = tmp_path / "chain.jpg"
    Image.fromarray(canvas).save(path, quality=92)
    faces = align_all(path, template="dlib150", detector="dlib_hog",
                      fallback_detector="retinaface")
    assert len(faces) == 4  # the small one handed back to HOG at its size: "detected"
    small = faces[3].face.box
    assert 1350 < (small[0] + small[2]) / 2 < 1430 and 40 < (small[1] + small[3]) / 2 < 120


def test_one_person_is_named_for_one_face_of_a_photo(setup):
    _, two, db = setup  # the gallery holds p0 only: both faces' best name
    fm = slimface.FaceMatcher("tiny-test", gallery=db, threshold=-1.0)
    first, second = fm.identify_all(two)
    named, other = (first, second) if first.match else (second, first)
    assert named.match.name == "p0" and other.match is None
    assert other.best.name == "p0" and other.name_taken_by == named.face
    assert named.candidates[0].score >= other.candidates[0].score
    assert other.as_dict()["name_taken_by"] == named.face and "name_taken_by" not in \
        named.as_dict()

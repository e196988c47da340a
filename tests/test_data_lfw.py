"""LFW pairs parsing: view 2 folds, view 1 split, malformed lines; the exclusion rule and the
calibration sets it guards."""
from __future__ import annotations

from pathlib import Path

import pytest

from slimface.errors import DataError
from slimface.data.calibration import calibration_images
from slimface.data.identity import scan_identity_folders
from slimface.data.lfw import (count_by_class, find_images_root, find_lfw_root, image_path,
                               lfw_excluded_images, lfw_exclusion, lfw_pair_images,
                               lfw_people_not_in_pairs, load_view1, load_view2, parse_pairs,
                               refuse_lfw_pair_images, unique_images)

VIEW2 = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t1\tBob\t1
Dave\t1\t2
Erin\t2\t3
Dave\t1\tErin\t1
Carol\t1\tAlice\t2
"""


def _write_lfw(root: Path, pairs_text: str, people: dict[str, int]) -> Path:
    images = root / "lfw-deepfunneled"
    for name, n in people.items():
        (images / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            image_path(images, name, i).write_bytes(b"")
    (root / "pairs.txt").write_text(pairs_text)
    return root


@pytest.fixture()
def tiny_lfw(tmp_path: Path) -> Path:
    people = {"Alice": 2, "Bob": 3, "Carol": 1, "Dave": 2, "Erin": 4, "Frank": 2}
    root = _write_lfw(tmp_path / "lfw", VIEW2, people)
    (root / "pairsDevTrain.txt").write_text("1\nAlice\t1\t2\nBob\t1\tCarol\t1\n")
    (root / "pairsDevTest.txt").write_text("1\nErin 1 3\nDave 2 Frank 1\n\n")
    return root


def test_view2_gives_folds_in_blocks_of_same_then_different(tiny_lfw: Path):
    pairs = load_view2(tiny_lfw)
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert pairs[1].path_a.name == "Bob_0001.jpg" and pairs[1].path_b.name == "Bob_0003.jpg"
    assert pairs[3].path_a.parent.name == "Carol" and pairs[3].path_b.name == "Bob_0001.jpg"
    assert count_by_class(pairs) == {"same": 4, "different": 4}


def test_view1_is_one_train_test_split(tiny_lfw: Path):
    split = load_view1(tiny_lfw)
    assert [(p.same, p.fold) for p in split.train] == [(True, 0), (False, 0)]
    assert [(p.same, p.fold) for p in split.test] == [(True, 1), (False, 1)]
    assert len(split.pairs) == 4


@pytest.mark.parametrize("text, where, what", [
    ("2 2\nAlice 1 2\n", "pairs.txt: header", "promises 8"),
    ("x 2\n", "pairs.txt:1", "header"),
    ("1 1\nAlice 1\nAlice 1 Bob 2\n", "pairs.txt:2", "same-person line"),
    ("1 1\nAlice 1 2\nAlice one Bob 2\n", "pairs.txt:3", "image numbers"),
    ("1 1\nAlice 1 2\nAlice 1 Bob\n", "pairs.txt:3", "different-person line"),
    ("", "pairs.txt:1", "empty"),
])
def test_malformed_pairs_name_file_and_line(tmp_path: Path, text: str, where: str, what: str):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(DataError) as err:
        parse_pairs(tmp_path / "pairs.txt", images_root=tmp_path)
    assert where in str(err.value) and what in str(err.value)


def test_missing_pairs_file_and_images_are_data_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        parse_pairs(tmp_path / "pairs.txt", images_root=tmp_path)
    with pytest.raises(DataError, match="no LFW image folder"):
        find_images_root(tmp_path)
    with pytest.raises(DataError, match="no LFW found"):
        find_lfw_root(tmp_path)


def test_unique_images_keeps_first_appearance_order(tiny_lfw: Path):
    paths = unique_images(load_view2(tiny_lfw))
    assert len(paths) == len(set(paths)) == 11
    assert [p.name for p in paths[:3]] == ["Alice_0001.jpg", "Alice_0002.jpg", "Bob_0001.jpg"]


def test_pair_images_and_people_not_in_pairs(tiny_lfw: Path):
    excluded = lfw_pair_images(tiny_lfw / "pairs.txt")
    assert (tiny_lfw / "lfw-deepfunneled" / "Erin" / "Erin_0004.jpg").resolve() not in excluded
    assert (tiny_lfw / "lfw-deepfunneled" / "Bob" / "Bob_0003.jpg").resolve() in excluded
    free = lfw_people_not_in_pairs(tiny_lfw / "pairs.txt")
    assert list(free) == ["Frank"] and len(free["Frank"]) == 2
    both = lfw_pair_images([tiny_lfw / "pairs.txt", tiny_lfw / "pairsDevTest.txt"])
    assert (tiny_lfw / "lfw-deepfunneled" / "Frank" / "Frank_0001.jpg").resolve() in both


def test_exclusion_covers_view1_and_view2(tiny_lfw: Path):
    rule = lfw_exclusion(tiny_lfw)
    assert {"Alice", "Bob", "Carol", "Dave", "Erin", "Frank"} == rule.people  # Frank: view 1
    assert ("Frank", 1) in rule.images and ("Frank", 2) not in rule.images
    assert ("Erin", 3) in rule.images and ("Erin", 4) not in rule.images
    images = tiny_lfw / "lfw-deepfunneled"
    excluded = lfw_excluded_images(tiny_lfw)
    assert (images / "Frank" / "Frank_0001.jpg").resolve() in excluded
    assert (images / "Erin" / "Erin_0004.jpg").resolve() not in excluded
    view2_only = lfw_exclusion(tiny_lfw, files=("pairs.txt",))
    assert "Frank" not in view2_only.people and ("Erin", 3) in view2_only.images


def test_exclusion_needs_view2(tmp_path: Path):
    (tmp_path / "pairsDevTrain.txt").write_text("1\nAlice 1 2\nAlice 1 Bob 1\n")
    with pytest.raises(DataError, match="pairs.txt not found"):
        lfw_exclusion(tmp_path)


def test_refuse_names_a_view1_image_and_lets_unpaired_images_through(tiny_lfw: Path):
    images = tiny_lfw / "lfw-deepfunneled"
    refuse_lfw_pair_images([images / "Erin" / "Erin_0004.jpg", images / "Frank" / "Frank_0002.jpg"],
                           data_root=tiny_lfw.parent)
    with pytest.raises(DataError, match="Frank_0001.jpg: refusing to train on an LFW pair"):
        refuse_lfw_pair_images([images / "Erin" / "Erin_0004.jpg",
                                images / "Frank" / "Frank_0001.jpg"], purpose="train")


def test_refuse_checks_a_copy_against_the_data_roots_lfw(tiny_lfw: Path, tmp_path: Path):
    copy = tmp_path / "faces" / "Bob_0003.jpg"
    copy.parent.mkdir()
    copy.write_bytes(b"")
    refuse_lfw_pair_images([copy], data_root=tiny_lfw.parent)  # another file of the same name
    pair_image = tiny_lfw / "lfw-deepfunneled" / "Bob" / "Bob_0003.jpg"
    link = tmp_path / "faces" / "link.jpg"
    link.symlink_to(pair_image)
    with pytest.raises(DataError, match="link.jpg"):
        refuse_lfw_pair_images([link], data_root=tiny_lfw.parent)


def test_an_lfw_folder_without_pairs_files_is_refused(tmp_path: Path):
    face = tmp_path / "lfw_copy" / "Alice" / "Alice_0001.jpg"
    face.parent.mkdir(parents=True)
    face.write_bytes(b"")
    with pytest.raises(DataError, match="without the pairs files"):
        refuse_lfw_pair_images([face], data_root=tmp_path / "no-data")


def test_calibration_images_spread_or_seeded_and_never_pair_images(tiny_lfw: Path,
                                                                    tmp_path: Path):
    folder = tmp_path / "celeb"
    for i in range(10):
        (folder / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        (folder / f"p{i % 3}" / f"{i:02d}.jpg").write_bytes(b"")
    spread = calibration_images(folder, 4, data_root=tiny_lfw.parent)
    assert [p.relative_to(folder).as_posix() for p in spread] == [  # 0, 3, 6, 9 of 10 sorted
        "p0/00.jpg", "p0/09.jpg", "p1/07.jpg", "p2/08.jpg"]
    seeded = calibration_images(folder, 3, seed=1, data_root=tiny_lfw.parent)
    rest = calibration_images(folder, 3, seed=1, skip=3, data_root=tiny_lfw.parent)
    assert len(seeded) == len(rest) == 3 and not set(seeded) & set(rest)
    assert seeded == calibration_images(folder, 3, seed=1, data_root=tiny_lfw.parent)
    with pytest.raises(DataError, match="refusing to calibrate on an LFW pair image"):
        calibration_images(tiny_lfw / "lfw-deepfunneled" / "Frank", 2)  # view 1 only
    with pytest.raises(DataError, match="calibration folder not found"):
        calibration_images(tmp_path / "nope", 2)


def test_identity_folders_drop_excluded_images(tiny_lfw: Path):
    ids = scan_identity_folders(tiny_lfw / "lfw-deepfunneled",
                                exclude=lfw_excluded_images(tiny_lfw))
    assert [p.name for p in ids.paths] == ["Erin_0004.jpg", "Frank_0002.jpg"]
    assert ids.classes == ["Erin", "Frank"]


def test_old_import_paths_still_work():
    import slimface.compress.pq as pq
    import slimface.data.lfw as lfw
    import slimface.eval.lfw as old
    from slimface.data import calibration
    from slimface.data.roots import data_root
    from slimface.io.paths import data_root as old_data_root

    assert old.parse_pairs is lfw.parse_pairs and old.Pair is lfw.Pair
    assert pq.calibration_paths is calibration.calibration_paths
    assert old_data_root is data_root


@pytest.mark.data
def test_real_view2_matches_published_counts(lfw_root: Path):
    pairs = load_view2(lfw_root)
    assert len(pairs) == 6000 and {p.fold for p in pairs} == set(range(10))
    assert len(unique_images(pairs)) == 7701
    free = lfw_people_not_in_pairs(lfw_root / "pairs.txt")
    assert (len(free), sum(map(len, free.values()))) == (1468, 1549)
    split = load_view1(lfw_root)
    assert (len(split.train), len(split.test)) == (2200, 1000)

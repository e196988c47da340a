"""Training images for distillation: the honesty rule (no LFW pair image), labels, padding."""
from __future__ import annotations

from pathlib import Path

import pytest

from slimface.data.lfw import lfw_excluded_images
from slimface.data.training import UNLABELLED, ImageList, list_training_images, padded_copies
from slimface.errors import DataError


def test_training_list_contains_no_lfw_pair_image(data_root: Path, lfw_root: Path):
    images = list_training_images(data_root, ["lfw_unpaired", "att"])
    excluded = lfw_excluded_images(lfw_root)
    view2_people, view2_images = lfw_pair_names_view2(lfw_root)
    assert len(view2_images) == 7701 and len(view2_people) == 4281  # shared/README.md
    assert len(excluded) >= 7701
    lfw = [p for p, s in zip(images.paths, images.sources) if s == "lfw_unpaired"]
    assert lfw and not any(p.resolve() in excluded for p in lfw)
    excluded_people = {p.parent.name for p in excluded}
    assert not {p.parent.name for p in lfw} & excluded_people
    assert images.counts()["att"] == 400


def lfw_pair_names_view2(lfw_root: Path):
    from slimface.data.lfw import lfw_pair_names

    return lfw_pair_names(lfw_root, files=("pairs.txt",))


def test_unknown_source_is_a_data_error(data_root: Path):
    with pytest.raises(DataError, match="imagenet"):
        list_training_images(data_root, ["imagenet"])


def test_missing_source_folder_names_the_path(tmp_path: Path):
    with pytest.raises(DataError, match="att_faces"):
        list_training_images(tmp_path, ["att"])


def test_labels_are_per_identity_and_unlabelled_rows_are_marked():
    images = ImageList([Path("a"), Path("b"), Path("c")], ["utkface", "att", "att"],
                       ["", "att/s1", "att/s1"])
    labels, classes = images.labels()
    assert classes == ["att/s1"] and labels.tolist() == [UNLABELLED, 0, 0]
    assert images.subset([2]).identities == ["att/s1"]


def test_tight_crops_get_border_padded_copies(data_root: Path):
    from slimface.io.image import load_image

    images = list_training_images(data_root, ["att"]).subset([0, 1])
    out = padded_copies(images, 0.25, workers=1, progress=False)
    orig, padded = load_image(images.paths[0]), load_image(out[0])
    assert padded.shape[0] == orig.shape[0] + 2 * round(orig.shape[0] * 0.25)
    assert out == padded_copies(images, 0.25, workers=1, progress=False)  # written once

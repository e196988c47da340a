"""Templates and the similarity warp: exact recovery of known transforms, dlib chip parity."""
from __future__ import annotations

import math

import numpy as np
import pytest

from slimface.align.templates import get_template, list_templates
from slimface.align.warp import (centre_crop, face_transform, invert_affine,
                                 similarity_transform, warp_face)
from slimface.errors import UnknownNameError


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_templates_registered_with_expected_shapes() -> None:
    assert {"arcface112", "sphereface112x96", "dlib150"} <= set(list_templates())
    sizes = {"arcface112": (112, 112), "sphereface112x96": (112, 96), "dlib150": (150, 150)}
    for name, size in sizes.items():
        t = get_template(name)
        assert t.size == size
        for kind in ("5pt", "dlib5"):
            pts = t.landmarks_for(kind)
            assert pts.shape == (5, 2) and pts.dtype == np.float32
            assert (pts >= 0).all() and (pts[:, 0] < size[1]).all() and (pts[:, 1] < size[0]).all()


def test_arcface_points_are_the_standard_ones() -> None:
    np.testing.assert_allclose(get_template("arcface112").points["5pt"][0], [38.2946, 51.6963],
                               atol=1e-4)
    np.testing.assert_allclose(get_template("sphereface112x96").points["5pt"][4], [62.7299, 92.2041],
                               atol=1e-4)


def test_former_template_name_seed112x96_still_resolves_but_is_not_listed() -> None:
    from slimface.align.templates import canonical_template_name

    new, old = get_template("sphereface112x96"), get_template("seed112x96")
    assert old == new and old.name == "sphereface112x96"
    for kind in ("5pt", "dlib5"):
        np.testing.assert_array_equal(old.points[kind], new.points[kind])
    assert get_template("seed112x96+pad8").size == (128, 112)
    assert "seed112x96" not in list_templates()
    assert canonical_template_name("seed112x96+pad8") == "sphereface112x96+pad8"
    assert canonical_template_name("none") == "none"


def test_renamed_template_keeps_its_crop_cache_key() -> None:
    # the fingerprint the 112x96 geometry had under its former name (crop caches stay valid)
    fp = get_template("sphereface112x96").fingerprint()
    assert fp.startswith("seed112x96|(112, 96)|similarity|0|")
    assert get_template("sphereface112x96+pad8").fingerprint().startswith("seed112x96+pad8|")


def test_dlib150_points_follow_dlib_formula() -> None:
    # (padding + p) / (2 padding + 1) * size, padding 0.25, size 150, dlib's p0
    np.testing.assert_allclose(get_template("dlib150").points["dlib5"][0],
                               [(0.25 + 0.8595674595992) * 100, (0.25 + 0.2134981538014) * 100],
                               atol=1e-4)


def test_unknown_template_lists_names() -> None:
    with pytest.raises(UnknownNameError, match="arcface112"):
        get_template("arcface113")
    with pytest.raises(ValueError, match="landmark kind"):
        get_template("arcface112").landmarks_for("68pt")


def test_padded_template_shifts_points_and_canvas() -> None:
    t = get_template("arcface112+pad8")
    assert t.size == (128, 128)
    np.testing.assert_allclose(t.points["5pt"], get_template("arcface112").points["5pt"] + 8)


@pytest.mark.parametrize("scale,angle", [(1.0, 0.0), (0.37, 0.4), (2.5, -2.8)])
def test_similarity_transform_recovers_known_transform(scale: float, angle: float) -> None:
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    m = _similarity(scale, angle, 12.5, -7.0)
    np.testing.assert_allclose(similarity_transform(src, _apply(m, src)), m, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    src = np.random.default_rng(2).uniform(0, 100, (5, 2))
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_similarity_transform_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="Nx2"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))


@pytest.mark.parametrize("name", ["arcface112", "sphereface112x96"])
def test_landmarks_land_on_template_points(name: str) -> None:
    t = get_template(name)
    image_to_crop = _similarity(0.5, 0.3, 10, 20)
    landmarks = _apply(invert_affine(image_to_crop), t.points["5pt"].astype(np.float64))
    m = face_transform(landmarks, t, "5pt")
    np.testing.assert_allclose(_apply(m, landmarks), t.points["5pt"], atol=1e-4)


def test_warp_moves_a_bright_dot_to_the_template_point() -> None:
    t = get_template("arcface112")
    image = np.zeros((300, 300, 3), np.uint8)
    crop_to_image = _similarity(1.5, 0.2, 40, 60)
    landmarks = _apply(crop_to_image, t.points["5pt"].astype(np.float64))
    x, y = np.rint(landmarks[2]).astype(int)  # nose
    image[y - 1:y + 2, x - 1:x + 2] = 255
    crop = warp_face(image, landmarks, t)
    assert crop.shape == (112, 112, 3)
    peak = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(peak[1] - t.points["5pt"][2, 0]) <= 1.5 and abs(peak[0] - t.points["5pt"][2, 1]) <= 1.5


def test_padded_warp_is_the_plain_warp_with_a_border() -> None:
    image = np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    lm = np.array([[80, 90], [120, 90], [100, 110], [85, 130], [115, 130]], np.float64)
    for name in ("arcface112", "dlib150"):
        plain = warp_face(image, lm, name)
        padded = warp_face(image, lm, f"{name}+pad6")
        assert np.abs(padded[6:-6, 6:-6].astype(int) - plain.astype(int)).max() <= 1


def test_big_downscale_is_area_filtered_first() -> None:
    image = np.full((2000, 2000, 3), 90, np.uint8)
    lm = np.array([[700, 800], [1300, 800], [1000, 1100], [750, 1400], [1250, 1400]], float)
    crop = warp_face(image, lm, "arcface112")
    assert crop.shape == (112, 112, 3) and abs(int(crop[56, 56, 0]) - 90) <= 1


def test_centre_crop_has_template_shape() -> None:
    image = np.zeros((250, 250, 3), np.uint8)
    for name in list_templates():
        assert centre_crop(image, name).shape == (*get_template(name).size, 3)


def test_dlib150_matches_dlib_get_face_chip_on_synthetic_shape() -> None:
    dlib = pytest.importorskip("dlib")
    rng = np.random.default_rng(4)
    image = (rng.integers(0, 256, (60, 60, 3))).astype(np.uint8)
    image = np.kron(image, np.ones((4, 4, 1), np.uint8))  # 240x240, smooth enough to compare
    t = get_template("dlib150")
    truth = _similarity(0.9, 0.15, 50, 30)  # chip -> image
    lm = _apply(truth, t.points["dlib5"].astype(np.float64)) + rng.normal(0, 1.5, (5, 2))
    shape = dlib.full_object_detection(dlib.rectangle(40, 30, 200, 190),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in lm])
    lm_int = np.rint(lm)
    ref = dlib.get_face_chip(image, shape, 150, 0.25)
    ours = warp_face(image, lm_int, t, kind="dlib5")
    diff = np.abs(ref.astype(int) - ours.astype(int))[1:-1, 1:-1]
    assert diff.mean() < 0.05 and diff.max() <= 1

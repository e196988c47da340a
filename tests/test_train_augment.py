"""One augmentation draw, two templates: the teacher's view shows the student's face region,
mirrored, blurred, coloured and mixed alike."""
from __future__ import annotations

import numpy as np
import pytest

from slimface.align.templates import get_template
from slimface.align.warp import face_transform, warp_face, warp_with_matrix
from slimface.train.augment import AugmentConfig, augment_batch, augment_pair, augment_views
from slimface.train.function_matching import canvas_to_teacher, teacher_pad

GEOMETRY = AugmentConfig(low_res=0, blur=0, jpeg=0, colour=0, grey=0, mixup=0)
NOTHING = AugmentConfig(scale=0, rotate_deg=0, shift_px=0, flip=0, low_res=0, blur=0, jpeg=0,
                        colour=0, grey=0, mixup=0)


def coordinate_photo(size: int = 512) -> np.ndarray:
    """Red and green encode the pixel's own x and y (half scale): views can be decoded back
    to the image points they show."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.stack([x / 2, y / 2, np.full_like(x, 128)], axis=-1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def face_landmarks(angle_deg: float, scale: float) -> np.ndarray:
    """ArcFace's 5 points, rotated and scaled about the image centre."""
    pts = get_template("arcface112").landmarks_for("5pt").astype(np.float64) - 56.0
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (scale * pts @ rot.T + 256.0).astype(np.float32)


def canvases(faces: list[tuple[float, float]], student: str = "arcface112",
             teacher: str = "dlib150", pad: int = 8):
    img = coordinate_photo()
    s_t = get_template(student).padded(pad)
    t_t = get_template(teacher).padded(teacher_pad(student, teacher, pad))
    lms = [face_landmarks(a, s) for a, s in faces]
    canvas = np.stack([warp_face(img, lm, s_t) for lm in lms])
    # rounded like the student's (dlib's chips truncate: a half-level bias in the decoding)
    tcanvas = np.stack([warp_with_matrix(img, face_transform(lm, t_t), t_t.size) for lm in lms])
    to_teacher = np.stack([canvas_to_teacher(lm, "5pt", s_t, t_t) for lm in lms])
    return img, lms, canvas, tcanvas, to_teacher


def view_to_image(view: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """Least-squares 3x3 affine from view pixels to the image points they show (central part,
    away from the reflected borders)."""
    h, w = view.shape[:2]
    y0, y1, x0, x1 = int(h * margin), int(h * (1 - margin)), int(w * margin), int(w * (1 - margin))
    ys, xs = np.mgrid[y0:y1, x0:x1]
    src = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1)
    dst = view[y0:y1, x0:x1, :2].reshape(-1, 2).astype(np.float64) * 2
    a, *_ = np.linalg.lstsq(src, dst, rcond=None)
    return np.vstack([a.T, [0, 0, 1]])


def student_to_teacher(sv: np.ndarray, tv: np.ndarray) -> np.ndarray:
    return np.linalg.inv(view_to_image(tv)) @ view_to_image(sv)


def test_same_template_gives_the_teacher_the_student_pixels():
    rng = np.random.default_rng(0)
    canvas = rng.integers(0, 256, (6, 128, 128, 3)).astype(np.uint8)
    eye = np.tile(np.eye(2, 3), (6, 1, 1))
    for cfg, tol in ((AugmentConfig(flip=0.0), 0), (AugmentConfig(flip=1.0), 8)):
        s, t = augment_pair(canvas, canvas, eye, (112, 112), (112, 112),
                            np.random.default_rng([3, 1]), cfg)
        assert np.array_equal(s, augment_batch(canvas, (112, 112),
                                               np.random.default_rng([3, 1]), cfg))
        diff = np.abs(s.astype(int) - t.astype(int))
        assert diff.max() <= tol and diff.mean() < 0.5


def test_unaugmented_teacher_view_is_its_own_template_crop():
    img, lms, canvas, tcanvas, to_teacher = canvases([(8.0, 2.2), (-5.0, 1.9)])
    _, t = augment_pair(canvas, tcanvas, to_teacher, (112, 112), (150, 150),
                        np.random.default_rng(0), NOTHING)
    for view, lm in zip(t, lms):
        own = warp_face(img, lm, "dlib150")
        assert np.abs(view.astype(int) - own.astype(int)).max() <= 1


@pytest.mark.parametrize("student", ["arcface112", "seed112x96"])
def test_teacher_on_another_template_sees_the_student_face_region(student):
    """For every draw (scale, rotation, shift, mirror) the teacher's view relates to the
    student's exactly as with no augmentation: both show the same image points."""
    faces = [(8.0, 2.2), (-5.0, 1.9), (0.0, 2.0), (3.0, 2.1)]
    out_hw = get_template(student).size
    _, _, canvas, tcanvas, to_teacher = canvases(faces, student=student)
    s0, t0 = augment_pair(canvas, tcanvas, to_teacher, out_hw, (150, 150),
                          np.random.default_rng(0), NOTHING)
    flipped = 0
    for seed in range(3):
        s, t = augment_pair(canvas, tcanvas, to_teacher, out_hw, (150, 150),
                            np.random.default_rng(seed), GEOMETRY)
        for i in range(len(faces)):
            ref = student_to_teacher(s0[i], t0[i])
            got = student_to_teacher(s[i], t[i])
            flipped += np.linalg.det(view_to_image(s[i])[:2, :2]) > 0
            corners = np.array([[0, 0, 1], [out_hw[1], 0, 1], [0, out_hw[0], 1],
                                [out_hw[1], out_hw[0], 1]], float).T
            assert np.abs((got - ref) @ corners).max() < 0.5, (seed, i)
            assert np.abs(view_to_image(s[i]) - view_to_image(s0[i])).max() > 1  # augmented
    assert 0 < flipped < 12  # some draws were mirrored, some not


def test_photo_effects_colour_and_mixup_are_shared():
    """Flat faces: blur and resolution change nothing, so the two views' colours must agree
    (the same brightness, contrast, saturation, greyscale and mixup partner and weight)."""
    rng = np.random.default_rng(1)
    colours = rng.integers(30, 220, (8, 1, 1, 3))
    canvas = np.broadcast_to(colours, (8, 128, 128, 3)).astype(np.uint8)
    tcanvas = np.broadcast_to(colours, (8, 174, 174, 3)).astype(np.uint8)
    scale = np.tile(np.array([[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]), (8, 1, 1))
    cfg = AugmentConfig(low_res=1.0, blur=1.0, jpeg=0.0, grey=0.5, mixup=1.0)
    s, t = augment_pair(canvas, tcanvas, scale, (112, 112), (150, 150),
                        np.random.default_rng(4), cfg)
    assert np.abs(s.mean(axis=(1, 2)) - t.mean(axis=(1, 2))).max() < 1.0
    assert np.abs(s.astype(int) - canvas[:, :112, :112].astype(int)).max() > 20  # it did mix


def test_one_draw_renders_every_template_as_the_pair_would():
    """An ensemble's views: the student's and one per other template, all of one draw, each
    the very view :func:`augment_pair` renders for that template alone (mixup included)."""
    faces = [(8.0, 2.2), (-5.0, 1.9), (0.0, 2.0)]
    _, _, canvas, dcanvas, to_d = canvases(faces, teacher="dlib150")
    _, _, _, scanvas, to_s = canvases(faces, teacher="sphereface112x96")
    others = {"dlib150": (dcanvas, to_d, (150, 150)),
              "sphereface112x96": (scanvas, to_s, (112, 96))}
    cfg = AugmentConfig(mixup=1.0, grey=0.5)
    student, views = augment_views(canvas, (112, 112), others, np.random.default_rng(7), cfg)
    assert list(views) == ["dlib150", "sphereface112x96"]
    for name, (tcanvas, to, hw) in others.items():
        s, t = augment_pair(canvas, tcanvas, to, (112, 112), hw, np.random.default_rng(7), cfg)
        assert np.array_equal(student, s) and np.array_equal(views[name], t), name
    alone, none = augment_views(canvas, (112, 112), {}, np.random.default_rng(7), cfg)
    assert none == {} and np.array_equal(alone, augment_batch(canvas, (112, 112),
                                                              np.random.default_rng(7), cfg))


def test_every_template_sees_the_student_face_region():
    faces = [(8.0, 2.2), (-5.0, 1.9), (3.0, 2.1)]
    _, _, canvas, dcanvas, to_d = canvases(faces, teacher="dlib150")
    _, _, _, scanvas, to_s = canvases(faces, teacher="sphereface112x96")
    others = {"dlib150": (dcanvas, to_d, (150, 150)),
              "sphereface112x96": (scanvas, to_s, (112, 96))}
    s0, v0 = augment_views(canvas, (112, 112), others, np.random.default_rng(0), NOTHING)
    s, v = augment_views(canvas, (112, 112), others, np.random.default_rng(2), GEOMETRY)
    corners = np.array([[0, 0, 1], [112, 0, 1], [0, 112, 1], [112, 112, 1]], float).T
    for name in others:
        for i in range(len(faces)):
            ref = student_to_teacher(s0[i], v0[name][i])
            got = student_to_teacher(s[i], v[name][i])
            assert np.abs((got - ref) @ corners).max() < 0.5, (name, i)

"""Big photos: reduced decoding, coarse-to-fine detection mapped back to full resolution, and
the area-filtered warp; small images (LFW's 250x250) take exactly the path they always took."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_io_decode import save_jpeg, smooth_image

from slimface.align import pipeline
from slimface.align.detect import Detector, Face
from slimface.align.photo import DECODE_SIDE, Level, Photo
from slimface.align.pipeline import align_image, crop_for, crop_photo, detect_photo
from slimface.align.templates import get_template
from slimface.align.warp import face_transform, warp_face
from slimface.io.decode import decode_scaled
from slimface.io.image import load_image

#: Landmark layout of the blob "face" in multiples of its radius, centred on its centre.
BLOB_POINTS = np.array([[-0.8, -0.6], [0.8, -0.6], [0.0, 0.0], [-0.6, 0.6], [0.6, 0.6]])


class BlobDetector(Detector):
    """"Detects" the red disk: its centroid and radius give box and landmarks, so where it
    finds them on any copy of a photo is known exactly in full-resolution coordinates.
    ``whole_pixels=True`` rounds them to pixels of the image it sees, as a detector that
    is precise to a pixel of its input."""

    def __init__(self, whole_pixels: bool = False):
        super().__init__(name="blob", pad=0.0)
        self.calls: list[tuple[int, int]] = []
        self.whole_pixels = whole_pixels

    def _detect(self, image: np.ndarray) -> list[Face]:
        self.calls.append(image.shape[:2])
        red = (image[..., 0] > 150) & (image[..., 1] < 90) & (image[..., 2] < 90)
        if red.sum() < 3:
            return []
        ys, xs = np.nonzero(red)
        r = float(np.sqrt(red.sum() / np.pi))
        c = np.array([xs.mean(), ys.mean()])
        if self.whole_pixels:
            r, c = float(np.round(r)), np.round(c)
        box = np.array([c[0] - 1.5 * r, c[1] - 1.5 * r, c[0] + 1.5 * r, c[1] + 1.5 * r])
        return [Face(box.astype(np.float32), 1.0, (c + r * BLOB_POINTS).astype(np.float32),
                     "5pt")]


@lru_cache(maxsize=4)
def photo_with_blob(h: int, w: int, centre: tuple[float, float], radius: float
                    ) -> np.ndarray:
    """A smooth background without red, and a red disk (read-only: shared by tests)."""
    image = (smooth_image(h, w) // 2 + 64).astype(np.uint8)  # no red anywhere
    y, x = np.mgrid[0:h, 0:w]
    disk = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2
    image[disk] = (230, 20, 20)
    image.flags.writeable = False
    return image


def _centre_and_radius(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    centre = landmarks.mean(axis=0)
    return centre, float((landmarks[1, 0] - landmarks[0, 0]) / 1.6)


@pytest.mark.parametrize("orientation", [1, 6, 3, 8])
@pytest.mark.parametrize("radius", [120.0, 9.0])
def test_landmarks_found_on_reduced_copies_map_back_to_full_resolution(tmp_path, orientation,
                                                                       radius):
    centre = (1717.3, 611.8)
    upright = photo_with_blob(1800, 2400, centre, radius)
    path = save_jpeg(tmp_path / "p.jpg", upright, orientation)
    photo = Photo.open(path)
    assert photo.size == (2400, 1800) and photo.detection_level.long_side < 2400
    det = BlobDetector()
    face, status = detect_photo(photo, det, None, "largest")
    assert status == "detected"
    found_centre, found_radius = _centre_and_radius(face.landmarks)
    # the centre within a full-resolution pixel, on a photo the detector only ever saw at
    # reduced scale and, but for orientation 1, turned (a half-pixel slip in the maps
    # would be 2.6 pixels off on the coarse copy)
    np.testing.assert_allclose(found_centre, centre, atol=1.0)
    assert found_radius == pytest.approx(radius, rel=0.12)
    coarse = det.calls[0]
    assert max(coarse) == 384 and max(max(shape) for shape in det.calls) <= 1024
    if radius < 20:  # small on the coarse copy: detected again in a region around it
        assert max(det.calls[-1]) < max(coarse)


def test_refinement_is_what_makes_small_faces_precise(tmp_path, monkeypatch):
    centre, radius = (1401.6, 999.2), 40.0
    path = save_jpeg(tmp_path / "p.jpg", photo_with_blob(1800, 2400, centre, radius))
    det = BlobDetector(whole_pixels=True)  # precise to a pixel of the copy it sees
    refined, _ = detect_photo(Photo.open(path), det, None, "largest")
    monkeypatch.setattr(pipeline, "REFINE_GAIN", 1e9)
    coarse, _ = detect_photo(Photo.open(path), det, None, "largest")
    err = [np.abs(_centre_and_radius(f.landmarks)[0] - centre).max() for f in (refined, coarse)]
    # a coarse pixel is 6.25 full-resolution pixels; the refinement region's is ~1.6
    assert err[0] <= 1.0 < err[1]


def test_multi_face_error_looks_closer_when_the_coarse_face_is_small(tmp_path):
    path = save_jpeg(tmp_path / "p.jpg", photo_with_blob(1800, 2400, (1200.0, 900.0), 12.0))
    det = BlobDetector()
    detect_photo(Photo.open(path), det, None, "largest")
    n_largest = len(det.calls)
    det.calls.clear()
    detect_photo(Photo.open(path), det, None, "error")
    assert len(det.calls) >= n_largest


def test_area_warp_matches_a_full_resolution_warp_on_a_smooth_image():
    t = get_template("arcface112")
    y, x = np.mgrid[0:2000, 0:2000].astype(np.float32)
    image = np.stack([128 + 100 * np.sin(x / 100 + y / 150), 128 + 100 * np.cos(y / 110),
                      128 + 60 * np.sin((x - y) / 130)], -1).astype(np.uint8)
    lm = np.array([[700, 800], [1100, 793], [900, 1000], [733, 1200], [1067, 1193]],
                  np.float64)  # eyes 400 px apart: ~10 image pixels per crop pixel
    m = face_transform(lm, t)
    direct = cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR)
    area = warp_face(image, lm, t)
    assert np.abs(area.astype(int) - direct.astype(int)).max() <= 2


def test_area_warp_does_not_alias_fine_detail():
    checker = ((np.indices((2000, 2000)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    lm = np.array([[700, 800], [1100, 793], [900, 1000], [733, 1200], [1067, 1193]],
                  np.float64)
    m = face_transform(lm, "arcface112")
    direct = cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR)
    area = warp_face(image, lm, "arcface112")
    assert np.abs(area.astype(int) - 127).max() <= 3  # the mean grey, as an eye sees it
    assert np.abs(direct.astype(int) - 127).max() > 60  # straight sampling aliases


@pytest.mark.parametrize("orientation", [1, 6])
def test_crop_from_a_reduced_level_matches_the_crop_from_full_resolution(tmp_path,
                                                                         orientation):
    t = get_template("arcface112")
    upright = smooth_image(1800, 2400)
    path = save_jpeg(tmp_path / "p.jpg", upright, orientation)
    full = load_image(path)
    big = Face(np.zeros(4, np.float32), 1.0, np.array(
        [[1300, 1000], [1700, 995], [1500, 1200], [1330, 1400], [1670, 1395]], np.float32),
        "5pt")
    photo = Photo.open(path)
    reduced = crop_photo(photo, big, t)
    assert min(photo._levels) > 1  # warped from a reduced level, nothing decoded in full
    assert np.abs(reduced.astype(int) - crop_for(full, big, t).astype(int)).max() <= 4
    small = Face(np.zeros(4, np.float32), 1.0, np.array(
        [[900, 500], [918, 500], [909, 509], [901, 518], [917, 518]], np.float32), "5pt")
    fine = crop_photo(photo, small, t)  # eyes 18 px apart: needs every pixel of the file
    assert min(photo._levels) == 1
    # the same pixels; turned ones may round a bilinear weight the other way
    diff = np.abs(fine.astype(int) - crop_for(full, small, t).astype(int)).max()
    assert diff == 0 if orientation == 1 else diff <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_level_kept_as_stored_turns_upright_like_the_decoder(tmp_path, orientation):
    path = save_jpeg(tmp_path / "p.jpg", smooth_image(1700, 1900), orientation)
    level = Photo.open(path).detection_level
    turned = level.upright()
    want = decode_scaled(path, 2, upright=True)
    np.testing.assert_array_equal(turned.pixels, want.pixels)
    np.testing.assert_allclose(turned.to_full, want.to_full, atol=1e-9)


def test_resized_maps_pixel_centres_back():
    level = Level(smooth_image(1000, 1500))
    small = level.resized(384)
    assert small.long_side == 384
    h, w = small.pixels.shape[:2]
    corners = np.array([[0, 0, 1], [w - 1, h - 1, 1.0]]) @ small.to_full.T
    step = 1500 / w
    np.testing.assert_allclose(corners[0], [(step - 1) / 2] * 2, atol=0.05)
    np.testing.assert_allclose(corners[1], [1499 - (step - 1) / 2, 999 - (step - 1) / 2],
                               atol=0.05)


def test_small_images_take_the_path_they_always_took(tmp_path):
    """A 250x250 JPEG (LFW's size) is decoded in full by decode_image, detected as it is and
    warped straight: the same face and crop as detect + warp_face on load_image."""
    path = tmp_path / "small.jpg"
    Image.fromarray(photo_with_blob(250, 250, (131.2, 118.9), 30.0)).save(path, quality=90)
    photo = Photo.open(path)
    pixels = load_image(path)
    np.testing.assert_array_equal(photo.detection_level.pixels, pixels)
    assert photo.size == (250, 250) and list(photo._levels) == [1]
    det = BlobDetector()
    out = align_image(path, "arcface112", detector=det, multi_face="largest")
    assert det.calls == [(250, 250)]
    direct = det.detect(pixels)[0]
    np.testing.assert_array_equal(out.face.landmarks, direct.landmarks)
    np.testing.assert_array_equal(out.crop, warp_face(pixels, direct.landmarks, "arcface112"))


@pytest.mark.data
def test_lfw_images_are_aligned_as_before(lfw_root: Path):
    from slimface.align.detect import create_detector

    path = lfw_root / "lfw-deepfunneled/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    if not path.is_file():
        pytest.skip("LFW sample image missing")
    det = create_detector("retinaface")
    pixels = load_image(path)
    before = det.detect(pixels)
    out = align_image(path, "arcface112", detector=det, multi_face="central")
    np.testing.assert_array_equal(out.face.landmarks, before[0].landmarks)
    np.testing.assert_array_equal(out.crop, warp_face(pixels, before[0].landmarks,
                                                      "arcface112"))


def test_decode_side_keeps_detection_copies_downscaled():
    assert DECODE_SIDE <= pipeline.DETECT_SIDE


class BigBlobDetector(BlobDetector):
    """Finds only disks at least 64 px across (box) in the image it sees, like a detector
    with a big window; landmarks of its own kind."""

    def min_face_px(self) -> float:
        return 64.0

    def _detect(self, image: np.ndarray) -> list[Face]:
        faces = [f for f in super()._detect(image) if f.box[2] - f.box[0] >= 64]
        for f in faces:
            f.kind = "big"
        return faces


def test_a_face_only_the_fallback_saw_is_handed_to_the_main_detector_at_its_size(tmp_path):
    centre, radius = (1500.4, 700.6), 24.0  # 72 px across: 31 px on a 1024 px copy
    path = save_jpeg(tmp_path / "p.jpg", photo_with_blob(1800, 2400, centre, radius))
    main = BigBlobDetector()
    face, status = detect_photo(Photo.open(path), main, BlobDetector(), "largest")
    assert status == "detected" and face.kind == "big"
    np.testing.assert_allclose(_centre_and_radius(face.landmarks)[0], centre, atol=1.0)
    assert max(main.calls[-1]) < 1024  # found in a region, not on a copy
    alone, status = detect_photo(Photo.open(path), BigBlobDetector(), None, "largest")
    assert alone is None and status == "centre"


def test_on_a_small_image_the_fallback_face_stays_as_found(tmp_path):
    """The main detector saw a 250x250 image in full already: no second look (LFW crops of
    a model with a fallback detector stay what they were)."""
    path = tmp_path / "small.jpg"
    Image.fromarray(photo_with_blob(250, 250, (120.3, 131.7), 12.0)).save(path, quality=90)
    main = BigBlobDetector()
    face, status = detect_photo(Photo.open(path), main, BlobDetector(), "largest")
    assert status == "fallback_detector" and face.kind == "5pt"
    assert main.calls == [(250, 250)]


def test_a_strip_of_an_image_is_resized_without_losing_its_short_side() -> None:
    from slimface.align.photo import Level

    for shape, expected in (((1, 10000, 3), (1, 1024)), ((10000, 3, 3), (1024, 1))):
        small = Level(np.full(shape, 120, np.uint8)).resized(1024)
        assert small.long_side == 1024 and small.pixels.shape[:2] == expected

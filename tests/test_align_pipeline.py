"""align_image policies and align_paths: order, status counts, cache hits, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimface.align import align_image, align_paths
from slimface.align import pipeline
from slimface.errors import (ConfigError, ImageError, ImageNotFoundError, MultipleFacesError,
                             NoFaceError)
from slimface.io.image import load_image

NAMES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abba_Eban/Abba_Eban_0001.jpg",
         "Adam_Sandler/Adam_Sandler_0001.jpg"]


@pytest.fixture(scope="module")
def lfw_files(lfw_root: Path) -> list[Path]:
    files = [lfw_root / "lfw-deepfunneled" / n for n in NAMES]
    if not all(f.is_file() for f in files):
        pytest.skip("LFW sample images missing")
    return files


@pytest.fixture()
def blank_file(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.fromarray(np.full((90, 80, 3), 128, np.uint8)).save(path)
    return path


def test_align_image_from_path(lfw_files: list[Path]) -> None:
    out = align_image(lfw_files[0], "arcface112", multi_face="central")
    assert out.status == "detected" and out.crop.shape == (112, 112, 3)
    assert out.face is not None and out.face.kind == "5pt"


def test_no_face_policies(blank_file: Path) -> None:
    with pytest.raises(NoFaceError, match="blank.png"):
        align_image(blank_file)
    out = align_image(blank_file, "sphereface112x96", no_face="centre")
    assert out.status == "centre" and out.face is None and out.crop.shape == (112, 96, 3)


def test_multi_face_policies(lfw_files: list[Path]) -> None:
    a, b = load_image(lfw_files[0]), load_image(lfw_files[1])
    both = np.concatenate([a, b[:, :, :]], axis=1)  # two faces side by side
    with pytest.raises(MultipleFacesError, match="2 faces"):
        align_image(both)
    largest = align_image(both, multi_face="largest")
    assert largest.status == "detected"


def test_bad_policy_is_a_config_error(lfw_files: list[Path]) -> None:
    with pytest.raises(ConfigError, match="largest"):
        align_image(lfw_files[0], multi_face="biggest")


def test_align_paths_order_status_and_cache(lfw_files: list[Path], blank_file: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    files = [lfw_files[1], blank_file, lfw_files[0], lfw_files[1]]
    first = align_paths(files, "arcface112", multi_face="central", workers=1, progress=False)
    assert first.crops.shape == (4, 112, 112, 3)
    assert first.status == ["detected", "centre", "detected", "detected"]
    assert first.n_centre == 1 and first.counts()["detected"] == 3
    np.testing.assert_array_equal(first.crops[0], first.crops[3])

    def no_detection(*args, **kwargs):
        raise AssertionError("a cache hit must not detect again")

    monkeypatch.setattr(pipeline, "detect_photo", no_detection)
    again = align_paths(files, "arcface112", multi_face="central", workers=1, progress=False)
    np.testing.assert_array_equal(again.crops, first.crops)
    assert again.status == first.status
    # another template reuses the cached detections (no detection, only a warp)
    other = align_paths(files, "sphereface112x96", multi_face="central", workers=1, progress=False)
    assert other.crops.shape == (4, 112, 96, 3) and other.status == first.status


def test_fallback_detector_status(lfw_files: list[Path], monkeypatch) -> None:
    from slimface.align.detect import Detector

    class Blind(Detector):
        def _detect(self, image):
            return []

    out = align_paths(lfw_files[:1], "arcface112", detector=Blind(name="blind"),
                      fallback_detector="retinaface", cache=False, workers=1, progress=False)
    assert out.status == ["fallback_detector"]


def test_align_paths_errors_name_the_file(tmp_path: Path, blank_file: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="missing.jpg"):
        align_paths([blank_file, tmp_path / "missing.jpg"], "arcface112", progress=False)
    with pytest.raises(NoFaceError, match="blank.png"):
        align_paths([blank_file], "arcface112", no_face="error", cache=False, progress=False)


def test_align_paths_in_worker_processes(tmp_path: Path) -> None:
    files = []
    for i in range(40):
        path = tmp_path / f"b{i:02d}.png"
        Image.fromarray(np.full((40, 40, 3), i * 5, np.uint8)).save(path)
        files.append(path)
    out = align_paths(files, "arcface112", workers=2, progress=False)
    assert out.n_centre == len(files) and out.crops.shape == (40, 112, 112, 3)


def test_worker_errors_travel_back_as_the_same_error(tmp_path: Path) -> None:
    from slimface.align.templates import get_template
    from slimface.errors import NotAnImageError

    (tmp_path / "bad.png").write_text("not an image")
    pipeline._init_worker(pipeline._Job(get_template("arcface112"), None, None, "largest"),
                          forked=False)
    result = pipeline._work((0, str(tmp_path / "bad.png"), None, False))
    assert result[1] == "error"
    with pytest.raises(NotAnImageError, match="bad.png"):
        pipeline._raise_worker_error(result)


def test_tiles_cover_the_fine_copy_with_overlap() -> None:
    side, overlap = pipeline.DETECT_SIDE, pipeline.TILE_OVERLAP
    assert pipeline._tile_starts(side) == [0] and pipeline._tile_starts(300) == [0]
    for length in (side + 1, 1440, 1920, 4000):
        starts = pipeline._tile_starts(length)
        assert starts[0] == 0 and starts[-1] + side == length  # ends flush with the copy
        assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:]))
    assert len(pipeline._tile_starts(pipeline.FINE_DETECT_SIDE)) == 2


def test_no_fine_look_at_photos_near_the_detection_size() -> None:
    from slimface.align.photo import Photo

    near = Photo.from_array(np.zeros((1000, int(1.4 * pipeline.DETECT_SIDE), 3), np.uint8))
    assert pipeline.fine_copy(near) is None
    big = pipeline.fine_copy(Photo.from_array(np.zeros((3000, 4000, 3), np.uint8)))
    assert big is not None and big.long_side == pipeline.FINE_DETECT_SIDE


def test_a_face_too_small_for_every_copy_is_found_on_the_fine_tiles(lfw_files: list[Path]
                                                                    ) -> None:
    # an LFW face (about 100 px) in a 6000x4500 photo: about 17 px on the 1,024 px copy
    face = load_image(lfw_files[0])
    canvas = np.full((4500, 6000, 3), 170, np.uint8)
    canvas[3000:3250, 4400:4650] = face  # off-centre, across no tile border
    out = align_image(canvas, "arcface112", multi_face="largest")
    assert out.status == "detected"
    x0, y0, x1, y1 = out.face.box
    assert 4400 < x0 < x1 < 4650 and 3000 < y0 < y1 < 3250
    alone = align_image(face, "arcface112", multi_face="central")
    assert np.abs(out.face.landmarks - (alone.face.landmarks + [4400, 3000])).max() < 6


def test_bad_file_skip_marks_unreadable_files_and_aligns_the_others(
        lfw_files: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(lfw_files[1].read_bytes()[:3000])
    files = [lfw_files[0], text, truncated]
    with pytest.raises(ImageError, match="notes.jpg"):
        align_paths(files, "arcface112", cache=False, workers=1, progress=False)
    out = align_paths(files, "arcface112", cache=False, workers=1, progress=False,
                      bad_file="skip")
    assert out.status == ["detected", pipeline.UNREADABLE, pipeline.UNREADABLE]
    assert set(out.problems) == {str(text.resolve()), str(truncated.resolve())}
    assert not out.crops[1].any() and out.crops[0].any()
    with pytest.raises(ConfigError, match="bad_file"):
        align_paths(files, "arcface112", cache=False, workers=1, progress=False,
                    bad_file="ignore")


@pytest.mark.parametrize("span", [(900, 950), (1010, 1060)])
def test_a_face_on_two_tiles_is_one_face(span: tuple[int, int]) -> None:
    """(900, 950) lies whole on both tiles of a 1,920 px copy (x 0-1024 and 896-1920): the
    duplicates merge. (1010, 1060) is cut by the first tile's edge, which holds 14 px of it:
    too little overlap for NMS, so only the tile whose share holds its centre keeps it."""
    from slimface.align.detect import Detector, Face
    from slimface.align.photo import Level

    class OneFace(Detector):
        """The face at ``span`` of the whole copy, cut to what each tile holds of it (a
        tile's pixels carry their own column: red = x // 256, green = x % 256)."""

        def _detect(self, image):
            x0 = int(image[0, 0, 0]) * 256 + int(image[0, 0, 1])
            a, b = max(span[0], x0), min(span[1], x0 + image.shape[1])
            if b - a < 10:
                return []
            box = np.array([a - x0, 100, b - x0, 140], np.float32)
            return [Face(box=box, score=0.9, landmarks=np.zeros((5, 2), np.float32),
                         kind="5pt")]

    x = np.arange(1920)
    pixels = np.zeros((1000, 1920, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = x // 256, x % 256
    assert len(pipeline._tile_starts(1920)) == 2
    faces = pipeline.detect_tiled(Level(pixels), OneFace(name="one", pad=0.0))
    assert len(faces) == 1 and np.allclose(faces[0].box, [span[0], 100, span[1], 140])

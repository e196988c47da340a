"""decode_scaled: DCT-domain reduced decoding, upright by EXIF, with the map to full size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_io_image import DAMAGE, _damaged, _jpeg

from slimface.errors import DamagedImageError, ImageNotFoundError, NotAnImageError
from slimface.io.decode import decode_scaled, read_header, scale_factor_for
from slimface.io.image import decode_image

TRANSPOSE_FROM_UPRIGHT = {  # what a camera stores for each EXIF orientation
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270}


def smooth_image(h: int, w: int) -> np.ndarray:
    """Low-frequency colour waves: what a block average and a point sample agree on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([128 + 100 * np.sin(x / 37.0 + y / 53.0),
                     128 + 100 * np.cos(y / 41.0),
                     128 + 60 * np.sin((x - y) / 47.0)], -1).clip(0, 255).astype(np.uint8)


def save_jpeg(path: Path, upright: np.ndarray, orientation: int = 1) -> Path:
    im = Image.fromarray(upright)
    if orientation != 1:
        im = im.transpose(TRANSPOSE_FROM_UPRIGHT[orientation])
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("size,side,factor", [((4000, 3000), 1024, 2), ((4096, 3000), 1024, 4),
                                              ((1000, 800), 1024, 1), ((9000, 100), 1024, 8),
                                              ((250, 250), 1024, 1)])
def test_scale_factor_keeps_the_long_side(size, side, factor):
    assert scale_factor_for(size, side) == factor


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_decode_is_upright_sized_and_mapped_to_full_resolution(tmp_path, orientation,
                                                                       factor):
    upright = smooth_image(203, 310)  # sizes that are not whole blocks: padded edges
    path = save_jpeg(tmp_path / "p.jpg", upright, orientation)
    out = decode_scaled(path, factor)
    full = decode_image(path).pixels
    np.testing.assert_array_equal(full.shape, upright.shape)
    assert out.factor == factor and out.full_size == (310, 203)
    assert out.pixels.shape == (-(-203 // factor), -(-310 // factor), 3)
    # every reduced pixel is the mean of the full-resolution block its centre maps onto
    rng = np.random.default_rng(orientation)
    h, w = out.pixels.shape[:2]
    for v, u in zip(rng.integers(1, h - 1, 20), rng.integers(1, w - 1, 20)):
        x, y = out.to_full @ np.array([u, v, 1.0])
        half = (factor - 1) / 2
        x0, y0 = int(round(x - half)), int(round(y - half))
        assert abs(x - half - x0) < 1e-9 and abs(y - half - y0) < 1e-9  # block-aligned
        block = full[y0:y0 + factor, x0:x0 + factor].reshape(-1, 3).mean(0)
        assert np.abs(block - out.pixels[v, u]).max() <= 6


def test_factor_one_is_decode_image(tmp_path):
    path = save_jpeg(tmp_path / "p.jpg", smooth_image(100, 80), 6)
    out = decode_scaled(path, 1)
    np.testing.assert_array_equal(out.pixels, decode_image(path).pixels)
    assert out.factor == 1 and out.full_size == (80, 100)
    np.testing.assert_array_equal(out.to_full, [[1, 0, 0], [0, 1, 0]])


def test_files_that_are_not_plain_jpegs_are_decoded_in_full(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(smooth_image(64, 96)).save(path)
    out = decode_scaled(path, 4)
    assert out.factor == 1 and out.pixels.shape == (64, 96, 3)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(smooth_image(64, 96)).convert("CMYK").save(cmyk)
    assert not read_header(cmyk).scalable and decode_scaled(cmyk, 2).factor == 1


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_jpeg_is_refused_as_decode_image_refuses_it(tmp_path, kind):
    data, scan = _jpeg(tmp_path)
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(_damaged(data, scan, kind))
    with pytest.raises(DamagedImageError) as reduced:
        decode_scaled(path, 2)
    with pytest.raises(DamagedImageError) as full:
        decode_image(path)
    assert str(reduced.value) == str(full.value)


def test_damaged_jpeg_allowed_is_decoded_in_full_with_its_note(tmp_path):
    data, scan = _jpeg(tmp_path)
    path = tmp_path / "bad.jpg"
    path.write_bytes(_damaged(data, scan, "damaged_middle"))
    out = decode_scaled(path, 2, allow_damaged=True)
    assert out.factor == 1 and out.pixels.shape == (96, 128, 3)
    assert "Corrupt JPEG data" in out.damage


def test_header_errors_are_those_of_decode_image(tmp_path):
    with pytest.raises(ImageNotFoundError, match="missing.jpg"):
        decode_scaled(tmp_path / "missing.jpg", 2)
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(NotAnImageError, match="text.jpg"):
        decode_scaled(tmp_path / "text.jpg", 2)
    with pytest.raises(ValueError, match="factor"):
        decode_scaled(tmp_path / "text.jpg", 3)

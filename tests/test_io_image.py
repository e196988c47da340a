"""load_image: every supported layout becomes HxWx3 uint8 RGB; every bad file a named error."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimface.errors import (DamagedImageError, EmptyImageError, ImageDecodeError, ImageError,
                             ImageNotFoundError, ImageTooLargeError, NotAnImageError,
                             UnsupportedImageError)
from slimface.io.image import DamagedImageWarning, MAX_PIXELS, load_image


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height but that carries no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("BMP", ".bmp"), ("WEBP", ".webp"),
                                     ("PPM", ".ppm")])
def test_lossless_formats_round_trip(tmp_path: Path, fmt: str, ext: str) -> None:
    arr = _rgb()
    path = tmp_path / f"x{ext}"
    Image.fromarray(arr).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_jpeg_decodes_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.full((16, 16, 3), (200, 30, 60), np.uint8)).save(path, quality=95)
    out = load_image(path)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - (200, 30, 60)).max() <= 4


def test_grey_pgm_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    path = tmp_path / "g.pgm"
    Image.fromarray(grey, mode="L").save(path)
    out = load_image(path)
    assert out.shape == (12, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)   # opaque keeps its colour
    rgba[1, 1] = (10, 20, 30, 0)     # transparent becomes white
    path = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], (10, 20, 30))
    np.testing.assert_array_equal(out[1, 1], (255, 255, 255))


def test_palette_and_cmyk_convert(tmp_path: Path) -> None:
    pal = Image.fromarray(_rgb()).convert("P")
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (24, 32, 3)
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").shape == (24, 32, 3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # white half is now on top


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=str(tmp_path / "nope.jpg")):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageNotFoundError, match="directory"):
        load_image(tmp_path)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(EmptyImageError, match="z.jpg"):
        load_image(tmp_path / "z.jpg")


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "t.jpg").write_text("hello, I am not a picture\n")
    with pytest.raises(NotAnImageError, match="t.jpg: not an image"):
        load_image(tmp_path / "t.jpg")


def test_truncated_jpeg_is_a_decode_error(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    Image.fromarray(_rgb(64, 64)).save(full, quality=90)
    data = full.read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="half.jpg"):
        load_image(tmp_path / "half.jpg")
    (tmp_path / "head.jpg").write_bytes(data[:12])
    with pytest.raises(ImageDecodeError, match="head.jpg"):
        load_image(tmp_path / "head.jpg")


def test_unsupported_format(tmp_path: Path) -> None:
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "x.ico")
    with pytest.raises(UnsupportedImageError, match="ICO images are not supported.*TIFF, GIF"):
        load_image(tmp_path / "x.ico")


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "jpeg"])
def test_tiff_reads_as_rgb(tmp_path: Path, compression: str | None) -> None:
    """Scans and camera exports: plain and compressed TIFF, the pixels as saved."""
    pixels = _rgb()
    Image.fromarray(pixels).save(tmp_path / "x.tif", compression=compression)
    out = load_image(tmp_path / "x.tif")
    assert out.shape == pixels.shape and out.dtype == np.uint8
    tolerance = 40 if compression == "jpeg" else 0
    assert np.abs(out.astype(int) - pixels).max() <= tolerance


def test_sixteen_bit_tiff_is_scaled(tmp_path: Path) -> None:
    grey = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)
    Image.fromarray(grey).save(tmp_path / "x.tiff")
    out = load_image(tmp_path / "x.tiff")
    np.testing.assert_array_equal(out[..., 0], np.round(grey / 257).astype(np.uint8))


def test_multi_page_tiff_and_animated_gif_give_their_first_page(tmp_path: Path) -> None:
    first, second = _rgb(seed=1), _rgb(seed=2)
    pages = [Image.fromarray(first), Image.fromarray(second)]
    pages[0].save(tmp_path / "x.tif", save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(load_image(tmp_path / "x.tif"), first)
    still = [Image.fromarray(np.full((24, 32, 3), v, np.uint8)) for v in (40, 200)]
    still[0].save(tmp_path / "x.gif", save_all=True, append_images=still[1:], duration=100)
    assert (load_image(tmp_path / "x.gif") == 40).all()


@pytest.mark.parametrize("name", ["x.tif", "x.gif"])
def test_cut_off_tiff_and_gif_are_decode_errors(tmp_path: Path, name: str) -> None:
    Image.fromarray(_rgb(64, 64)).save(tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:10])
    with pytest.raises(ImageDecodeError, match=name):
        load_image(tmp_path / name)


@pytest.mark.parametrize("side", [8000, 20000])  # 64 MP (over our limit), 400 MP (Pillow bomb)
def test_huge_dimensions_refused_without_decoding(tmp_path: Path, side: int) -> None:
    path = _png_header_only(tmp_path / "huge.png", side, side)
    with pytest.raises(ImageTooLargeError, match="huge.png") as info:
        load_image(path)
    message = str(info.value)
    assert f"{side * side / 1e6:.1f} megapixels, over the {MAX_PIXELS // 1_000_000} " \
           f"megapixel limit; save a smaller copy" in message  # what to do about it
    assert "178956970" not in message and "178,956,970" not in message  # Pillow's own limit


def _jpeg(tmp_path: Path) -> tuple[bytes, int]:
    """A smooth 128x96 JPEG and the offset where its entropy-coded data starts."""
    y, x = np.mgrid[0:96, 0:128]
    arr = np.stack([(x * 2) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8)
    path = tmp_path / "clean.jpg"
    Image.fromarray(arr).save(path, quality=90)
    data = path.read_bytes()
    sos = data.index(b"\xff\xda")
    return data, sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")


def _damaged(data: bytes, scan: int, kind: str) -> bytes:
    mid = (scan + len(data) - 2) // 2
    if kind == "damaged_middle":  # 32 bytes in the middle of the scan overwritten
        return data[:mid] + bytes(30) + b"\xff\xd5" + data[mid + 32:]
    if kind == "premature_end_of_segment":  # the scan stops early, the file ends properly
        return data[:mid] + b"\xff\xd9"
    if kind == "extraneous_bytes":  # junk between the scan and the end-of-image marker
        return data[:-2] + bytes(range(1, 21)) + data[-2:]
    if kind == "stray_marker":  # a restart marker where no restarts were declared
        return data[:mid] + b"\xff\xd3" + data[mid:]
    if kind == "premature_end_of_file":
        return data[:mid]
    raise ValueError(kind)


DAMAGE = {"damaged_middle": "Corrupt JPEG data", "premature_end_of_segment":
          "premature end of data segment", "extraneous_bytes": "extraneous bytes before marker",
          "stray_marker": "Corrupt JPEG data", "premature_end_of_file": "Premature end"}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_jpeg_data_is_an_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    data, scan = _jpeg(tmp_path)
    load_image(tmp_path / "clean.jpg")  # the undamaged file is fine
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(_damaged(data, scan, kind))
    with pytest.raises(DamagedImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: damaged image data (")
    assert DAMAGE[kind] in message and "allow_damaged=True" in message


@pytest.mark.parametrize("kind", ["damaged_middle", "extraneous_bytes", "premature_end_of_file"])
def test_allow_damaged_decodes_with_a_warning(tmp_path: Path, kind: str) -> None:
    data, scan = _jpeg(tmp_path)
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(_damaged(data, scan, kind))
    with pytest.warns(DamagedImageWarning, match=f"{path.name}: .*{DAMAGE[kind]}"):
        out = load_image(path, allow_damaged=True)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8


def test_zero_width_header_is_empty_or_corrupt(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "flat.png", 0, 10)
    with pytest.raises((EmptyImageError, ImageDecodeError)):
        load_image(path)


def test_every_error_is_an_image_error_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "e.png")
    assert info.value.path == str(tmp_path / "e.png")
    assert str(info.value).startswith(str(tmp_path / "e.png"))


def test_alpha_compositing_in_blocks_matches_exact_rounding() -> None:
    from slimface.io.image import _over_white

    rgba = np.random.default_rng(0).integers(0, 256, (37, 11, 4)).astype(np.uint8)
    alpha = rgba[..., 3:4] / 255.0
    exact = np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    np.testing.assert_array_equal(_over_white(rgba, rows=8), exact)   # blocks of 8 rows


def test_avif_photos_are_read_upright_where_pillow_decodes_them(tmp_path: Path) -> None:
    from slimface.io import image as image_module

    if "AVIF" not in image_module.SUPPORTED_FORMATS:
        pytest.skip("this Pillow has no AVIF decoder")
    y, x = np.mgrid[0:24, 0:32]  # smooth: lossy AVIF keeps it close
    pixels = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
    flat = tmp_path / "x.avif"
    Image.fromarray(pixels).save(flat, quality=95)
    got = load_image(flat)
    assert got.shape == pixels.shape and np.abs(got.astype(int) - pixels).mean() < 8
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turned upright when read
    Image.fromarray(pixels).save(tmp_path / "turned.avif", quality=95, exif=exif.tobytes())
    assert load_image(tmp_path / "turned.avif").shape == (pixels.shape[1], pixels.shape[0], 3)
    assert ".avif" in image_module.IMAGE_EXTENSIONS


def _heic_ready() -> None:
    import slimface.io.image as image_module

    if "HEIF" not in image_module.SUPPORTED_FORMATS:
        pytest.skip("pillow-heif is not installed")


def test_heic_photos_are_read_upright(tmp_path: Path) -> None:
    _heic_ready()
    import slimface.io.image as image_module

    y, x = np.mgrid[0:48, 0:64]  # smooth: lossy HEVC keeps it close
    pixels = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.heic", quality=95)
    out = load_image(tmp_path / "x.heic")
    assert out.shape == pixels.shape and np.abs(out.astype(int) - pixels).mean() < 4
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: the phone's rotation, applied once on reading
    Image.fromarray(np.ascontiguousarray(np.rot90(pixels))).save(
        tmp_path / "turned.heic", quality=95, exif=exif.tobytes())
    turned = load_image(tmp_path / "turned.heic")
    assert turned.shape == pixels.shape and np.abs(turned.astype(int) - pixels).mean() < 4
    assert {".heic", ".heif"} <= set(image_module.IMAGE_EXTENSIONS)


@pytest.mark.parametrize("keep", ["half", 40, 12])
def test_cut_off_heic_is_a_decode_error_naming_the_file(tmp_path: Path, keep) -> None:
    _heic_ready()
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "whole.heic")
    data = (tmp_path / "whole.heic").read_bytes()
    cut = tmp_path / "cut.heic"
    cut.write_bytes(data[:len(data) // 2 if keep == "half" else keep])
    with pytest.raises(ImageDecodeError, match=r"cut\.heic: (truncated|corrupt)"):
        load_image(cut)


def test_heic_without_its_decoder_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    _heic_ready()
    import slimface.io.image as image_module

    cut = tmp_path / "phone.heic"  # a header Pillow cannot open: as without the opener
    cut.write_bytes(b"\x00\x00\x00\x1cftypheic" + bytes(20))
    monkeypatch.setattr(image_module, "_HEIF", False)
    with pytest.raises(UnsupportedImageError, match="phone.heic: HEIC images need the "
                                                    "pillow-heif package"):
        load_image(cut)


def test_a_video_is_not_an_image_and_avif_without_its_decoder_says_what_to_install(
        tmp_path: Path, monkeypatch) -> None:
    import slimface.io.image as image_module

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(40))
    with pytest.raises(NotAnImageError, match="clip.mp4: an ISO media file"):
        load_image(video)
    avif = tmp_path / "photo.avif"  # a header Pillow cannot open: as without a decoder
    avif.write_bytes(b"\x00\x00\x00\x1cftypavif" + bytes(20))
    monkeypatch.setattr(image_module, "_AVIF", False)
    with pytest.raises(UnsupportedImageError, match="photo.avif: AVIF images need Pillow 11.2"):
        load_image(avif)


def test_pixels_in_memory_become_rgb_uint8() -> None:
    from slimface.io.image import pixels_in_memory

    rgb = _rgb()
    name, out = pixels_in_memory(rgb)
    assert name.startswith("<pixels 32x24 ") and out is not rgb
    np.testing.assert_array_equal(out, rgb)
    assert pixels_in_memory(rgb.copy())[0] == name  # the name follows the pixels
    assert pixels_in_memory(_rgb(seed=1))[0] != name
    grey = rgb[..., 0]
    np.testing.assert_array_equal(pixels_in_memory(grey)[1], np.stack([grey] * 3, axis=2))
    wide = grey.astype(np.uint16) * 257
    np.testing.assert_array_equal(pixels_in_memory(wide)[1][..., 0], grey)
    clear = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=2)
    assert (pixels_in_memory(clear)[1] == 255).all()  # transparent: white, as for files


def test_pil_image_in_memory_is_turned_upright_like_its_file(tmp_path: Path) -> None:
    from slimface.io.image import pixels_in_memory

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    Image.fromarray(_rgb(24, 32)).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    opened = Image.open(tmp_path / "turned.jpg")
    np.testing.assert_array_equal(pixels_in_memory(opened)[1],
                                  load_image(tmp_path / "turned.jpg"))
    assert pixels_in_memory(opened)[1].shape == (32, 24, 3)

"""Property-based fuzzing of the two readers of untrusted files: the image reader and the
``.slim`` parser. Random and mutated bytes never crash the process, never allocate more than
a set budget, and either load or raise a SlimfaceError. The default run is short and the
same every time; ``SLIMFACE_FUZZ_EXAMPLES=5000`` hunts longer, with fresh random examples."""
from __future__ import annotations

import io
import json
import os
import resource
import struct
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import slimface.io.image as image_io
from slimface.errors import ImageError, ModelFileError, SlimfaceError
from slimface.runtime.slimfile import load_slim, read_slim_metadata, save_slim

EXAMPLES = int(os.environ.get("SLIMFACE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize="SLIMFACE_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Decode limit while fuzzing: a header may claim any size up to it, so it bounds memory.
FUZZ_MAX_PIXELS = 1_000_000
#: Peak memory the whole fuzz run may add to the process.
BUDGET_BYTES = 256 << 20


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _seed_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = {}
    for name, fmt, kw in (("png", "PNG", {}), ("jpg", "JPEG", {"quality": 80}),
                          ("progressive.jpg", "JPEG", {"progressive": True}),
                          ("bmp", "BMP", {}), ("webp", "WEBP", {"lossless": True}),
                          ("ppm", "PPM", {}), ("gif", "GIF", {}), ("tif", "TIFF", {}),
                          ("lzw.tif", "TIFF", {"compression": "tiff_lzw"})):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()
    return out


SEEDS = _seed_images()


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file with some bytes overwritten, a slice cut out or inserted, or cut short."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["overwrite", "delete", "insert", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[pos:]
    return name, bytes(data)


def _check_image(path: Path) -> None:
    try:
        image_io.load_image(path)
    except ImageError as exc:
        assert str(exc).startswith(str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image_io.DamagedImageWarning)
            out = image_io.load_image(path, allow_damaged=True)
    except ImageError as exc:
        assert str(exc).startswith(str(path))
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] * out.shape[1] <= FUZZ_MAX_PIXELS


@pytest.fixture(scope="module")
def rss_budget():
    before = _max_rss_bytes()
    yield
    grown = _max_rss_bytes() - before
    assert grown < BUDGET_BYTES, f"fuzzing raised peak memory by {grown >> 20} MiB"


@FUZZ
@given(case=mutated(SEEDS))
def test_mutated_images_load_or_raise_an_image_error(case, rss_budget):
    name, data = case
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(image_io, "MAX_PIXELS", FUZZ_MAX_PIXELS):
        path = Path(tmp) / f"fuzz.{name}"
        path.write_bytes(data)
        _check_image(path)


@FUZZ
@given(data=st.binary(max_size=4096),
       suffix=st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".pgm"]))
def test_random_bytes_load_or_raise_an_image_error(data, suffix, rss_budget):
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(image_io, "MAX_PIXELS", FUZZ_MAX_PIXELS):
        path = Path(tmp) / f"random{suffix}"
        path.write_bytes(data)
        _check_image(path)


def _seed_slim() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.slim"
        save_slim(path, {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
                         "codes": np.arange(7, dtype=np.uint8)},
                  {"architecture": "tiny", "template": "arcface112"})
        return path.read_bytes()


SLIM = _seed_slim()


def _check_slim(path: Path) -> None:
    for read in (read_slim_metadata, load_slim):
        try:
            read(path)
        except SlimfaceError as exc:
            assert str(exc).startswith(str(path))


@FUZZ
@given(case=mutated({"slim": SLIM}))
def test_mutated_slim_files_load_or_raise_a_model_file_error(case, rss_budget):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.slim"
        path.write_bytes(case[1])
        _check_slim(path)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_as_slim_raise_a_model_file_error(data, rss_budget):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.slim"
        path.write_bytes(data)
        _check_slim(path)


def _with_header(header: dict) -> bytes:
    (n,) = struct.unpack("<Q", SLIM[:8])
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + SLIM[8 + n:]


@FUZZ
@given(shape=st.lists(st.integers(0, 2 ** 40), min_size=1, max_size=4),
       dtype=st.sampled_from(["F32", "U8", "F64", "I64"]),
       offsets=st.tuples(st.integers(0, 2 ** 50), st.integers(0, 2 ** 50)))
def test_slim_header_lying_about_tensor_sizes_is_refused(shape, dtype, offsets, rss_budget):
    (n,) = struct.unpack("<Q", SLIM[:8])
    header = json.loads(SLIM[8:8 + n])
    header["w"] = {"dtype": dtype, "shape": shape, "data_offsets": list(offsets)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lies.slim"
        path.write_bytes(_with_header(header))
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(
            {"F32": "f4", "U8": "u1", "F64": "f8", "I64": "i8"}[dtype]).itemsize
        data_bytes = path.stat().st_size - 8 - len(json.dumps(header).encode())
        honest = offsets[1] - offsets[0] == nbytes and offsets[1] <= data_bytes
        if honest:
            _check_slim(path)
        else:
            with pytest.raises(ModelFileError, match="lies.slim: "):
                load_slim(path)


def test_slim_header_claiming_a_huge_tensor_is_refused_before_allocating(tmp_path: Path):
    (n,) = struct.unpack("<Q", SLIM[:8])
    header = json.loads(SLIM[8:8 + n])
    header["w"] = {"dtype": "F32", "shape": [1_000_000, 1_000_000], "data_offsets": [0, 48]}
    path = tmp_path / "huge.slim"
    path.write_bytes(_with_header(header))
    before = _max_rss_bytes()
    with pytest.raises(ModelFileError, match=r"tensor 'w' claims shape \[1000000, 1000000\] "
                                             r"F32 \(4000000000000 bytes\)"):
        load_slim(path)
    assert _max_rss_bytes() - before < 64 << 20
    path.write_bytes(struct.pack("<Q", 2 ** 62) + SLIM[8:])
    with pytest.raises(ModelFileError, match="header claims"):
        read_slim_metadata(path)

"""``slimface bench photos``: stage marks, the per-stage split and the folder walk."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from slimface.align.stages import record_stages, stage
from slimface.cli.bench_photos import photo_files, time_photos
from slimface.errors import NoFaceError, SlimfaceError


def _ticks():
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    return clock


def test_nested_stage_counts_once_and_the_outer_gets_the_rest():
    with record_stages(_ticks()) as rec:
        with stage("align"):  # reads 1
            with stage("decode"):  # reads 2, 3
                pass
        # align closes at 4: 3 elapsed, 1 of them decode
    assert rec.seconds == {"decode": 1.0, "align": 2.0}
    assert rec.total == 3.0


def test_stage_is_a_no_op_without_a_record():
    with stage("detect"):
        pass
    with record_stages(_ticks()) as rec:
        pass
    assert rec.seconds == {}


class _FakeMatcher:
    """embed_face marks decode, detect, align and embed; ``bad.jpg`` has no face."""

    def embed_face(self, path: Path):
        with stage("decode"):
            pass
        if path.name == "bad.jpg":
            raise NoFaceError(path, "no face found")
        with stage("detect"):
            pass
        with stage("align"):
            with stage("decode"):
                pass
        with stage("embed"):
            pass

        class Face:
            status = "detected"
        return Face()


@pytest.mark.parametrize("threads", [1, 2])
def test_time_photos_counts_statuses_and_failures(fake_clock, threads):
    files = [Path("a.jpg"), Path("bad.jpg"), Path("c.jpg")]
    out = time_photos(_FakeMatcher(), files, threads)
    assert out["photos"] == 3 and out["failed"] == 1
    assert out["statuses"] == {"detected": 2, "failed": 1}
    assert "no face found" in out["errors"][0]
    assert set(out["stages_ms"]) == {"decode", "detect", "align", "embed", "other"}


def test_time_photos_splits_each_photo_by_stage(fake_clock):
    out = time_photos(_FakeMatcher(), [Path("a.jpg"), Path("bad.jpg"), Path("c.jpg")], 1)
    # every clock reading is 1 ms. A good photo: decode 1, detect 1, align 2 (3 elapsed less
    # a nested decode of 1), embed 1, and the call spans 11 ms; the bad one: decode 1, 3 ms.
    ms = out["stages_ms"]
    assert ms["decode"] == pytest.approx((2 + 1 + 2) / 3, abs=1e-3)
    assert ms["detect"] == pytest.approx(2 / 3, abs=1e-3)
    assert ms["align"] == pytest.approx(4 / 3, abs=1e-3)
    assert ms["embed"] == pytest.approx(2 / 3, abs=1e-3)
    assert out["latency_ms"]["median"] == pytest.approx(11.0)
    assert ms["other"] == pytest.approx((11 + 3 + 11) / 3 - 13 / 3, abs=1e-3)
    # the run: 12 + 4 + 12 readings in the calls, then the closing one
    assert out["wall_s"] == pytest.approx(0.029)
    assert out["photos_per_s"] == pytest.approx(3 / 0.029, abs=1e-3)


def test_photo_files_walks_the_folder_sorted_and_limited(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in photo_files(tmp_path)] == ["a.png", "b.JPG", "c.jpeg"]
    assert [p.name for p in photo_files(tmp_path, limit=2)] == ["a.png", "b.JPG"]
    with pytest.raises(SlimfaceError, match="not a folder"):
        photo_files(tmp_path / "sub" / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlimfaceError, match="no image files"):
        photo_files(empty)


@pytest.mark.slow
def test_bench_photos_reports_every_stage_of_real_photos(tmp_path, capsys):
    from PIL import Image
    from slimface.cli.main import main

    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, (600 + 100 * i, 800, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"p{i}.jpg", quality=90)
    assert main(["bench", "photos", str(tmp_path), "--threads", "1", "--warmup", "0",
                 "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["photos"] == 3 and out["statuses"] == {"centre": 3}
    assert set(out["stages_ms"]) == {"decode", "detect", "align", "embed", "other"}
    assert out["cpu"]["cpu"] and out["cpu"]["isa"]
    assert "photos/s" in captured.err  # the table: stderr while stdout carries the JSON

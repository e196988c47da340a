"""The crop cache: a damaged index is renamed ``.corrupt`` (never deleted) with a warning
naming it, and a new one takes its place, whether the damage shows on opening or in a query."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from slimface.align.cache import CropCache, FileKey
from slimface.align.detect import Face
from slimface.align.templates import get_template

TEMPLATE = get_template("arcface112")


def _key(tmp_path: Path, name: str = "a.png") -> FileKey:
    path = tmp_path / name
    path.write_bytes(b"x")
    return FileKey.of(path)


def _round_trip(cache: CropCache, key: FileKey) -> None:
    """The cache works: a stored crop comes back."""
    crop = np.full((112, 112, 3), 7, np.uint8)
    face = Face(box=np.zeros(4, np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                kind="5pt")
    cache.add([(key, "detected", face, crop)])
    crops = np.zeros((1, 112, 112, 3), np.uint8)
    status, faces = [""], [None]
    assert cache.fill([key], crops, status, faces) == []
    assert status == ["detected"] and (crops[0] == 7).all()


def test_an_index_that_is_not_a_database_is_renamed_and_rebuilt(tmp_path: Path, caplog):
    root = tmp_path / "crops"
    root.mkdir()
    garbage = np.random.default_rng(0).bytes(5000)
    for _ in range(2):  # the second time the first .corrupt file is kept as well
        (root / "index.sqlite").write_bytes(garbage)
        with caplog.at_level(logging.WARNING, logger="slimface.align.cache"):
            cache = CropCache.open("chain", TEMPLATE, root)
        _round_trip(cache, _key(tmp_path))
        cache.close()
    assert (root / "index.sqlite.corrupt").read_bytes() == garbage
    assert (root / "index.sqlite.corrupt.1").read_bytes() == garbage
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert str(root / "index.sqlite") in warnings[0] and "damaged" in warnings[0]
    assert "index.sqlite.corrupt" in warnings[0]


def test_damage_found_by_a_query_counts_as_a_miss_and_the_index_is_rebuilt(tmp_path: Path,
                                                                          caplog):
    root = tmp_path / "crops"
    cache = CropCache.open("chain", TEMPLATE, root)
    with cache.db:  # enough rows that the table spans pages past the schema's
        cache.db.executemany("INSERT INTO det VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             [(f"/{'p' * 200}{i}", 1, 1, cache.chain, "centre", None, None,
                               None, None) for i in range(400)])
    cache.close()
    data = bytearray((root / "index.sqlite").read_bytes())
    for page in range(8, len(data) // 4096):  # a page type byte no b-tree page has
        data[page * 4096] = 0xFF
    (root / "index.sqlite").write_bytes(bytes(data))
    cache = CropCache.open("chain", TEMPLATE, root)  # the header is fine: opens
    key = _key(tmp_path)
    with caplog.at_level(logging.WARNING, logger="slimface.align.cache"):
        assert cache.detections([key]) == {}
    assert "damaged" in caplog.text and (root / "index.sqlite.corrupt").is_file()
    _round_trip(cache, key)
    cache.close()


def test_a_locked_index_keeps_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sqlite3

    cache = CropCache.open("chain", TEMPLATE, tmp_path / "crops")
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"

    class Busy:
        def execute(self, *args):
            raise locked

    monkeypatch.setattr(cache, "db", Busy())
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        cache.detections([_key(tmp_path)])
    assert not (tmp_path / "crops" / "index.sqlite.corrupt").exists()

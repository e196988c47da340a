"""sqlite_error_name: the same names with and without ``sqlite_errorname`` (Python 3.10),
so the gallery's and the crop cache's causes do not depend on the Python version."""
from __future__ import annotations

import sqlite3

import pytest

from slimface.gallery.store import gallery_io_error
from slimface.io.sqlite import sqlite_error_name


@pytest.mark.parametrize("message, name", [
    ("file is not a database", "SQLITE_NOTADB"),
    ("database disk image is malformed", "SQLITE_CORRUPT"),
    ("database is locked", "SQLITE_BUSY"),
    ("database or disk is full", "SQLITE_FULL"),
    ("attempt to write a readonly database", "SQLITE_READONLY"),
    ("no such table: meta", ""),
])
def test_a_name_comes_from_the_message_where_python_gives_none(message, name):
    assert sqlite_error_name(sqlite3.OperationalError(message)) == name


def test_the_exceptions_own_name_wins():
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorname = "SQLITE_LOCKED"
    assert sqlite_error_name(exc) == "SQLITE_LOCKED"


def test_a_gallery_error_without_the_attribute_still_names_the_cause(tmp_path):
    error = gallery_io_error(tmp_path / "g.db", sqlite3.OperationalError("database is locked"),
                             "write the gallery", 5.0)
    assert "locked by another process" in str(error)

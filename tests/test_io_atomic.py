"""Atomic writes (``slimface.io.atomic``)."""
from __future__ import annotations


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """mkstemp makes 0600 files; a model or gallery written atomically must be as readable as
    one written with open()."""
    import os

    from slimface.io.atomic import atomic_write_bytes

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "atomic.bin") == mode(plain)


def test_a_folder_or_unwritable_target_is_a_clear_error(tmp_path):
    import pytest

    from slimface.errors import OutputError
    from slimface.io.atomic import atomic_write_text

    with pytest.raises(OutputError, match="is a folder"):
        atomic_write_text(tmp_path, "x")
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OutputError, match="cannot write here"):
        atomic_write_text(tmp_path / "file" / "out.json", "x")
    assert (tmp_path / "file").read_text() == "keep"

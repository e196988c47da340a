"""Every I/O failure of a gallery is a clear error that names the file and the cause (no
traceback, nothing half-written), and read commands never create or change a file.

Permission cases run the command as user ``nobody`` when the tests run as root (root ignores
file modes); a full disk is a file size limit (``ulimit -f``) on the child process,
SQLite's ``max_page_count``, or a connection that fails at COMMIT the way SQLite does."""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _cli_child import NOBODY, run_cli, run_main_unprivileged, run_unprivileged
from _gallery_fakes import register_tiny, write_faces

from slimface.cli.main import main
from slimface.errors import GalleryError
from slimface.gallery import store as store_mod
from slimface.gallery.gallery import Gallery, ModelInfo

INFO = ModelInfo(name="tiny", fingerprint="abc123", template="arcface112", embedding_dim=8)


@pytest.fixture(scope="session")
def can_drop_privileges() -> None:
    """Skip when user ``nobody`` cannot read this checkout (root's tests drop to it)."""
    if os.geteuid() != 0:
        return
    import slimface.api  # noqa: F401 - loaded before the fork, read as root
    import slimface.cli.gallery  # noqa: F401

    src = Path(slimface.api.__file__).parent
    pid = os.fork()
    if pid == 0:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        os._exit(0 if os.access(src, os.R_OK | os.X_OK) else 1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.skip(f"running as root and user {NOBODY} cannot read {src}; file permissions "
                    f"cannot be tested here")


@pytest.fixture()
def world():
    """A folder every user may enter (pytest's own tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="slimface-io-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def gallery(world: Path, monkeypatch):
    register_tiny(monkeypatch)
    faces = write_faces(world / "img", 2, 2)
    db = world / "data" / "g.db"
    db.parent.mkdir()
    db.parent.chmod(0o755)
    assert main(["gallery", "create", str(db), "--model", "tiny-test"]) == 0
    assert main(["gallery", "enroll", str(db), "--name", "p0", str(faces["p0"][0])]) == 0
    return db, faces


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _digest(folder: Path) -> dict[str, str]:
    """Name -> sha256 of every file in ``folder`` (what 'nothing changed' compares)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def _clean_error(proc_or_err: str, db: Path) -> str:
    assert "Traceback" not in proc_or_err, proc_or_err
    assert proc_or_err.startswith(f"slimface: error: {db}:"), proc_or_err
    return proc_or_err


# ---- permissions --------------------------------------------------------------------------
def test_enroll_into_a_read_only_gallery_file_names_the_file_and_the_cause(
        gallery, can_drop_privileges):
    db, faces = gallery
    db.parent.chmod(0o777)  # only the file itself is read-only
    db.chmod(0o444)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for argv in (["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0])],
                 ["gallery", "remove", str(db), "--name", "p0"]):
        rc, _, err = run_main_unprivileged(argv)
        assert rc == 1, err
        assert "read-only" in _clean_error(err, db) and "permission denied" in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_read_only_folder_lists_and_identifies_and_creates_nothing(gallery,
                                                                   can_drop_privileges):
    db, faces = gallery
    db.parent.chmod(0o555)
    before = _digest(db.parent)
    rc, out, err = run_main_unprivileged(["gallery", "list", str(db)])
    assert rc == 0 and "p0" in out, err
    probe = _unit(np.random.default_rng(0), 1, 16)  # the search, without a model (no torch)

    def identify() -> list:
        with Gallery.open(db, readonly=True) as g:
            return [m.name for m in g.identify(probe, top_k=3)[0]]

    assert run_unprivileged(identify) == ["p0"]
    rc, _, err = run_main_unprivileged(["gallery", "enroll", str(db), "--name", "p1",
                                        str(faces["p1"][0])])
    assert rc == 1
    assert f"the folder {db.parent} is not writable" in _clean_error(err, db)
    assert _digest(db.parent) == before


def test_create_in_a_folder_without_write_permission(world: Path, monkeypatch,
                                                     can_drop_privileges):
    locked = world / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    db = locked / "sub" / "new.db"

    def create() -> str:  # Gallery.create, as `gallery create` runs it, without a model
        try:
            Gallery.create(db, INFO)
        except GalleryError as exc:
            return str(exc)
        return "created"

    assert "permission denied" in _clean_error(f"slimface: error: {run_unprivileged(create)}", db)
    assert list(locked.iterdir()) == []


def test_gallery_path_under_a_file_is_named(world: Path, monkeypatch, capsys):
    register_tiny(monkeypatch)
    blocker = world / "file.db"
    blocker.write_text("I am a file")
    db = blocker / "sub" / "g.db"
    assert main(["gallery", "create", str(db), "--model", "tiny-test"]) == 1
    err = _clean_error(capsys.readouterr().err, db)
    assert f"{blocker} is a file, not a folder" in err
    for argv in (["gallery", "list", str(db)], ["gallery", "remove", str(db), "--name", "x"]):
        assert main(argv) == 1
        assert "no gallery here" in _clean_error(capsys.readouterr().err, db)
    assert blocker.read_text() == "I am a file"


# ---- full disk ------------------------------------------------------------------------------
def test_create_on_a_full_disk_leaves_no_file_behind(world: Path):
    db = world / "full" / "g.db"
    proc = run_cli(["gallery", "create", str(db), "--model", "tiny-test"],
                   file_size_limit=8000)
    assert proc.returncode == 1, proc.stderr
    err = _clean_error(proc.stderr, db)
    assert "file size limit" in err or "disk is full" in err
    assert sorted(p.name for p in db.parent.iterdir()) == []  # no .creating leftover


def test_enroll_on_a_full_disk_keeps_the_gallery_as_it_was(gallery):
    db, faces = gallery
    before = _digest(db.parent)
    huge = "x" * 100_000  # metadata this large needs more room than the limit leaves
    proc = run_cli(["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0]),
                    "--meta", f"note={huge}"], file_size_limit=64_000)
    assert proc.returncode == 1, proc.stderr
    err = _clean_error(proc.stderr, db)
    assert "file size limit" in err and "nothing was saved" in err
    assert "rollback" not in err
    assert _digest(db.parent) == before
    with Gallery.open(db, readonly=True) as g:
        assert [i.name for i in g.identities()] == ["p0"]


class _FullAtCommit:
    """A connection whose COMMIT fails as on a full disk: SQLite rolls back, then reports."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, *args):
        if sql.strip().upper() == "COMMIT":
            self._conn.execute("ROLLBACK")
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorname = "SQLITE_FULL"
            raise exc
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_disk_full_at_commit_is_one_clear_error(gallery, monkeypatch, capsys):
    db, faces = gallery
    real_connect = store_mod.GalleryStore._connect

    def failing(path, readonly, timeout_s):
        conn = real_connect(path, readonly, timeout_s)
        return conn if readonly else _FullAtCommit(conn)

    monkeypatch.setattr(store_mod.GalleryStore, "_connect", staticmethod(failing))
    monkeypatch.setattr(store_mod, "_space_cause", lambda folder: None)
    before = _digest(db.parent)
    assert main(["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0])]) == 1
    err = _clean_error(capsys.readouterr().err, db)
    assert "cannot write to the gallery: the disk is full" in err
    assert "nothing was saved" in err and "cannot rollback" not in err
    assert _digest(db.parent) == before


def test_database_full_mid_enroll_keeps_the_gallery_usable(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with Gallery.create(tmp_path / "g.db", INFO) as g:
        g.enroll("kept", x[:1])
        pages = g.store._conn.execute("PRAGMA page_count").fetchone()[0]
        g.store._conn.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(GalleryError, match=r"g\.db: cannot write to the gallery: .*"
                                               r"full.*nothing was saved"):
            g.enroll("many", x)
        assert [i.name for i in g.identities()] == ["kept"]
        assert g.identify(x[:1])[0][0].name == "kept"


# ---- locks ----------------------------------------------------------------------------------
def test_gallery_locked_past_the_timeout_is_named(gallery, monkeypatch, capsys):
    db, faces = gallery
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer in the middle of a transaction
    try:
        for argv in (["gallery", "enroll", str(db), "--name", "p1", str(faces["p1"][0])],
                     ["gallery", "remove", str(db), "--name", "p0"]):
            assert main(argv) == 1
            err = _clean_error(capsys.readouterr().err, db)
            assert "locked by another process (still busy after 0.2 s)" in err
        assert main(["gallery", "list", str(db)]) == 0  # readers are not blocked
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ---- read commands write nothing ------------------------------------------------------------
def test_list_and_identify_of_an_empty_file_leave_it_empty(world: Path, monkeypatch, capsys):
    register_tiny(monkeypatch)
    empty = world / "empty.db"
    empty.write_bytes(b"")
    img = write_faces(world / "img", 1, 1)["p0"][0]
    for argv in (["gallery", "list", str(empty)], ["gallery", "identify", str(empty), str(img)],
                 ["gallery", "enroll", str(empty), "--name", "x", str(img)]):
        assert main(argv) == 1
        assert "not a slimface gallery (the file is empty" in _clean_error(
            capsys.readouterr().err, empty)
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in world.iterdir()) == ["empty.db", "img"]


def test_read_commands_change_no_file(gallery, capsys):
    db, faces = gallery
    Path(f"{db}.faiss").unlink()  # a missing index cache is rebuilt in memory, not written
    before = {p.name: (p.stat().st_mtime_ns, h) for p, h in
              ((db.parent / n, h) for n, h in _digest(db.parent).items())}
    assert main(["gallery", "list", str(db)]) == 0
    assert main(["gallery", "identify", str(db), str(faces["p0"][1])]) == 0
    after = {p.name: (p.stat().st_mtime_ns, h) for p, h in
             ((db.parent / n, h) for n, h in _digest(db.parent).items())}
    sqlite_companions = {f"{db.name}-wal", f"{db.name}-shm"}
    assert {k: v for k, v in after.items() if k not in sqlite_companions} == before
    assert not Path(f"{db}.faiss").exists()
    assert all(os.stat(db.parent / n).st_size == 0 or n.endswith("-shm")
               for n in sqlite_companions & set(after))


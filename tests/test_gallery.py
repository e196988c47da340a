"""Gallery store + index: enroll/identify/remove, consistency with the index file, model
refusal, crash safety."""
from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from slimface.errors import GalleryError, UnknownNameError
from slimface.gallery import index as ix
from slimface.gallery.gallery import Gallery, ModelInfo, index_path_for

INFO = ModelInfo(name="tiny", fingerprint="abc123", template="arcface112", embedding_dim=8)


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def gallery(tmp_path: Path):
    g = Gallery.create(tmp_path / "g.db", INFO)
    yield g
    g.close()


def test_enroll_then_identify_returns_the_enrolled_identity(gallery: Gallery):
    rng = np.random.default_rng(0)
    people = _unit(rng, 5)
    for i, v in enumerate(people):
        gallery.enroll(f"person{i}", v[None])
    ranked = gallery.identify(people + 0.01, top_k=3)
    assert [r[0].name for r in ranked] == [f"person{i}" for i in range(5)]
    assert len(ranked[0]) == 3 and ranked[0][0].score > ranked[0][1].score


def test_several_images_per_person_rank_by_best_image(gallery: Gallery):
    rng = np.random.default_rng(1)
    a, b = _unit(rng, 2)
    gallery.enroll("ann", np.stack([a, -a]))
    assert gallery.enroll("ann", b[None]) == 3  # a second enroll appends
    ranked = gallery.identify(b[None], top_k=5)[0]
    assert len(ranked) == 1 and ranked[0].name == "ann"
    assert ranked[0].score == pytest.approx(1.0, abs=1e-5)


def test_remove_deletes_identity_from_database_and_index(gallery: Gallery):
    rng = np.random.default_rng(2)
    x = _unit(rng, 3)
    for i, v in enumerate(x):
        gallery.enroll(f"p{i}", v[None])
    assert gallery.remove("p1") == 1
    assert [i.name for i in gallery.identities()] == ["p0", "p2"]
    assert gallery.index.ntotal == 2
    assert gallery.identify(x[1:2], top_k=3)[0][0].name != "p1"
    with pytest.raises(GalleryError, match="no identity named 'nobody'"):
        gallery.remove("nobody")


def test_remove_takes_the_name_as_enroll_stored_it_and_suggests_near_misses(gallery: Gallery):
    rng = np.random.default_rng(3)
    for i, v in enumerate(_unit(rng, 12)):
        gallery.enroll(f"Person {i:02d}", v[None])
    assert gallery.remove("  Person 03 ") == 1  # enroll strips the spaces, so does remove
    with pytest.raises(GalleryError, match=r"no identity named 'person 04'; did you mean "
                                           r"'Person 04'\?") as err:
        gallery.remove("person 04")
    assert "Person 00" in str(err.value) and "(11 in all)" in str(err.value)
    with pytest.raises(GalleryError, match="identity name is empty"):
        gallery.remove("   ")
    for i in [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]:
        gallery.remove(f"Person {i:02d}")
    with pytest.raises(GalleryError, match=r"no identity named 'x' \(the gallery is empty\)"):
        gallery.remove("x")


def test_reopen_uses_persisted_index_and_refuses_other_model(tmp_path: Path, gallery: Gallery):
    gallery.enroll("x", _unit(np.random.default_rng(3), 1))
    gallery.close()
    other = ModelInfo(name="other", fingerprint="zzz", template="arcface112", embedding_dim=8)
    with pytest.raises(GalleryError, match="built with model 'tiny'.*--model tiny"):
        Gallery.open(tmp_path / "g.db", expect=other)
    with Gallery.open(tmp_path / "g.db", expect=INFO) as g:
        assert g.index.ntotal == 1


def test_template_former_name_is_the_same_template_for_compatibility(tmp_path: Path):
    from slimface.gallery.gallery import check_compatible

    built = ModelInfo(name="q", fingerprint="f", template="seed112x96", embedding_dim=8)
    same = ModelInfo(name="q", fingerprint="f", template="sphereface112x96", embedding_dim=8)
    check_compatible(tmp_path / "g.db", built, same)
    check_compatible(tmp_path / "g.db", same, built)
    other = ModelInfo(name="q", fingerprint="f", template="arcface112", embedding_dim=8)
    with pytest.raises(GalleryError, match="template 'seed112x96' vs 'arcface112'"):
        check_compatible(tmp_path / "g.db", built, other)


def test_stale_or_corrupt_index_file_is_rebuilt_from_database(tmp_path: Path, gallery: Gallery):
    rng = np.random.default_rng(4)
    gallery.enroll("a", _unit(rng, 1))
    stale = index_path_for(gallery.path).read_bytes()
    gallery.enroll("b", _unit(rng, 1))
    gallery.close()
    index_path_for(tmp_path / "g.db").write_bytes(stale)  # index from one write ago
    with Gallery.open(tmp_path / "g.db") as g:
        assert g.index.ntotal == 2
    index_path_for(tmp_path / "g.db").write_bytes(b"garbage")
    with Gallery.open(tmp_path / "g.db") as g:
        assert g.index.ntotal == 2


def test_exception_inside_enroll_transaction_keeps_earlier_commits(gallery: Gallery,
                                                                   monkeypatch):
    rng = np.random.default_rng(5)
    gallery.enroll("kept", _unit(rng, 2))
    generation = gallery.store.generation

    def boom(*a, **k):
        raise RuntimeError("crash mid-enroll")

    monkeypatch.setattr(gallery.store, "insert_embeddings", boom)
    with pytest.raises(RuntimeError):
        gallery.enroll("partial", _unit(rng, 3))
    assert [i.name for i in gallery.identities()] == ["kept"]
    assert gallery.store.generation == generation
    assert gallery.store.count_embeddings() == 2


def _enroll_then_die(db: str) -> None:
    g = Gallery.open(db)
    g.enroll("committed", np.ones((1, 8), np.float32) / np.sqrt(8))
    conn = g.store._conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO identities(name, metadata, created_at) VALUES ('ghost','{}','t')")
    os._exit(9)  # killed mid-transaction: no rollback, no index write, no cleanup


def test_process_killed_mid_enroll_loses_nothing_committed(tmp_path: Path, gallery: Gallery):
    gallery.enroll("before", _unit(np.random.default_rng(6), 1))
    gallery.close()
    proc = mp.get_context("fork").Process(target=_enroll_then_die, args=(str(tmp_path / "g.db"),))
    proc.start()
    proc.join(20)
    assert proc.exitcode == 9
    with Gallery.open(tmp_path / "g.db") as g:
        assert [i.name for i in g.identities()] == ["before", "committed"]
        assert g.index.ntotal == 2


def test_create_refuses_existing_file_and_open_refuses_non_gallery(tmp_path: Path, gallery):
    with pytest.raises(GalleryError, match="already exists"):
        Gallery.create(gallery.path, INFO)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(GalleryError, match="junk.db: not a slimface gallery"):
        Gallery.open(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.close()
    with pytest.raises(GalleryError, match="not a slimface gallery"):
        Gallery.open(other)
    with pytest.raises(GalleryError, match="no gallery here"):
        Gallery.open(tmp_path / "missing.db")


def test_wrong_dimension_and_non_finite_embeddings_are_refused(gallery: Gallery):
    with pytest.raises(GalleryError, match=r"expects \(n, 8\)"):
        gallery.enroll("x", np.ones((1, 4), np.float32))
    with pytest.raises(GalleryError, match="non-finite"):
        gallery.enroll("x", np.full((1, 8), np.nan, np.float32))
    assert len(gallery) == 0


@pytest.mark.parametrize("kind", ix.SEARCH_INDEXES.names())
def test_every_index_kind_finds_exact_copies(kind: str):
    rng = np.random.default_rng(7)
    x = _unit(rng, 1000, 16)
    ids = np.arange(100, 1100)
    params = {"nlist": 16, "nprobe": 16} if kind.startswith("ivf") else {}
    if kind == "ivf_pq":
        params.update(m=8, nbits=4, k_factor=16)
    index = ix.build_index(ix.IndexSpec(kind, params), x, ids)
    _, found = ix.search(index, x[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.95
    blob = ix.serialize_array(index)
    again = ix.deserialize(memoryview(blob.tobytes()))
    assert ix.search(again, x[:5], 1)[1][:, 0].tolist() == ids[:5].tolist()


def test_unknown_index_kind_lists_choices(tmp_path: Path):
    with pytest.raises(UnknownNameError, match="unknown search index 'ivf'"):
        Gallery.create(tmp_path / "x.db", INFO, index_kind="ivf")
    assert not (tmp_path / "x.db").exists()


def test_large_gallery_index_survives_remove_by_rebuilding(tmp_path: Path):
    info = ModelInfo(name="tiny", fingerprint="f", template="arcface112", embedding_dim=16)
    rng = np.random.default_rng(8)
    with Gallery.create(tmp_path / "big.db", info, index_kind="ivf_pq") as g:
        g.enroll_many([f"n{i}" for i in range(1200)], _unit(rng, 1200, 16))
        assert g._index_kind == "ivf_pq" and g.index.ntotal == 1200
        assert g.remove("n5") == 1
        assert g.index.ntotal == 1199
        assert "n5" not in {m.name for m in g.identify(_unit(rng, 20, 16), top_k=3)[0]}

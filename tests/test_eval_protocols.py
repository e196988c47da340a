"""All-pairs verification and 1:N identification on hand-worked examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimface.eval.protocols import (all_pairs_verification, deployment_readouts,
                                     identification, identification_split, resolvable)


def unit(*angles_deg: float) -> np.ndarray:
    """2-D unit vectors at the given angles: cosines are easy to work out by hand."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def paths(*names: str) -> list[Path]:
    return [Path("lfw") / n.split("_")[0] / f"{n}.jpg" for n in names]


def test_all_pairs_counts_and_tar_worked_by_hand() -> None:
    # A, A at 0 and 10 deg (genuine cos 0.985); B, B at 90 and 100 (genuine cos 0.985);
    # C at 50: impostors A-B ~ cos 80..100, C against A/B cos(40..50)
    e = unit(0, 10, 90, 100, 50)
    ids = ["A", "A", "B", "B", "C"]
    r = all_pairs_verification(e, ids, fars=(0.1,), block_rows=2)
    assert (r["n_images"], r["n_genuine"], r["n_impostor"]) == (5, 2, 8)
    # 8 impostors: floor(0.1 * 8) = 0 false accepts allowed -> threshold = highest impostor,
    # cos(40 deg) (A@10 vs C@50 and C@50 vs B@90): both genuine pairs (cos 10 deg) pass
    assert r["tar_at_far_1e-1"] is None  # 8 < 10 / 0.1 impostors: not resolvable
    r = all_pairs_verification(e, ids, fars=(0.5,), block_rows=3, min_false_accepts=0)
    # floor(0.5 * 8) = 4 false accepts allowed -> threshold = 5th highest impostor score
    cos = np.cos(np.deg2rad([40, 40, 50, 50, 80, 90, 90, 100]))  # C-A10, C-B90, C-A0, C-B100, ...
    assert r["threshold_at_far_5e-1"] == pytest.approx(np.sort(cos)[::-1][4], abs=1e-6)
    assert r["tar_at_far_5e-1"] == 1.0


def test_all_pairs_blocks_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(300, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = [str(i // 3) for i in range(300)]
    a = all_pairs_verification(e, ids, fars=(1e-2, 1e-3), block_rows=7)
    b = all_pairs_verification(e, ids, fars=(1e-2, 1e-3), block_rows=1000)
    assert a == b
    # brute force over every pair
    s = e @ e.T
    iu = np.triu_indices(300, 1)
    same = np.asarray(ids)[iu[0]] == np.asarray(ids)[iu[1]]
    neg = np.sort(s[iu][~same])[::-1]
    thr = neg[int(np.floor(1e-2 * neg.size))]
    assert a["threshold_at_far_1e-2"] == pytest.approx(float(thr))
    assert a["tar_at_far_1e-2"] == pytest.approx(float(np.mean(s[iu][same] > thr)))


def test_identification_split_takes_first_image_by_file_name() -> None:
    p = paths("Ann_0002", "Bob_0001", "Ann_0001", "Cy_0001", "Ann_0003")
    split = identification_split(p)
    assert [p[i].name for i in split.gallery] == ["Ann_0001.jpg"]
    assert sorted(p[i].name for i in split.mated) == ["Ann_0002.jpg", "Ann_0003.jpg"]
    assert sorted(p[i].name for i in split.impostors) == ["Bob_0001.jpg", "Cy_0001.jpg"]


def test_rank_k_and_dir_worked_by_hand_with_a_tie() -> None:
    # gallery: Ann_0001 @0, Bea_0001 @90, Cat_0001 @180, Dan_0001 @270
    # probes: Ann_0002 @10 (rank 1), Bea_0002 @130 (Cat at 180 is 50 deg away, Bea 40: rank 1)
    #         Cat_0002 @225 (tie: Cat and Dan both 45 deg away -> counted against: rank 2)
    # impostors (single-image people): Eve @45 (top score cos 45), Fay @300 (cos 30 to Dan)
    names = ["Ann_0001", "Bea_0001", "Cat_0001", "Dan_0001", "Ann_0002", "Bea_0002",
             "Cat_0002", "Dan_0002", "Eve_0001", "Fay_0001"]
    angles = [0, 90, 180, 270, 10, 130, 225, 200, 45, 300]
    r = identification(unit(*angles), paths(*names), dir_fars=(0.1, 0.5))
    assert (r["n_gallery"], r["n_mated_probes"], r["n_impostor_probes"]) == (4, 4, 2)
    # Dan_0002 @200 is 20 deg from Cat, 70 from Dan: rank 2
    assert r["rank1"] == pytest.approx(2 / 4)
    assert r["rank5"] == 1.0
    # 2 impostor probes cannot resolve FAR 0.1 (needs 100) nor 0.5 (needs 20)
    assert r["dir_at_far_1e-1"] is None and r["dir_at_far_5e-1"] is None
    # with the resolution rule off: impostor top scores are cos 30 (Fay vs Dan) and cos 45
    # (Eve vs Ann/Bea); FAR 0.5 of 2 allows 1 false alarm, so the threshold is the lower,
    # cos 45; Ann (cos 10) and Bea (cos 40) are correct at rank 1 and above it
    r = identification(unit(*angles), paths(*names), dir_fars=(0.5,), min_false_accepts=0)
    assert r["dir_threshold_at_far_5e-1"] == pytest.approx(np.cos(np.deg2rad(45)), abs=1e-6)
    assert r["dir_at_far_5e-1"] == pytest.approx(2 / 4)


def test_dir_at_far_counts_only_correct_top1_above_threshold() -> None:
    rng = np.random.default_rng(1)
    n_people = 30
    base = rng.normal(size=(n_people, 16))
    gallery = base + 0.1 * rng.normal(size=base.shape)
    mated = base + 0.6 * rng.normal(size=base.shape)
    impostors = rng.normal(size=(200, 16))
    e = np.concatenate([gallery, mated, impostors]).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    names = ([f"P{i:02d}_0001" for i in range(n_people)]
             + [f"P{i:02d}_0002" for i in range(n_people)]
             + [f"X{i:03d}_0001" for i in range(200)])
    r = identification(e, paths(*names), dir_fars=(0.05,), min_false_accepts=0)
    s_mated = e[n_people:2 * n_people] @ e[:n_people].T
    s_imp = (e[2 * n_people:] @ e[:n_people].T).max(axis=1)
    thr = np.sort(s_imp)[::-1][int(np.floor(0.05 * 200))]
    correct = s_mated.argmax(axis=1) == np.arange(n_people)
    expected = np.mean(correct & (s_mated.max(axis=1) > thr))
    assert r["dir_threshold_at_far_5e-2"] == pytest.approx(float(thr), abs=1e-6)
    assert r["dir_at_far_5e-2"] == pytest.approx(float(expected))
    assert r["rank1"] == pytest.approx(float(np.mean(correct)))


def test_an_identity_with_one_image_is_only_an_impostor() -> None:
    r = identification(unit(0, 5, 90), paths("Ann_0001", "Ann_0002", "Bob_0001"),
                       dir_fars=())
    assert (r["n_gallery"], r["n_mated_probes"], r["n_impostor_probes"]) == (1, 1, 1)
    assert r["rank1"] == 1.0


def test_resolution_rule_and_readout_keys() -> None:
    assert resolvable(1e-3, 10_000) and not resolvable(1e-3, 9_999)
    e = unit(*range(0, 360, 7))
    names = [f"P{i // 2:02d}_{i % 2 + 1:04d}" for i in range(len(e))]
    r = deployment_readouts(e, paths(*names))
    assert set(r["tar_at_far"]) == {"1e-3", "1e-4", "1e-5"}
    assert set(r["dir_at_far"]) == {"1e-2", "1e-3"}
    assert r["tar_at_far"]["1e-5"] is None  # 1,300 impostor pairs cannot resolve 1e-5
    assert 0.0 <= r["rank1"] <= r["rank5"] <= 1.0

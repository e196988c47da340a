"""The 10-fold protocol against a hand-worked example, and its invariants."""
from __future__ import annotations

import numpy as np
import pytest

from slimface.eval.verification import (accuracies_at, best_threshold, candidate_thresholds,
                                        cosine_scores, k_fold_verification, split_verification)

# Three folds of one same + one different pair: (score, same, fold).
HAND = [(0.9, True, 0), (0.3, False, 0),
        (0.6, True, 1), (0.5, False, 1),
        (0.4, True, 2), (0.7, False, 2)]


def _hand():
    s, y, f = zip(*HAND)
    return np.array(s), np.array(y), np.array(f)


def test_hand_worked_three_folds():
    """Worked by hand (accept when score > t; ties -> smallest t):

    fold 0 held out: train .4S .5D .6S .7D; candidates -.6 .45 .55 .65 1.7 score
    .50 .25 .50 .25 .50 -> t=-.6 (tie), test: .9S accepted, .3D accepted -> 0.5.
    fold 1 held out: train .3D .4S .7D .9S; candidates -.7 .35 .55 .8 1.9 score
    .50 .75 .50 .75 .50 -> t=.35 (tie with .8), test: .6S ok, .5D wrong -> 0.5.
    fold 2 held out: train .3D .5D .6S .9S -> t=.55 (1.0), test: .4S wrong, .7D wrong -> 0.
    """
    r = k_fold_verification(*_hand())
    np.testing.assert_allclose(r.thresholds, [-0.6, 0.35, 0.55])
    np.testing.assert_allclose(r.train_accuracies, [0.5, 0.75, 1.0])
    np.testing.assert_allclose(r.fold_accuracies, [0.5, 0.5, 0.0])
    assert r.mean == pytest.approx(1 / 3)
    assert r.std == pytest.approx(np.sqrt(1 / 18))


def test_result_does_not_depend_on_pair_order():
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0.6, 0.2, 300), rng.normal(0.2, 0.2, 300)]
    y = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    f = np.arange(600) % 10
    perm = rng.permutation(600)
    a, b = k_fold_verification(s, y, f), k_fold_verification(s[perm], y[perm], f[perm])
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    np.testing.assert_array_equal(a.fold_accuracies, b.fold_accuracies)


def test_separable_scores_give_perfect_accuracy_and_threshold_between_classes():
    s = np.r_[np.linspace(0.6, 0.9, 50), np.linspace(-0.2, 0.4, 50)]
    y = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    r = k_fold_verification(s, y, np.arange(100) % 10)
    assert r.mean == 1.0 and r.std == 0.0
    assert np.all((r.thresholds > 0.4) & (r.thresholds < 0.6))


def test_fast_accuracy_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 20, 200) / 20.0  # many exact ties
    y = rng.random(200) < 0.5
    t = candidate_thresholds(s)
    brute = [np.mean((s > ti) == y) for ti in t]
    np.testing.assert_allclose(accuracies_at(s, y, t), brute)
    thr, acc = best_threshold(s, y)
    assert acc == pytest.approx(max(brute)) and thr == t[int(np.argmax(brute))]


def test_insightface_grid_never_beats_exact_midpoints_on_training_data():
    rng = np.random.default_rng(2)
    s = np.clip(np.r_[rng.normal(0.5, 0.2, 500), rng.normal(0.1, 0.2, 500)], -1, 1)
    y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    _, exact = best_threshold(s, y)
    _, grid = best_threshold(s, y, candidates="insightface")
    assert grid <= exact and exact - grid < 0.01


def test_split_verification_for_view1():
    out = split_verification(np.array([0.9, 0.1]), np.array([True, False]),
                             np.array([0.8, 0.6, 0.2]), np.array([True, False, False]))
    assert 0.1 < out["threshold"] < 0.9 and out["train_accuracy"] == 1.0
    assert out["test_accuracy"] == pytest.approx(2 / 3 if out["threshold"] < 0.6 else 1.0)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="differ in length"):
        k_fold_verification(np.zeros(4), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 folds"):
        k_fold_verification(np.zeros(4), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        best_threshold(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="candidates"):
        candidate_thresholds(np.zeros(3), "grid")  # type: ignore[arg-type]


def test_cosine_scores_renormalise_rows():
    a = np.array([[3.0, 0.0], [1.0, 1.0]])
    b = np.array([[1.0, 0.0], [-2.0, -2.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [1.0, -1.0])

"""ROC, AUC and TAR@FAR, including what 3000 negatives can and cannot resolve."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimface.eval.metrics import (far_key, roc_auc, roc_curve, tar_at_far, threshold_at_far,
                                   verification_metrics)


def test_auc_equals_trapezoid_of_roc_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 10, 400) / 10.0
    y = rng.random(400) < 0.4
    far, tar, thr = roc_curve(s, y)
    assert far[0] == tar[0] == 0.0 and far[-1] == tar[-1] == 1.0
    assert np.all(np.diff(thr) < 0)
    assert roc_auc(s, y) == pytest.approx(np.trapezoid(tar, far))


def test_auc_hand_example():
    # positives .9 .4, negatives .5 .1: pairs (pos > neg) = (.9>.5 .9>.1 .4>.1) = 3 of 4
    assert roc_auc(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0])) == 0.75


def test_threshold_at_far_allows_floor_far_times_n_false_accepts():
    neg = np.arange(1, 11) / 10.0  # .1 .. 1.0
    assert threshold_at_far(neg, 0.1) == 0.9    # one allowed: only 1.0 is above 0.9
    assert threshold_at_far(neg, 0.05) == 1.0   # none allowed: the highest negative
    assert threshold_at_far(neg, 0.3) == 0.7
    assert threshold_at_far(neg, 1.0) < 0.1
    with pytest.raises(ValueError, match="far must be"):
        threshold_at_far(neg, 1.5)


def test_tar_at_far_reports_resolution_honestly():
    pos = np.array([0.95, 0.85, 0.6])
    neg = np.linspace(0.0, 0.9, 3000)
    s, y = np.r_[pos, neg], np.r_[np.ones(3, bool), np.zeros(3000, bool)]
    r3, r4 = tar_at_far(s, y, 1e-3), tar_at_far(s, y, 1e-4)
    assert r3.n_neg == 3000 and not r3.below_resolution and r3.far_achieved <= 1e-3
    assert r4.below_resolution and r4.far_achieved == 0.0 and r4.threshold == 0.9
    assert r4.tar == pytest.approx(1 / 3)  # only .95 beats the highest negative


def test_far_keys_and_summary():
    assert (far_key(1e-3), far_key(1e-4), far_key(1e-2)) == ("tar_at_far_1e-3",
                                                            "tar_at_far_1e-4",
                                                            "tar_at_far_1e-2")
    out = verification_metrics(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0]))
    assert out["auc"] == 1.0 and out["tar_at_far_1e-3"] == 1.0
    assert out["tar_at_far_details"]["tar_at_far_1e-4"]["n_neg"] == 2


def test_roc_plot_with_two_models(tmp_path: Path):
    from slimface.eval.plots import plot_roc

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    curves = {"good": (np.r_[rng.normal(1, .3, 50), rng.normal(0, .3, 50)], y),
              "bad": (rng.normal(0, 1, 100), y)}
    out = plot_roc(tmp_path / "sub" / "roc.png", curves)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

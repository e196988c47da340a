"""The synthetic 1:N benchmark on a small gallery: noise calibration and recall bookkeeping."""
from __future__ import annotations

import json

import numpy as np
import pytest

from slimface.gallery import index as ix
from slimface.gallery import loadcheck, synthetic


def test_noise_calibration_hits_the_target_accuracy():
    x = synthetic.identities(2000, 16, seed=0)
    flat = ix.build_index(ix.IndexSpec("flat"), x, np.arange(1, 2001))
    sigma, acc = synthetic.calibrate_sigma(x, flat, target=0.99, n_queries=500)
    assert 0.0 < sigma < 1.0 and 0.985 <= acc <= 1.0
    q = synthetic.noisy_views(x, np.arange(500), sigma * 3, seed=5)
    assert np.mean(synthetic.exact_top1(flat, q) == np.arange(1, 501)) < acc  # more noise, worse


@pytest.mark.slow  # times real work; `make test-all` runs it
def test_benchmark_reports_exact_and_index_in_one_run(tmp_path):
    res = synthetic.run(n=1000, dim=16, kind="ivf_flat", params={"nlist": 16, "nprobe": 16},
                        n_queries=200, n_latency=5, n_flat_latency=5, workdir=str(tmp_path),
                        n_calibration=300)
    assert res["recall_at_1_vs_exact"] == pytest.approx(1.0)  # nprobe = nlist: exhaustive
    assert res["identify_agrees_with_index"] == pytest.approx(1.0)
    assert 0.95 <= res["exact_top1_accuracy"] <= 1.0
    for key in ("exact_single_query", "index_single_query", "identify_single_query"):
        assert res[key]["median_ms"] > 0 and res[key]["p95_ms"] >= res[key]["median_ms"]
    json.dumps(res)  # JSON-ready


def test_check_flags_stale_and_wrong_answers():
    log = [{"start_generation": 5}, [6, 10.0, "enroll", 3], [7, 20.0, "remove", 0]]
    ok = np.array([[11.0, 0, 6, 3, 3, 1], [21.0, 0, 7, 0, 1, 1], [15.0, 0, 6, 0, 0, 1]])
    assert loadcheck.check(log, 2, ok)["consistent"]
    stale = np.array([[11.0, 0, 5, 3, 1, 1]])  # asked after enroll 3 committed, saw before
    verdict = loadcheck.check(log, 2, stale)
    assert verdict["stale"] == 1 and not verdict["consistent"]
    named_removed = np.array([[21.0, 0, 7, 0, 0, 1]])
    verdict = loadcheck.check(log, 2, named_removed)
    assert verdict["inconsistent"] == 1 and verdict["examples"][0]["asked"] == "id0000000"


def test_load_check_command_runs_briefly_and_every_answer_is_consistent(capsys):
    from slimface.cli.main import main

    rc = main(["bench", "gallery-load", "--clients", "2", "--seconds", "5",
               "--identities", "200", "--dim", "32", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    assert out["consistent"] and out["stale"] == 0 and out["inconsistent"] == 0
    assert out["answers_checked"] > 100 and sum(out["writes"].values()) > 20
    assert 0 < out["latency_ms"]["p50"] <= out["latency_ms"]["p99"]

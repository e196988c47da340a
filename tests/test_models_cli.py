"""``slimface models --json`` and ``slimface bench train``: JSON on stdout, table on stderr.
The pretrained-model cards have their own tests (``test_pretrained_cards.py``)."""
from __future__ import annotations

import json

import pytest

from slimface.cli.main import main


@pytest.mark.slow
def test_models_lists_every_architecture_with_counts_and_logs_nothing(tmp_path, capsys):
    from slimface.models import BACKBONES

    out_file = tmp_path / "models.json"
    assert main(["models", "--json", str(out_file)]) == 0
    text, err = capsys.readouterr()
    assert err == ""                                    # building QAT backbones logs nothing
    assert text.index("pretrained models") < text.index("architectures")
    out = json.loads(out_file.read_text())
    rows = {r["name"]: r for r in out["architectures"]}
    assert {"face_resnet_a", "face_resnet_b", "face_resnet_c", "mobilefacenet"} <= set(rows)
    assert all(name in BACKBONES for name in rows)
    # weights-only factories are pretrained models, listed with the cards, not here
    assert not {"slimface_mobile", "mobilefacenet_tflite"} & set(rows)
    a = rows["face_resnet_a"]
    assert abs(a["params_with_fc6"] - 4.36e7) / 4.36e7 < 0.005
    assert a["input_size"] == [112, 96] and a["template"] == "sphereface112x96"
    assert 0.22e9 <= rows["mobilefacenet"]["macs"] <= 0.23e9


@pytest.mark.slow  # times real work; `make test-all` runs it
def test_bench_train_reports_images_per_second(capsys):
    assert main(["bench", "train", "--model", "mobilefacenet_050", "--batch", "2",
                 "--steps", "1", "--warmup", "0", "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)["results"][0]
    assert result["batch_size"] == 2 and result["images_per_s"] > 0
    assert "training throughput" in captured.err

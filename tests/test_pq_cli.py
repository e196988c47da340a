"""``slimface compress pq`` and ``slimface bench pq`` end to end on a tiny registered model."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from slimface.cli.main import main
from slimface.models import BACKBONES


class _TinyFace(nn.Module):
    template, input_size, embedding_dim = "arcface112", (16, 16), 8

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.stem(x / 255)).mean((2, 3)))


def _tiny_pq_test_model(pretrained: bool = False, **_kw: object) -> nn.Module:
    torch.manual_seed(0)
    return _TinyFace().eval()


@pytest.fixture(scope="module", autouse=True)
def _registered():
    if "tiny_pq_test_model" not in BACKBONES:
        BACKBONES.register(_tiny_pq_test_model, name="tiny_pq_test_model")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_compress_pq_writes_a_loadable_slim_and_reports_sizes(tmp_path):
    from slimface.runtime.loader import load_model
    from slimface.runtime.pq import PQConv2d

    out, js = tmp_path / "m.slim", tmp_path / "m.json"
    code = main(["compress", "pq", "--model", "tiny_pq_test_model", "--k", "4",
                 "--no-error-correction", "--threads", "1", "--out", str(out), "--json", str(js)])
    assert code == 0
    summary = json.loads(js.read_text())
    assert summary["k"] == 4 and summary["float_layers"] == ["stem"]
    assert summary["ratio"] > 1 and summary["file_bytes"] == out.stat().st_size
    model = load_model(str(out), pq_layers="pq")
    assert isinstance(model.body[1], PQConv2d)
    assert model(torch.rand(1, 3, 16, 16) * 255).shape == (1, 8)


@pytest.mark.slow  # times real work; `make test-all` runs it
def test_bench_pq_times_every_pq_layer_and_the_model(tmp_path):
    out, js = tmp_path / "m.slim", tmp_path / "bench.json"
    assert main(["compress", "pq", "--model", "tiny_pq_test_model", "--k", "4",
                 "--no-error-correction", "--threads", "1", "--out", str(out)]) == 0
    assert main(["bench", "pq", "--model", str(out), "--repeats", "2", "--json", str(js)]) == 0
    report = json.loads(js.read_text())
    assert [r["layer"] for r in report["layers"]] == ["body.1", "fc"]
    assert report["model_latency"]["fp32_ms"] > 0 and report["k"] == 4


def test_compress_pq_refuses_an_exported_model_file(tmp_path, capsys):
    bogus = tmp_path / "m.onnx"
    bogus.write_bytes(b"x")
    assert main(["compress", "pq", "--model", str(bogus), "--out", str(tmp_path / "o.slim"),
                 "--no-error-correction"]) == 1
    assert "float model" in capsys.readouterr().err


def test_unreachable_ratio_is_a_clean_error(tmp_path, capsys):
    assert main(["compress", "pq", "--model", "tiny_pq_test_model", "--ratio", "500",
                 "--no-error-correction", "--out", str(tmp_path / "o.slim")]) == 1
    assert "out of reach" in capsys.readouterr().err


def test_defaults_are_the_shipped_files_recipe():
    """`compress pq --model dlib-resnet --ratio 15` with no other option reproduces the
    recipe recorded in the shipped dlib_resnet_pq15.slim."""
    from slimface.cli.main import build_parser
    from slimface.models.weights import shipped_file
    from slimface.runtime.slimfile import read_slim_metadata

    shipped = read_slim_metadata(shipped_file("dlib_resnet_pq15.slim"))["compression"]
    args = build_parser().parse_args(["compress", "pq", "--model", "dlib-resnet", "--ratio",
                                      "15", "--out", "M.slim"])
    assert args.model == shipped["model"] and args.d == shipped["d"]
    assert not args.no_error_correction and args.sweeps == shipped["sweeps"] == 2
    assert args.ec_target == shipped["ec_target"] and args.per_layer_k == bool(
        shipped["k_per_layer"])
    assert args.codebook_dtype == shipped["codebook_dtype"] == "float16"
    assert args.calib is None and args.calib_n == 2000 >= shipped["calib_n"] > 1900
    assert args.finetune_epochs is None and shipped["finetune_epochs"] == 1  # 1 with EC
    assert args.finetune_lr == 2e-5


def test_default_ratio_15_picks_the_shipped_codebook_sizes():
    from slimface.compress.pq import PQConfig, config_for_ratio
    from slimface.models import create_backbone
    from slimface.models.weights import shipped_file
    from slimface.runtime.slimfile import read_slim_metadata

    shipped = read_slim_metadata(shipped_file("dlib_resnet_pq15.slim"))["compression"]
    model = create_backbone("dlib_resnet", pretrained=False)
    cfg = config_for_ratio(model, 15, 4, PQConfig(d=4, k=32, codebook_dtype="float16"),
                           per_layer=True)
    assert cfg.k == shipped["k"]
    assert {k: list(v) for k, v in dict(cfg.overrides).items()} == shipped["k_per_layer"]

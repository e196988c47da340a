"""Distillation's command surface: ``slimface compress distill`` is an alias of ``slimface
train``, the retired ``DistillConfig`` says where it went, ``--export`` writes the shipped
safetensors form, ``init_from`` grows a student."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimface.cli.main import main
from slimface.errors import ConfigError, ModelFileError
from slimface.models import create_backbone
from slimface.train.checkpoint import (backbone_record, export_safetensors, load_init_weights,
                                       save_state)

FM_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "distill_mobilefacenet_fm.py"


def _run_dir(tmp_path: Path, name: str = "slimnet_s", **kw) -> Path:
    model = create_backbone(name, **kw)
    save_state(tmp_path / "backbone.pt", backbone_record(name, kw, model))
    (tmp_path / "data.json").write_text(json.dumps({"images": 3}))
    return tmp_path


@pytest.mark.parametrize("command", [["train"], ["compress", "distill"]])
def test_train_and_its_alias_export_the_run(tmp_path: Path, capsys, command):
    from safetensors import safe_open

    run = _run_dir(tmp_path, input_size=(32, 32))
    out = tmp_path / "s.safetensors"
    code = main([*command, str(FM_CONFIG), "--out", str(run), "--export", str(out),
                 "--meta", '{"lfw": 0.5}', "--json"])
    assert code == 0
    err = capsys.readouterr().err
    assert ("alias of `slimface train`" in err) == (command != ["train"])
    with safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()["slimface"])
    assert meta["architecture"] == {"backbone": "slimnet_s", "kwargs": {"input_size": [32, 32]}}
    assert (meta["lfw"], meta["distilled_from"], meta["training_data"]) == (
        0.5, "mobilefacenet-tflite", {"images": 3})


def test_alias_takes_the_same_arguments_as_train():
    from slimface.cli.main import build_parser

    parser = build_parser()
    argv = ["CONFIG", "--resume", "--until-step", "5", "--max-minutes", "2", "--set", "lr=1"]
    a = vars(parser.parse_args(["train", *argv]))
    b = vars(parser.parse_args(["compress", "distill", *argv]))
    assert {k: v for k, v in a.items() if k not in ("func", "command", "compress_command", "_parser")} == \
        {k: v for k, v in b.items() if k not in ("func", "command", "compress_command", "_parser")}


def test_a_retired_distill_config_says_where_distillation_went(tmp_path: Path, capsys):
    old = tmp_path / "old.py"
    old.write_text("from slimface.compress.distill import DistillConfig\n"
                   "config = DistillConfig(student='slimnet_s', steps=10)\n")
    assert main(["compress", "distill", str(old)]) == 1
    err = capsys.readouterr().err
    assert "retired" in err and "objective='distill'" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="slimface train"):
        from slimface.compress.distill import load_distill_config

        load_distill_config(old)


def test_export_reproduces_the_model_and_keeps_the_size_limit(tmp_path: Path):
    from slimface.models.students import load_student_weights

    run = _run_dir(tmp_path, input_size=(32, 32))
    out = export_safetensors(run / "backbone.pt", tmp_path / "s.safetensors", {})
    fresh = create_backbone("slimnet_s", input_size=(32, 32)).eval()
    load_student_weights(fresh, out)
    trained = torch.load(run / "backbone.pt", weights_only=True)["state_dict"]
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, trained[k]), k
    with pytest.raises(ModelFileError, match="exceeds"):
        export_safetensors(run / "backbone.pt", tmp_path / "big.safetensors", {}, max_bytes=1000)
    assert not (tmp_path / "big.safetensors").exists()
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(ModelFileError, match="x.pt"):
        export_safetensors(bad, tmp_path / "s.safetensors", {})


def test_init_from_grows_slimnet_s_into_slimnet_s2_without_changing_its_output(tmp_path: Path):
    small = create_backbone("slimnet_s").eval()
    with torch.no_grad():  # non-trivial BN statistics, so an identity block would show up
        for m in small.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.weight.uniform_(0.5, 1.5)
    save_state(tmp_path / "backbone.pt", backbone_record("slimnet_s", {}, small))
    grown = create_backbone("slimnet_s2")
    fresh = load_init_weights(grown, str(tmp_path / "backbone.pt"))
    x = torch.rand(2, 3, 112, 112) * 255
    with torch.no_grad():
        assert torch.allclose(grown.eval()(x), small(x), atol=1e-5)
    assert fresh and all(k.startswith("stages.") for k in fresh)


def test_init_from_refuses_weights_that_fit_nothing(tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"other.weight": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFileError, match="no tensor fits"):
        load_init_weights(create_backbone("slimnet_s"), str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFileError, match="not found"):
        load_init_weights(create_backbone("slimnet_s"), str(tmp_path / "missing.pt"))


def test_export_last_step_writes_the_checkpoint_weights(tmp_path: Path, capsys):
    from safetensors.torch import load_file

    run = _run_dir(tmp_path, input_size=(32, 32))
    latest = create_backbone("slimnet_s", input_size=(32, 32))
    with torch.no_grad():
        next(latest.parameters()).add_(1.0)  # differs from backbone.pt
    save_state(run / "checkpoint.pt", {"config": {"backbone": "slimnet_s",
                                                  "backbone_kwargs": {"input_size": [32, 32]}},
                                       "backbone": latest.state_dict()})
    out = tmp_path / "last.safetensors"
    assert main(["train", str(FM_CONFIG), "--out", str(run), "--export", str(out),
                 "--last-step", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from"].endswith("checkpoint.pt")
    exported = load_file(str(out))
    for k, v in latest.state_dict().items():
        assert torch.equal(exported[k], v.float() if v.is_floating_point() else v), k


def test_last_step_without_export_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(FM_CONFIG), "--last-step"])
    assert exc.value.code == 2
    assert "--export" in capsys.readouterr().err

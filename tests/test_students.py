"""Student families: the backbone contract, the teacher-space map, the shipped model entry."""
from __future__ import annotations

import pytest
import torch

from slimface.models import create_backbone, list_backbones
from slimface.models.students import SLIMNET_CFGS, SlimNet, SlimNetCfg, TeacherSpaceMap

SMALL = (48, 48)


@pytest.mark.parametrize("name", sorted(SLIMNET_CFGS))
def test_slimnet_follows_the_backbone_contract(name: str):
    model = create_backbone(name, input_size=SMALL).eval()
    out = model(torch.rand(2, 3, *SMALL) * 255)
    assert out.shape == (2, model.embedding_dim) and torch.isfinite(out).all()
    assert model.template == "arcface112" and model.input_size == SMALL


@pytest.mark.parametrize("name", sorted(SLIMNET_CFGS))
def test_slimnet_fits_the_4mb_fp32_budget(name: str):
    model = create_backbone(name)
    n_bytes = 4 * sum(t.numel() for t in model.state_dict().values())
    assert n_bytes <= 4_000_000, f"{name}: {n_bytes} bytes"


def test_slimnet_options_se_and_prelu_build():
    model = create_backbone("slimnet_s", se=True, act="prelu", input_size=SMALL).eval()
    assert any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
    assert any(isinstance(m, torch.nn.PReLU) for m in model.modules())
    assert model(torch.zeros(1, 3, *SMALL)).shape == (1, 128)


def test_slimnet_rejects_mismatched_widths_and_depths():
    with pytest.raises(ValueError, match="differ in length"):
        SlimNet(SlimNetCfg(widths=(8, 16), depths=(1,)))


def test_slimnet_rejects_unknown_activation():
    with pytest.raises(ValueError, match="prelu"):
        create_backbone("slimnet_s", act="gelu")


def test_teacher_space_map_is_identity_until_stats_are_set():
    m = TeacherSpaceMap(4)
    s = torch.randn(3, 4)
    assert torch.equal(m(s), s)
    m.set_target_stats(torch.full((4,), 2.0), torch.full((4,), 0.5))
    assert torch.allclose(m(s), s * 0.5 + 2.0)


def test_teacher_space_map_is_saved_in_the_state_dict():
    keys = create_backbone("slimnet_s", input_size=SMALL).state_dict()
    assert "output_map.target_mean" in keys and "output_map.target_std" in keys


def test_slimface_mobile_is_registered_under_both_spellings():
    names = {n.replace("-", "_") for n in list_backbones()}
    assert "slimface_mobile" in names


def test_slimface_mobile_without_weights_builds_the_architecture():
    model = create_backbone("slimface-mobile", pretrained=False, input_size=SMALL)
    assert model(torch.zeros(1, 3, *SMALL)).shape == (1, 192)
    earlier = create_backbone("slimface-mobile-dlib", pretrained=False, input_size=SMALL)
    assert earlier(torch.zeros(1, 3, *SMALL)).shape == (1, 128)


def test_slimface_mobile_loads_the_shipped_file_with_its_metadata(tmp_path, monkeypatch):
    import json

    from safetensors.torch import save_file

    from slimface.models import students

    src = create_backbone("slimnet_s", input_size=SMALL).eval()
    src.output_map.set_target_stats(torch.full((128,), 0.1), torch.full((128,), 0.5))
    meta = {"architecture": {"backbone": "slimnet_s", "kwargs": {"input_size": list(SMALL)}},
            "lfw_view2_accuracy_mean": 0.5}
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path),
              metadata={"slimface": json.dumps(meta)})
    monkeypatch.setattr(students, "_shipped_weights", lambda *a: path)
    model = create_backbone("slimface-mobile")
    x = torch.rand(1, 3, *SMALL) * 255
    assert torch.allclose(model(x), src(x), atol=1e-6)
    assert model.pretrained_meta["lfw_view2_accuracy_mean"] == 0.5


def test_slimface_mobile_reports_missing_weights_as_a_model_error(monkeypatch):
    from slimface.errors import ModelError
    from slimface.models import students

    monkeypatch.setattr(students, "SLIMFACE_MOBILE_FILE", "absent.safetensors")
    with pytest.raises(ModelError, match="absent.safetensors"):
        create_backbone("slimface-mobile")

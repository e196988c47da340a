"""Training packs and data workers: a pack gives back the canvases it was written from
(within JPEG's loss), a damaged pack is refused by name, and batches augmented ahead by
data workers train exactly the weights the loop trains on its own."""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.errors import ConfigError, DataError
from slimface.train.config import TrainConfig, validate
from slimface.train.distributed import DistInfo, resolve_device
from slimface.train.function_matching import FaceCanvases, FunctionMatching
from slimface.train.teacher import EnsembleTeacher, teacher_members
from slimface.train.pack import MANIFEST, pack_fidelity, read_pack, write_pack
from slimface.train.run import canvases_from_pack
from slimface.train.trainer import Trainer
from tests._train_tiny import PixelTeacher, canvases, distill_config


def smooth_canvases(n: int) -> np.ndarray:
    """Face-like smooth images (JPEG keeps them close), unlike random noise."""
    y, x = np.mgrid[0:144, 0:144] / 144.0
    base = np.stack([128 + 100 * np.sin(3 * x + k) * np.cos(2 * y - k) for k in range(3)], -1)
    return np.stack([np.clip(base + 10 * i, 0, 255) for i in range(n)]).astype(np.uint8)


def test_a_pack_returns_its_canvases_in_shards(tmp_path: Path) -> None:
    canvas = smooth_canvases(7)
    manifest = write_pack(canvas, tmp_path, template="arcface112", pad=16,
                          info={"images": 7}, quality=95, shard_mb=1500 / 2**20)
    assert len(manifest["shards"]) > 1                  # the size limit split it
    back, read = read_pack(tmp_path)
    assert back.shape == canvas.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - canvas.astype(int)).mean() < 2.0
    assert read["info"] == {"images": 7} and read["canvases"] == 7


def test_the_fidelity_check_measures_what_jpeg_changes_for_the_teacher(tmp_path: Path
                                                                         ) -> None:
    canvas = smooth_canvases(6)
    teacher = PixelTeacher()
    fine, coarse = (write_pack(canvas, tmp_path / str(q), template="arcface112", pad=16,
                               info={}, quality=q,
                               check=lambda blobs: pack_fidelity(canvas, blobs, teacher,
                                                                 (112, 112), 4))["fidelity"]
                    for q in (95, 5))
    assert fine["canvases"] == 4 and fine["teacher"] == "pixel-teacher"
    assert fine["cosine_min"] <= fine["cosine_p1"] <= fine["cosine_mean"] <= 1.0 + 1e-9
    assert fine["cosine_mean"] > 0.999 > coarse["cosine_min"]   # quality 5 visibly changes it
    assert json.loads((tmp_path / "95" / MANIFEST).read_text())["fidelity"] == fine


def test_a_damaged_or_missing_pack_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no training pack"):
        read_pack(tmp_path)
    write_pack(smooth_canvases(3), tmp_path, template="arcface112", pad=16, info={})
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    shard = tmp_path / manifest["shards"][0]["file"]
    shard.write_bytes(b"not a shard")
    with pytest.raises(DataError, match=f"{shard.name}: unreadable pack shard"):
        read_pack(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "format": "other"}))
    with pytest.raises(DataError, match="not a slimface training pack"):
        read_pack(tmp_path)


def test_a_pack_on_another_template_or_padding_is_refused(tmp_path: Path) -> None:
    write_pack(smooth_canvases(2), tmp_path, template="arcface112", pad=16, info={})
    cfg = TrainConfig(objective="distill", teacher="x", data_pack=str(tmp_path), crop_pad=8)
    with pytest.raises(ConfigError, match="padded by 16; the config wants"):
        canvases_from_pack(cfg, "arcface112", ("arcface112",))
    cfg = replace(cfg, crop_pad=16)
    with pytest.raises(ConfigError, match="needs \\['dlib150'\\] too"):
        canvases_from_pack(cfg, "arcface112", ("dlib150",))
    got = canvases_from_pack(cfg, "arcface112", ("arcface112",))
    assert got.canvas.shape == (2, 144, 144, 3) and got.info["pack"] == str(tmp_path)


def two_template_data() -> tuple[FaceCanvases, EnsembleTeacher]:
    """An ensemble of a teacher on the student's template and one on ``dlib150``."""
    same = PixelTeacher(dim=16)
    other = PixelTeacher(dim=8, template="dlib150", size=(150, 150))
    same.name, other.name = "pixel-arcface", "pixel-dlib"
    to_teacher = np.tile(np.array([[1.49, 0.0, 1.5], [0.0, 1.49, 3.0]]), (24, 1, 1))
    data = FaceCanvases(canvases(), teacher_canvases={"dlib150": canvases(size=174, seed=2)},
                        to_teachers={"dlib150": to_teacher})
    return data, EnsembleTeacher([same, other])


@pytest.mark.parametrize("templates", ["one", "two"])
def test_data_workers_train_the_same_weights_as_the_loop(tmp_path: Path, templates: str,
                                                         monkeypatch) -> None:
    from slimface.train import workers as workers_module

    submitted: list[int] = []
    original = workers_module.ViewWorkers.submit
    monkeypatch.setattr(workers_module.ViewWorkers, "submit",
                        lambda self, step, idx, info: (submitted.append(step),
                                                       original(self, step, idx, info)))
    before = set(Path(tempfile.gettempdir()).glob("slimface-views-*"))  # other runs' own
    weights, teacher_calls = [], []
    for workers in (0, 2):
        if templates == "one":
            cfg, (data, teacher) = distill_config(), (FaceCanvases(canvases()), PixelTeacher())
        else:
            data, teacher = two_template_data()
            cfg = distill_config(teacher="pixel-arcface+pixel-dlib",
                                 backbone_kwargs={"embedding_dim": 24})
        cfg = replace(cfg, data_workers=workers)
        objective = FunctionMatching(cfg, data, teacher)
        t = Trainer(cfg, objective, tmp_path / str(workers), progress=False, info=DistInfo())
        t.fit()
        assert objective._workers is None             # stopped at the end, files removed
        weights.append(t.backbone.state_dict())
        teacher_calls.append(sum(len(m.seen) for m in teacher_members(teacher)))
    for (k, a), b in zip(weights[0].items(), weights[1].values()):
        assert torch.equal(a, b), k
    assert submitted == list(range(1, 6))             # every later step, each once
    # on the CPU the workers ran the teacher for steps 1-5: the loop only for step 0
    members = 1 if templates == "one" else 2
    assert teacher_calls[0] - teacher_calls[1] == 5 * members
    assert set(Path(tempfile.gettempdir()).glob("slimface-views-*")) <= before


def test_device_and_worker_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="device must be"):
        validate(distill_config(device="gpu"))
    with pytest.raises(ConfigError, match="distill' only"):
        validate(TrainConfig(data_workers=2))
    with pytest.raises(ConfigError, match="data_workers must be >= 0"):
        validate(distill_config(data_workers=-1))
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_pack_command_refuses_what_it_cannot_pack(tmp_path: Path, capsys) -> None:
    from slimface.cli.main import main

    margin = Path(__file__).parents[1] / "configs" / "face_resnet_a_celeba_smoke.py"
    assert main(["data", "pack", str(margin), "--out", str(tmp_path / "p")]) != 0
    assert "a training pack holds distillation canvases" in capsys.readouterr().err
    assert main(["data", "pack", str(margin), "--out", str(tmp_path / "p"),
                 "--quality", "0"]) != 0
    assert "--quality must be 1-100" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_pack_of_real_faces_trains_like_the_aligned_images(data_root: Path,
                                                             tmp_path: Path) -> None:
    """Twelve UTKFace faces packed, read back through a config's ``data_pack``."""
    from slimface.train.run import pack_from_config

    config = Path(__file__).parents[1] / "configs" / "distill_mobilefacenet_fm.py"
    sets = ["sources=[\"utkface\"]", "max_images=12"]
    manifest = pack_from_config(config, tmp_path / "pack", data=str(data_root),
                                overrides=sets, progress=False)
    assert manifest["canvases"] == 12 and manifest["info"]["per_source"] == {"utkface": 12}
    cfg = replace(distill_config(), data_pack=str(tmp_path / "pack"), crop_pad=16)
    got = canvases_from_pack(cfg, "arcface112", ("arcface112",))
    assert got.canvas.shape == (12, 144, 144, 3) and got.canvas.std() > 20  # faces, not blank


def test_a_teacher_that_cannot_start_in_a_worker_fails_the_step_not_hangs(tmp_path: Path
                                                                          ) -> None:
    from tests._train_tiny import UnloadableTeacher

    cfg = replace(distill_config(), data_workers=1)
    objective = FunctionMatching(cfg, FaceCanvases(canvases()), UnloadableTeacher())
    t = Trainer(cfg, objective, tmp_path, progress=False, info=DistInfo())
    with pytest.raises(RuntimeError, match="teacher weights not found"):
        t.fit()
    assert objective._workers is None


def test_a_torch_teacher_travels_to_a_worker_by_name_and_embeds_the_same() -> None:
    import pickle

    from slimface.train.teacher import ModelTeacher

    teacher = ModelTeacher("slimface-mobile")
    packed = pickle.dumps(teacher)
    assert len(packed) < 1000  # the name, not the weights
    crops = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    assert np.array_equal(pickle.loads(packed).embed(crops), teacher.embed(crops))

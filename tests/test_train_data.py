"""Identity folders, deterministic augmentation, crops, LR schedule, step sampler."""
from __future__ import annotations

import numpy as np
import pytest

from slimface.errors import DataError
from slimface.train.data import augment_params, crop_batch, scan_identity_folders
from slimface.train.distributed import DistInfo
from slimface.train.trainer import StepSampler, lr_factor


def _folders(root, counts):
    for i, n in enumerate(counts):
        d = root / f"person{i}"
        d.mkdir()
        for j in range(n):
            (d / f"{j:03d}.jpg").write_bytes(b"x")
    (root / "notes.txt").write_text("not an identity")


def test_scan_keeps_identities_with_enough_images(tmp_path):
    _folders(tmp_path, [1, 4, 5, 2])
    ids = scan_identity_folders(tmp_path, min_images=4)
    assert ids.classes == ["person1", "person2"]
    assert ids.labels.tolist() == [0] * 4 + [1] * 5
    assert scan_identity_folders(tmp_path, max_identities=2).classes == ["person0", "person1"]


def test_scan_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        scan_identity_folders(tmp_path / "nope")
    _folders(tmp_path, [1])
    with pytest.raises(DataError, match="3\\+ images"):
        scan_identity_folders(tmp_path, min_images=3)


def test_augmentation_is_a_function_of_seed_and_step():
    a = augment_params(0, 7, 16, (4, 4), True)
    b = augment_params(0, 7, 16, (4, 4), True)
    c = augment_params(0, 8, 16, (4, 4), True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert a[0].max() <= 4 and a[1].min() >= 0


def test_centre_crop_and_flip():
    crops = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    centre = crop_batch(crops, (4, 4))
    assert centre.shape == (2, 3, 4, 4)
    assert np.array_equal(centre[0].permute(1, 2, 0).numpy(), crops[0, 1:5, 1:5])
    flipped = crop_batch(crops, (4, 4), np.zeros(2, int), np.zeros(2, int), np.array([1, 0]))
    assert np.array_equal(flipped[0].permute(1, 2, 0).numpy(), crops[0, :4, :4][:, ::-1])


def test_lr_factor_warms_up_then_steps():
    assert lr_factor(0, 4, (10, 20), 0.1) == pytest.approx(0.25)
    assert lr_factor(5, 4, (10, 20), 0.1) == 1.0
    assert lr_factor(10, 4, (10, 20), 0.1) == pytest.approx(0.1)
    assert lr_factor(25, 4, (10, 20), 0.1) == pytest.approx(0.01)


def test_two_ranks_together_see_the_single_process_batch():
    single = StepSampler(40, 8, DistInfo(), seed=3)
    ranks = [StepSampler(40, 4, DistInfo(r, r, 2), seed=3) for r in range(2)]
    for step in (0, 4, 6):  # 5 batches per pass: step 6 is in the second pass
        idx1, slots1 = single.indices(step)
        got = {}
        for s in ranks:
            idx, slots = s.indices(step)
            got.update(dict(zip(slots.tolist(), idx.tolist())))
        assert [got[k] for k in sorted(got)] == [dict(zip(slots1, idx1))[k] for k in sorted(got)]


def test_training_leaves_out_lfw_pair_images_of_view1_and_view2(tmp_path):
    from slimface.train.run import lfw_pair_images_under

    lfw = tmp_path / "lfw"
    for name, n in {"Ann": 3, "Ben": 2}.items():
        (lfw / "lfw-deepfunneled" / name).mkdir(parents=True)
        for i in range(1, n + 1):
            (lfw / "lfw-deepfunneled" / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")
    (lfw / "pairs.txt").write_text("1 1\nAnn 1 2\nAnn 1 Ben 1\n")
    (lfw / "pairsDevTest.txt").write_text("1\nBen 1 2\nAnn 1 Ben 2\n")
    excluded = lfw_pair_images_under(tmp_path)
    assert sorted(p.name for p in excluded) == ["Ann_0001.jpg", "Ann_0002.jpg",
                                               "Ben_0001.jpg", "Ben_0002.jpg"]
    ids = scan_identity_folders(lfw / "lfw-deepfunneled", exclude=excluded)
    assert [p.name for p in ids.paths] == ["Ann_0003.jpg"]
    assert lfw_pair_images_under(tmp_path / "lfw-deepfunneled") == set()  # no LFW there
    assert lfw_pair_images_under(None) == set()


def test_periodic_check_needs_an_injected_evaluator(tmp_path):
    from slimface.errors import ConfigError
    from slimface.train.run import train_from_config

    cfg = tmp_path / "tiny.py"
    cfg.write_text("from slimface.train.config import TrainConfig\n"
                   "config = TrainConfig(backbone='mobilefacenet_050', eval_every=5)\n")
    with pytest.raises(ConfigError, match="view1_check"):
        train_from_config(cfg, data=str(tmp_path))

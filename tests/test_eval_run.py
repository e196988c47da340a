"""The evaluation runner on synthetic crops (no detector): pair scoring and the result dict."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimface.eval.lfw import Pair
from slimface.eval.run import AlignedPairImages, evaluate_crops, json_summary, pair_scores


class MeanColour(nn.Module):
    """'Embedding' = mean RGB minus grey: images of one colour are one identity."""

    template = "arcface112"
    embedding_dim = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) - 127.5


COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                    [255, 0, 255]], dtype=np.uint8)


def _aligned(n_folds: int = 3) -> tuple[AlignedPairImages, list[Pair]]:
    """Per fold: a same pair (two shades of one colour) and a different pair."""
    rng = np.random.default_rng(0)
    paths, crops, pairs = [], [], []
    for fold in range(n_folds):
        names = [Path(f"/lfw/f{fold}_{k}.jpg") for k in range(4)]
        colours = [COLOURS[2 * fold], COLOURS[2 * fold], COLOURS[2 * fold], COLOURS[2 * fold + 1]]
        for path, colour in zip(names, colours):
            paths.append(path)
            noise = rng.integers(0, 30, (8, 8, 3))
            crops.append(np.clip(colour.astype(int) - noise, 0, 255).astype(np.uint8))
        pairs += [Pair(names[0], names[1], True, fold), Pair(names[2], names[3], False, fold)]
    aligned = AlignedPairImages(paths=paths, crops=np.stack(crops), status=["detected"] * len(paths),
                                index={p: i for i, p in enumerate(paths)}, template="arcface112",
                                detector="none", fallback_detector=None, seconds=0.0)
    return aligned, pairs


def test_pair_scores_use_one_row_per_image():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    index = {Path("a"): 0, Path("b"): 1, Path("c"): 2}
    pairs = [Pair(Path("a"), Path("b"), False, 0), Pair(Path("a"), Path("c"), True, 0)]
    np.testing.assert_allclose(pair_scores(emb, index, pairs), [0.0, np.sqrt(0.5)])


@pytest.mark.parametrize("flip", ["none", "sum", "concat"])
def test_separable_synthetic_identities_score_perfectly(flip: str):
    aligned, pairs = _aligned()
    r = evaluate_crops(MeanColour(), aligned, pairs, flip=flip)
    assert r["accuracy_mean"] == 1.0 and r["accuracy_std"] == 0.0 and r["auc"] == 1.0
    assert len(r["fold_accuracies"]) == len(r["thresholds"]) == 3
    assert r["tar_at_far_details"]["tar_at_far_1e-3"]["n_neg"] == 3
    assert r["scores"].shape == r["labels"].shape == (6,)


def test_two_folds_mean_view1_split_and_summary_drops_arrays():
    aligned, pairs = _aligned(n_folds=2)
    r = evaluate_crops(MeanColour(), aligned, pairs)
    assert r["accuracy_std"] is None and "pairsDevTest" in r["protocol"]
    summary = json_summary(r)
    assert "scores" not in summary and "labels" not in summary and "auc" in summary
    import json

    full = json.loads(json.dumps(json_summary(r, include_scores=True)))
    assert len(full["scores"]) == len(full["labels"]) == 4


@pytest.fixture()
def no_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate_lfw must refuse the model before it reads pairs or aligns anything."""
    from slimface.eval import run

    def never(*args, **kwargs):
        raise AssertionError("the model is checked before any LFW work")

    monkeypatch.setattr(run, "load_lfw_pairs", never)
    monkeypatch.setattr(run, "align_pair_images", never)


class Broken(nn.Module):
    template = "arcface112"
    embedding_dim = 8
    name = "broken.pt"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


class FeatureMap(nn.Module):
    template = "arcface112"
    embedding_dim = 3
    name = "feature_map.pt"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :4, :4]


@pytest.mark.parametrize("model, message", [
    (Broken(), "broken.pt: cannot embed a 112x112 arcface112 crop"),
    (FeatureMap(), "feature_map.pt: a 112x112 arcface112 crop gives an output of shape"),
])
def test_a_model_that_cannot_embed_fails_before_alignment(model, message, no_alignment):
    from slimface.errors import ModelError
    from slimface.eval.run import evaluate_lfw

    with pytest.raises(ModelError, match=message):
        evaluate_lfw(model, "/nonexistent")


def test_an_onnx_file_of_another_input_size_is_named_before_alignment(tmp_path: Path,
                                                                      no_alignment):
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array(np.ones((4, 3 * 8 * 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1),
         helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "flat.onnx"
    save(model, str(path))
    from slimface.errors import ModelError
    from slimface.eval.run import evaluate_lfw

    with pytest.raises(ModelError, match=r"flat\.onnx: cannot embed .*its input is 8x8"):
        evaluate_lfw(str(path), "/nonexistent")


def test_view1_evaluator_scores_a_backbone_and_given_embeddings_alike(monkeypatch):
    """``metrics(embeddings)`` is what calling the evaluator on a backbone reports, so a
    benchmark can judge embeddings made another way (a map after the network) on view 1."""
    from slimface.data.lfw import View1Split
    from slimface.eval.view1 import LfwView1Evaluator
    from slimface.models.inference import embed_crops

    people = [f"p{i}" for i in range(8)]
    images = [Path(f"/lfw/{p}/{p}_{k}.jpg") for p in people for k in range(3)]
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (len(images), 16, 16, 3), dtype=np.uint8)

    def pairs(fold: int) -> list[Pair]:
        same = [Pair(images[3 * i], images[3 * i + 1 + fold], True, fold) for i in range(8)]
        diff = [Pair(images[3 * i], images[3 * ((i + 1 + fold) % 8) + 2], False, fold)
                for i in range(8)]
        return same + diff

    ev = LfwView1Evaluator("/nowhere", "arcface112")

    def prepare() -> None:
        ev._crops, ev._images = crops, images
        ev._index = {p: i for i, p in enumerate(images)}
        ev._pairs = View1Split(pairs(0), pairs(1))

    monkeypatch.setattr(ev, "_prepare", prepare)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 8))
    model.train()
    via_backbone = ev(model)
    assert model.training  # the evaluator gives the backbone back in the mode it had
    assert ev.metrics(embed_crops(model, ev.crops, flip="none")) == via_backbone
    # embeddings that separate the people perfectly read perfectly
    ideal = np.repeat(np.eye(8), 3, axis=0) + 1e-3 * rng.standard_normal((24, 8))
    scored = ev.metrics(ideal)
    assert scored["lfw_view1_acc"] == 1.0 and scored["lfw_view1_rank1"] == 1.0

"""The ONNX Runtime twin of a PyTorch backbone gives ``embed_crops``'s embeddings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _gallery_fakes import TinyBackbone

from slimface.models.inference import embed_crops
from slimface.runtime import ort_embed

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _crops(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("flip", ["none", "sum", "concat"])
def test_onnx_twin_matches_torch_for_every_flip_mode(flip):
    model = TinyBackbone(0).eval()
    twin = ort_embed.onnx_embedder(model, runtime="onnx")
    assert twin is not None
    np.testing.assert_allclose(twin.embed_crops(_crops(), flip=flip),
                               embed_crops(model, _crops(), flip=flip), atol=1e-5)


@pytest.mark.parametrize("flip", ["sum", "concat"])
def test_crop_and_mirror_in_one_batch_equal_two_passes(flip):
    model = TinyBackbone(0).eval()
    x = torch.from_numpy(_crops()).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        e, ef = model(x).numpy(), model(torch.flip(x, dims=[3])).numpy()
    from slimface.models.inference import combine_flip, l2_normalize

    np.testing.assert_allclose(embed_crops(model, _crops(), flip=flip),
                               l2_normalize(combine_flip(e, ef, flip)), atol=1e-5)


def test_torch_runtime_never_exports(monkeypatch):
    monkeypatch.setenv(ort_embed.ENV_VAR, "torch")
    monkeypatch.setattr(ort_embed, "cached_export", lambda m: pytest.fail("exported"))
    assert ort_embed.onnx_embedder(TinyBackbone(0).eval()) is None


def test_unknown_runtime_names_the_choices(monkeypatch):
    monkeypatch.setenv(ort_embed.ENV_VAR, "tensorrt")
    with pytest.raises(ValueError, match="auto, onnx, torch"):
        ort_embed.onnx_embedder(TinyBackbone(0).eval())


def test_disagreeing_export_keeps_torch(monkeypatch):
    def off_by_one(self, crops):
        return np.ones((len(crops), 16), np.float32)

    monkeypatch.setattr(ort_embed.OrtEmbedder, "raw", off_by_one)
    assert ort_embed.onnx_embedder(TinyBackbone(0).eval(), runtime="onnx") is None


def test_failing_export_keeps_torch(monkeypatch):
    def broken(model):
        raise RuntimeError("exporter cannot write this layer")

    monkeypatch.setattr(ort_embed, "cached_export", broken)
    assert ort_embed.onnx_embedder(TinyBackbone(0).eval(), runtime="auto") is None


def test_runtime_backends_and_non_modules_are_left_alone():
    class Backend:
        input_size = (112, 112)

        def embed_crops(self, crops, flip="none"):
            return np.zeros((len(crops), 4), np.float32)

    assert ort_embed.onnx_embedder(Backend(), runtime="onnx") is None


def test_export_is_cached_per_weights():
    model = TinyBackbone(3).eval()
    first = ort_embed.cached_export(model)
    mtime = first.stat().st_mtime_ns
    assert ort_embed.cached_export(model) == first and first.stat().st_mtime_ns == mtime
    assert ort_embed.cached_export(TinyBackbone(4).eval()) != first


def test_embedder_hashes_its_weights_once_for_export_and_gallery(monkeypatch):
    """The gallery's fingerprint also names the cached export: one hash of the weights."""
    from slimface.gallery import embedder as embedder_module
    from slimface.runtime import fingerprint as fingerprint_module

    calls = []
    real = fingerprint_module.model_fingerprint

    def counting(model):
        calls.append(1)
        return real(model)

    monkeypatch.setattr(fingerprint_module, "model_fingerprint", counting)
    monkeypatch.setattr(embedder_module, "model_fingerprint", counting)
    monkeypatch.setenv(ort_embed.ENV_VAR, "onnx")
    emb = embedder_module.FaceEmbedder(TinyBackbone(5).eval())
    assert isinstance(emb.runner, ort_embed.OrtEmbedder)
    assert emb.info.fingerprint and len(calls) == 1

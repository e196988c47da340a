"""Product quantization: k-means, error correction, LUT inference, packing, .slim round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimface.compress.error_correction import (ResponseStats, accumulate_stats, correct_layer,
                                                layer_columns, response_error, weight_matrix)
from slimface.compress.kmeans import kmeans, repair_empty_clusters
from slimface.compress.pq import (PQConfig, calibration_paths, config_for_ratio, kmeans_layer,
                                  make_pq_layer, planned_weight_bytes, pq_size_report,
                                  quantize_pq, save_pq_model, subspace_vectors)
from slimface.errors import ConfigError, DataError
from slimface.runtime.pq import (PQConv2d, PQLinear, pack_indices, set_pq_mode,
                                 unpack_indices)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: a second thread only adds barrier waits (40x slower on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _layer_with_few_distinct_subvectors(layer: nn.Module, d: int, k: int, seed: int = 0) -> None:
    """Overwrite ``layer.weight`` so every subspace holds at most ``k`` distinct sub-vectors."""
    gen = torch.Generator().manual_seed(seed)
    w = layer.weight.data
    r, cin = w.shape[:2]
    p = w[0, 0].numel()
    m = cin // d
    words = torch.randn(m, k, d, generator=gen)
    idx = torch.randint(k, (m, r * p), generator=gen)
    idx[:, :k] = torch.arange(k)  # every word used
    vecs = words[torch.arange(m)[:, None], idx]  # (M, R*P, d)
    w.copy_(vecs.reshape(m, r, p, d).permute(1, 0, 3, 2).reshape(w.shape))


def _conv_input(n: int = 4, c: int = 16, hw: int = 9, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, hw, hw, generator=gen)
    x[:, :, 0, 0] = 0.0  # exact zeros in the inputs
    return x + 0.5 * x.roll(1, dims=1)  # correlated channels, as in real activations


# ----------------------------------------------------------------------------- k-means
def test_kmeans_recovers_well_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat_interleave(20, 0) + 0.01 * torch.randn(60, 2, generator=gen)
    res = kmeans(x, 3, seed=3)
    found = sorted(res.centroids.round().tolist())
    assert found == sorted(centres.tolist())
    assert float(res.inertia) < 0.1


def test_kmeans_rejects_more_clusters_than_vectors():
    with pytest.raises(ConfigError, match="K=5"):
        kmeans(torch.zeros(4, 2), 5)


def test_empty_cluster_is_moved_onto_worst_served_vector():
    x = torch.tensor([[[0.0], [1.0], [9.0]]], dtype=torch.float64)
    centroids = torch.tensor([[[0.5], [100.0]]], dtype=torch.float64)
    err, assign = ((x - centroids.transpose(1, 2)) ** 2).min(-1)
    repaired = repair_empty_clusters(x, centroids, assign, err, 2)
    assert repaired == 1
    assert float(centroids[0, 1, 0]) == 9.0 and int(assign[0, 2]) == 1


def test_kmeans_with_duplicate_vectors_keeps_every_cluster_nonempty():
    x = torch.tensor([[0.0], [0.0], [0.0], [1.0], [2.0], [3.0]])
    res = kmeans(x, 4, seed=0)
    assert torch.bincount(res.assignments, minlength=4).min() >= 1
    assert float(res.inertia) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- reconstruction
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_reconstruction_is_exact_when_k_equals_distinct_subvectors(kind):
    torch.manual_seed(0)
    layer = nn.Linear(16, 12) if kind == "linear" else nn.Conv2d(16, 12, 3, padding=1)
    _layer_with_few_distinct_subvectors(layer, d=4, k=8)
    books, idx = kmeans_layer(layer, d=4, k=8)
    pq = make_pq_layer(layer, books, idx)
    assert torch.equal(pq.weight, layer.weight.data)


def test_subspace_vectors_follow_input_channel_slices():
    conv = nn.Conv2d(8, 3, 3)
    vecs = subspace_vectors(conv, d=4)  # (M=2, R*P=27, 4)
    assert vecs.shape == (2, 27, 4)
    assert torch.equal(vecs[1, 5], conv.weight.data[0, 4:8].reshape(4, 9)[:, 5])


# ----------------------------------------------------------------------------- LUT inference
@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (2, 1, 2)])
def test_lut_conv_matches_float_conv_of_reconstructed_weight(stride, padding, dilation):
    gen = torch.Generator().manual_seed(0)
    layer = PQConv2d(torch.randn(4, 16, 4, generator=gen), torch.randint(16, (4, 10, 9),
                                                                         generator=gen),
                     (3, 3), (stride,) * 2, (padding,) * 2, (dilation,) * 2,
                     bias=torch.randn(10, generator=gen))
    x = _conv_input()
    expected = F.conv2d(x, layer.weight, layer.bias, stride, padding, dilation)
    for mode in ("lut", "dense"):
        layer.mode = mode
        torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)


def test_dense_conv_keeps_a_channels_last_kernel_for_channels_last_input():
    gen = torch.Generator().manual_seed(1)
    layer = PQConv2d(torch.randn(4, 16, 4, generator=gen), torch.randint(16, (4, 10, 9),
                                                                         generator=gen),
                     (3, 3), (1, 1), (1, 1), (1, 1))
    layer.mode = "dense"
    x = _conv_input()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        kernel = layer.dense_kernel(x_cl)
        assert kernel.is_contiguous(memory_format=torch.channels_last)
        assert layer.dense_kernel(x_cl) is kernel  # made once, not per call
        assert layer.dense_kernel(x).is_contiguous()
        torch.testing.assert_close(layer(x_cl), layer(x), rtol=1e-5, atol=1e-5)
        layer.codebooks.mul_(2.0)  # new codebooks: the kernel follows them
        torch.testing.assert_close(layer.dense_kernel(x_cl), 2 * kernel)


def test_lut_linear_matches_float_linear_for_any_batch_shape():
    gen = torch.Generator().manual_seed(0)
    layer = PQLinear(torch.randn(8, 32, 4, generator=gen), torch.randint(32, (8, 6),
                                                                         generator=gen))
    x = torch.randn(2, 3, 32, generator=gen)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=1e-5, atol=1e-5)
    layer.mode = "dense"
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight))


def test_c_lut_kernel_matches_the_torch_lut_path():
    from slimface.runtime.pq import lut_kernel

    if lut_kernel() is None:
        pytest.skip("no C compiler: the torch path is the only one")
    gen = torch.Generator().manual_seed(0)
    layer = PQLinear(torch.randn(5, 16, 4, generator=gen), torch.randint(16, (5, 7),
                                                                         generator=gen),
                     bias=torch.randn(7, generator=gen))
    x = torch.randn(3, 20, generator=gen)
    x[0] = 0.0
    with torch.inference_mode():
        via_c = layer(x)
    torch.testing.assert_close(via_c, layer._lut_torch(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(via_c, F.linear(x, layer.weight, layer.bias), rtol=1e-5,
                               atol=1e-5)


def test_lut_linear_stays_differentiable_in_the_codebooks():
    layer = PQLinear(torch.randn(2, 4, 2), torch.randint(4, (2, 3)))
    layer(torch.randn(1, 4)).sum().backward()
    assert layer.codebooks.grad is not None and layer.codebooks.grad.abs().sum() > 0


def test_pq_mode_rejects_unknown_names():
    layer = PQLinear(torch.zeros(1, 2, 2), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="lut"):
        layer.mode = "fast"


# ----------------------------------------------------------------------------- error correction
def _stats(conv: nn.Conv2d, x: torch.Tensor, x_hat: torch.Tensor | None = None,
           target: str = "float") -> ResponseStats:
    stats = ResponseStats.zeros(*weight_matrix(conv).shape)
    accumulate_stats(stats, conv, x, x if x_hat is None else x_hat, target=target)
    return stats


def test_response_error_from_moments_equals_direct_computation():
    conv = nn.Conv2d(16, 8, 3, padding=1)
    x, x_hat = _conv_input(), _conv_input(seed=2)
    books, idx = kmeans_layer(conv, 4, 8)
    w_hat = make_pq_layer(conv, books, idx).weight.detach().reshape(8, -1)
    direct = (weight_matrix(conv) @ layer_columns(conv, x)
              - w_hat @ layer_columns(conv, x_hat)).double().pow(2).sum()
    assert response_error(w_hat, _stats(conv, x, x_hat)) == \
        pytest.approx(float(direct), rel=1e-4)


@pytest.mark.parametrize("target", ["float", "quantized"])
@pytest.mark.parametrize("sweeps", [0, 1, 3])
def test_error_correction_never_increases_response_error(sweeps, target):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3, padding=1)
    x = _conv_input()
    stats = _stats(conv, x, x + 0.1 * torch.randn_like(x), target)  # upstream error
    books, idx = kmeans_layer(conv, 4, 8)
    _, _, trace = correct_layer(books, idx, stats, sweeps=sweeps)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(trace.errors, trace.errors[1:]))
    assert trace.final < trace.initial


def test_error_correction_lowers_the_measured_layer_output_error():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3, padding=1, bias=False)
    x = _conv_input()
    books, idx = kmeans_layer(conv, 4, 8)
    new_books, new_idx, _ = correct_layer(books, idx, _stats(conv, x))
    ref = conv(x)
    plain = (make_pq_layer(conv, books, idx)(x) - ref).pow(2).sum()
    fixed = (make_pq_layer(conv, new_books, new_idx)(x) - ref).pow(2).sum()
    assert fixed < plain


class _TinyNet(nn.Module):
    template, input_size, embedding_dim = "arcface112", (12, 12), 6

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.stem(x / 255)).mean((2, 3)))


def test_multilayer_quantization_replaces_eligible_layers_and_reports_sizes():
    torch.manual_seed(0)
    net = _TinyNet()
    crops = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    quant, reports = quantize_pq(net, PQConfig(d=4, k=4), crops, sweeps=1, progress=False)
    assert isinstance(quant.body[1], PQConv2d) and isinstance(quant.fc, PQLinear)
    assert isinstance(quant.stem, nn.Conv2d)  # 3 input channels: kept float
    by_path = {r.path: r for r in reports}
    assert by_path["stem"].skipped and by_path["fc"].rel_error_corrected is not None
    assert all(r.rel_error_corrected <= r.rel_error_kmeans + 1e-9 for r in reports
               if not r.skipped)
    size = pq_size_report(reports)
    assert (size["float_weight_bytes"], size["pq_weight_bytes"]) == planned_weight_bytes(
        net, PQConfig(d=4, k=4))
    assert quant(torch.rand(2, 3, 12, 12) * 255).shape == (2, 6)


def test_quantized_target_fits_the_float_layer_on_the_quantized_input():
    # with target="quantized" the best possible W_hat is W itself: zero response error
    conv = nn.Conv2d(8, 4, 3, padding=1)
    x = _conv_input(c=8)
    stats = _stats(conv, x, x + 0.1 * torch.randn_like(x), "quantized")
    error = response_error(weight_matrix(conv), stats)
    assert error == pytest.approx(0.0, abs=1e-6 * stats.target_energy)
    with pytest.raises(ConfigError, match="target"):
        _stats(conv, x, x, "both")


def test_error_correction_without_calibration_is_a_config_error():
    with pytest.raises(ConfigError, match="calib"):
        quantize_pq(_TinyNet(), PQConfig(), None, error_correction=True, progress=False)


def test_config_for_ratio_picks_the_largest_codebook_that_meets_the_ratio():
    net = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 64, 3))
    cfg = config_for_ratio(net, 10.0, d=4, per_layer=False)
    fb, qb = planned_weight_bytes(net, cfg)
    bigger = planned_weight_bytes(net, PQConfig(d=4, k=cfg.k * 2))
    assert fb / qb >= 10.0 and bigger[0] / bigger[1] < 10.0
    with pytest.raises(ConfigError, match="ratio"):
        config_for_ratio(net, 1000.0, d=4)


def test_per_layer_k_buys_the_cheap_bit_first_and_keeps_the_ratio():
    # uniform K=32 leaves room for one more index bit in either layer but not in both; the
    # wide layer's bit costs far fewer bytes per weight (its codebook is small beside its
    # indices), so it gets K=64 and the codebook-dominated narrow layer stays at 32
    net = nn.Sequential(nn.Conv2d(8, 8, 3), nn.Conv2d(128, 128, 3))
    ratio = 9.55
    uniform = config_for_ratio(net, ratio, d=4, per_layer=False)
    mixed = config_for_ratio(net, ratio, d=4)
    fb, qb = planned_weight_bytes(net, mixed)
    assert uniform.k == 32 and fb / qb >= ratio
    assert mixed.for_layer("1") == (4, 64) and mixed.for_layer("0") == (4, 32)


# ----------------------------------------------------------------------------- storage
@pytest.mark.parametrize("bits,count", [(1, 13), (3, 7), (5, 100), (8, 9), (11, 5)])
def test_index_packing_round_trip_is_exact(bits, count):
    values = np.random.default_rng(bits).integers(0, 2 ** bits, count)
    packed = pack_indices(values, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-count * bits // 8)
    np.testing.assert_array_equal(unpack_indices(packed, bits, count), values)


def test_packing_rejects_values_that_do_not_fit():
    with pytest.raises(ConfigError, match="0, 8"):
        pack_indices(np.array([8]), 3)


@pytest.mark.parametrize("codebook_dtype", ["float32", "float16"])
def test_slim_file_round_trip_is_exact(tmp_path, codebook_dtype):
    from slimface.models import create_backbone
    from slimface.runtime.loader import load_model

    kwargs = {"pretrained": False, "stages": ((8, 1, False), (16, 1, True)),
              "stem_channels": 8, "embedding_dim": 16, "input_size": (40, 40)}
    torch.manual_seed(0)
    net = create_backbone("dlib-resnet", **kwargs).eval()
    quant, _ = quantize_pq(net, PQConfig(d=4, k=8, codebook_dtype=codebook_dtype),
                           error_correction=False, progress=False)
    path = save_pq_model(quant, tmp_path / "m.slim",
                         {"backbone": "dlib-resnet", "kwargs": kwargs})
    loaded = load_model(str(path), pq_layers="pq")
    for name, mod in quant.named_modules():
        if isinstance(mod, (PQConv2d, PQLinear)):
            other = loaded.get_submodule(name)
            assert torch.equal(other.codebooks, mod.codebooks)
            assert torch.equal(other.indices, mod.indices)
    x = torch.rand(2, 3, 40, 40) * 255
    for mode in ("lut", "dense"):
        set_pq_mode(quant, mode)
        set_pq_mode(loaded, mode)
        with torch.no_grad():
            assert torch.equal(loaded(x), quant(x))


@pytest.mark.parametrize("faster", ["kernel", "torch"])
def test_inference_load_runs_dense_pq_convs_as_plain_layers(tmp_path, monkeypatch, faster):
    """The default load (for inference) turns dense-mode PQ convs into nn.Conv2d with the
    reconstructed kernel: same outputs, no PQ bookkeeping per call; a lookup-mode FC layer
    stays PQ where its lookups measure faster, else it becomes nn.Linear."""
    from slimface.models import create_backbone
    from slimface.runtime import binary
    from slimface.runtime.loader import load_model

    monkeypatch.setattr(binary, "measure_paths",
                        lambda *fns: binary.PathChoice(faster, "forced by the test"))

    kwargs = {"pretrained": False, "stages": ((8, 1, False), (16, 1, True)),
              "stem_channels": 8, "embedding_dim": 16, "input_size": (40, 40)}
    torch.manual_seed(0)
    net = create_backbone("dlib-resnet", **kwargs).eval()
    quant, _ = quantize_pq(net, PQConfig(d=4, k=8), error_correction=False, progress=False)
    path = save_pq_model(quant, tmp_path / "m.slim",
                         {"backbone": "dlib-resnet", "kwargs": kwargs})
    loaded = load_model(str(path))
    pq_convs = [n for n, m in quant.named_modules() if isinstance(m, PQConv2d)]
    assert pq_convs and all(type(loaded.get_submodule(n)) is nn.Conv2d for n in pq_convs)
    assert not any(isinstance(m, PQConv2d) for m in loaded.modules())
    lut_fcs = [n for n, m in quant.named_modules() if isinstance(m, PQLinear) and m.mode == "lut"]
    kept = PQLinear if faster == "kernel" else nn.Linear
    assert lut_fcs and all(type(loaded.get_submodule(n)) is kept for n in lut_fcs)
    shown = "lookups" if faster == "kernel" else "plain"  # what `slimface info --paths` lists
    assert all(loaded.pq_fc_paths[n]["path"] == shown for n in lut_fcs)
    x = torch.rand(2, 3, 40, 40) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), quant(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pq_layers"):
        load_model(str(path), pq_layers="dense")


# ----------------------------------------------------------------------------- calibration data
def test_calibration_refuses_lfw_pair_images(lfw_root):
    from slimface.data.lfw import load_view2

    person = load_view2(lfw_root)[0].path_a.parent
    with pytest.raises(DataError, match="LFW"):
        calibration_paths(person, 2, data_root=lfw_root.parent)


def test_calibration_paths_spread_over_the_folder(data_root):
    folder = data_root / "celeba_subset" / "img_align_celeba_89x109"
    if not folder.is_dir():
        pytest.skip("CelebA subset not present")
    paths = calibration_paths(folder, 5)
    assert len(paths) == 5 and len({p.parent for p in paths}) > 1


def test_codebook_finetuning_moves_only_codebooks_and_lowers_the_loss():
    from slimface.compress.pq import finetune_codebooks

    torch.manual_seed(0)
    net = _TinyNet().eval()
    crops = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)
    quant, _ = quantize_pq(net, PQConfig(d=4, k=2), error_correction=False, progress=False)
    stem_before = quant.stem.weight.detach().clone()
    idx_before = quant.fc.indices.clone()
    losses = finetune_codebooks(quant, net, crops, epochs=4, lr=1e-2, batch_size=8,
                                progress=False)
    assert losses[-1] < losses[0]
    assert torch.equal(quant.stem.weight, stem_before) and torch.equal(quant.fc.indices,
                                                                      idx_before)
    assert quant.fc.mode == "lut" and quant.body[1].mode == "dense"
    assert not quant.fc.codebooks.requires_grad


def test_per_layer_k_keeps_the_callers_own_layer_settings():
    net = nn.Sequential(nn.Conv2d(8, 8, 3), nn.Conv2d(128, 128, 3))
    cfg = config_for_ratio(net, 9.55, d=4, base=PQConfig(overrides={"1": (4, 16)}))
    assert cfg.for_layer("1") == (4, 16)
    fb, qb = planned_weight_bytes(net, cfg)
    assert fb / qb >= 9.55

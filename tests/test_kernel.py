"""Binary conv kernels: every implementation (C per ISA, NumPy) against the PyTorch reference.

Integer paths (binary weights and activations, scale 1, bias 0) must match exactly; scaled
and float-activation paths to 1e-5 relative to the output's magnitude.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimface.runtime import kernel


def _best_isa() -> str | None:
    try:
        import slimface.runtime._kernel as ck
    except ImportError:
        return None
    return ck.best_isa()


BEST = _best_isa()
# Every C path is listed on every machine and skipped where the CPU (or the build) lacks it.
VARIANTS: list[tuple[str, str | None]] = [("py", None)] + [("c", isa) for isa in kernel.ISAS]
IDS = [f"{impl}-{isa or 'numpy'}" for impl, isa in VARIANTS]


def _skip_unless_supported(isa: str | None) -> None:
    if isa is None:
        return
    if BEST is None:
        pytest.skip("the C extension is not built")
    if kernel.ISAS.index(isa) > kernel.ISAS.index(BEST):
        pytest.skip(f"this CPU has no {isa} (best: {BEST})")


@pytest.fixture(params=VARIANTS, ids=IDS)
def impl(request):
    choice, isa = request.param
    _skip_unless_supported(isa)
    kernel.use(choice)
    if isa:
        kernel.set_isa(isa)
    yield request.param
    kernel.use("c" if BEST else "py")
    if BEST:
        kernel.set_isa(BEST)


# (batch, C_in, H, W, C_out, k, stride, pad): odd channels, words boundaries, odd batches
SHAPES = [(1, 1, 5, 4, 1, 3, 1, 1), (3, 3, 7, 5, 5, 3, 1, 1), (2, 63, 6, 5, 7, 3, 2, 1),
          (1, 64, 5, 6, 33, 3, 1, 0), (2, 65, 4, 4, 31, 1, 1, 0), (1, 130, 5, 3, 40, 3, 1, 2),
          (5, 17, 9, 8, 64, 5, 2, 2), (1, 200, 1, 1, 65, 1, 1, 0),
          # 32-bit word boundaries, several 64-channel output tiles, pixel tiles with a tail,
          # 1x1 convs that pack inside the tile (stride 1 and 2)
          (1, 32, 7, 6, 130, 3, 1, 1), (2, 33, 5, 5, 64, 3, 1, 0), (3, 96, 4, 5, 129, 1, 1, 0),
          (1, 64, 9, 7, 70, 1, 2, 0), (2, 31, 3, 3, 1, 1, 1, 0),
          # more than 31 input bytes per kernel row and more than 256 output channels (the
          # AVX2 path flushes byte counts and runs several passes), a partial last word
          (2, 300, 4, 3, 300, 3, 1, 1), (9, 45, 3, 2, 97, 1, 1, 0)]


def _data(shape, seed=0):
    n, c, h, w, co, k, s, p = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    x.reshape(-1)[::7] = 0.0  # exact zeros: sign(0) = +1
    bits = rng.random((co, c, k, k)) > 0.5
    return x, bits


def _reference(x, bits, s, p, binary):
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).double()
    w = torch.from_numpy(np.where(bits, 1.0, -1.0))
    if binary:  # zero padding before the sign: the border is +1
        xt = torch.where(F.pad(xt, (p, p, p, p)) >= 0, 1.0, -1.0).double()
        p = 0
    return F.conv2d(xt, w, stride=s, padding=p).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_binary_conv_integer_path_is_exact(impl, shape):
    x, bits = _data(shape)
    co, k, s, p = shape[4:]
    out = kernel.binary_conv2d(x, kernel.prepare_binary_weights(bits), co, k, s, p, threads=2)
    assert np.array_equal(out, _reference(x, bits, s, p, binary=True))


def test_receptive_fields_of_2_16_bits_or_more_are_exact(impl):
    """The AVX2 path counts in 16-bit lanes; longer dot products take the portable tile."""
    shape = (2, 65600, 1, 1, 40, 1, 1, 0)
    x, bits = _data(shape)
    out = kernel.binary_conv2d(x, kernel.prepare_binary_weights(bits), 40, 1)
    assert np.array_equal(out, _reference(x, bits, 1, 0, binary=True))


@pytest.mark.parametrize("shape", SHAPES[1:4], ids=lambda s: "x".join(map(str, s)))
def test_binary_conv_scale_and_bias(impl, shape):
    x, bits = _data(shape, seed=1)
    co, k, s, p = shape[4:]
    rng = np.random.default_rng(2)
    scale = rng.uniform(0.1, 2, co).astype(np.float32)
    bias = rng.standard_normal(co).astype(np.float32)
    out = kernel.binary_conv2d(x, kernel.prepare_binary_weights(bits), co, k, s, p, scale, bias)
    ref = _reference(x, bits, s, p, binary=True) * scale + bias
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sign_select_conv_matches_float_conv(impl, shape):
    x, bits = _data(shape, seed=3)
    co, k, s, p = shape[4:]
    scale = np.linspace(0.5, 1.5, co).astype(np.float32)
    out = kernel.sign_conv2d(x, kernel.prepare_sign_weights(bits), co, k, s, p, scale, 0.25)
    ref = _reference(x, bits, s, p, binary=False) * scale + 0.25
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("isa", kernel.ISAS[1:])
def test_sign_select_conv_is_bit_exact_across_isa_paths(shape, isa):
    """Every C path of the float-activation conv sums in the same order (fma by +-1 rounds
    as a select-and-add): AVX2 and AVX-512 give the portable path's bits, threads or not."""
    _skip_unless_supported(isa)
    x, bits = _data(shape, seed=4)
    co, k, s, p = shape[4:]
    scale = np.random.default_rng(5).uniform(0.1, 2, co).astype(np.float32)
    wpm = kernel.prepare_sign_weights(bits)
    kernel.use("c")
    try:
        kernel.set_isa("portable")
        want = kernel.sign_conv2d(x, wpm, co, k, s, p, scale, -0.5, threads=1)
        kernel.set_isa(isa)
        for threads in (1, 2):
            assert np.array_equal(kernel.sign_conv2d(x, wpm, co, k, s, p, scale, -0.5,
                                                     threads=threads), want)
    finally:
        kernel.set_isa(BEST)


def test_thread_count_does_not_change_results(impl):
    # large enough that the kernel really uses a second thread (small calls run on one)
    x, bits = _data((3, 70, 19, 17, 45, 3, 1, 1))
    ww = kernel.prepare_binary_weights(bits)
    a = kernel.binary_conv2d(x, ww, 45, 3, 1, 1, threads=1)
    b = kernel.binary_conv2d(x, ww, 45, 3, 1, 1, threads=3)
    assert np.array_equal(a, b)


def test_pack_signs_bit_order_and_zero_convention(impl):
    x = np.array([[[[0.0, -0.0, -1.0, 2.0] + [-1.0] * 62 + [3.0]]]], np.float32)  # 67 channels
    words = kernel.pack_signs(x)
    assert words.shape == (1, 1, 1, 3) and words.dtype == np.uint32
    assert int(words[0, 0, 0, 0]) == 0b1011  # channels 0, 1 (zeros -> +1) and 3
    assert int(words[0, 0, 0, 1]) == 0  # channels 32-63 all negative
    assert int(words[0, 0, 0, 2]) == 0b100  # channel 66 = bit 2 of word 2; padding bits 0


def test_sign_convention_round_trip_quantizer_packer_kernel(impl):
    """sign(0) = +1 and one bit order, through ste_sign, the file packer and the kernel."""
    from slimface.compress.quantizers import ste_sign
    from slimface.runtime.binary import pack_signs_bytes, unpack_signs_bytes

    x = np.array([0.0, -0.0, 1e-30, -1e-30, 2.0, -3.0, 0.0, -1.0, 0.5], np.float32)
    q = ste_sign(torch.from_numpy(x)).numpy() > 0
    stored = unpack_signs_bytes(pack_signs_bytes(x), x.shape)
    assert np.array_equal(q, stored)
    # The kernel's +-1 dot of x with itself-as-weights is len(x) iff both binarize alike.
    w_bits = stored.reshape(1, -1, 1, 1)
    dot = kernel.binary_conv2d(x.reshape(1, 1, 1, -1), kernel.prepare_binary_weights(w_bits),
                               1, 1)
    assert dot.item() == len(x)


def test_plan_converts_inputs_the_fast_path_rejects(impl):
    """A plan trusts its cached geometry; float64 or strided inputs of a known shape still
    give the right answer (the C side refuses them and the plan converts)."""
    x, bits = _data((2, 40, 6, 5, 9, 3, 1, 1))
    plan = kernel.BinaryConvPlan(kernel.prepare_binary_weights(bits), 9, 40, 3, 1, 1)
    want = plan(x)
    assert np.array_equal(plan(x.astype(np.float64)), want)
    strided = np.ascontiguousarray(np.concatenate([x, x], axis=3))[..., ::2]
    strided[...] = x
    assert not strided.flags.c_contiguous and np.array_equal(plan(strided), want)
    with pytest.raises(kernel.KernelError, match="channels"):
        plan(x[..., :39])


def test_plan_affine_is_exact_for_integer_dots_and_close_otherwise(impl):
    x, bits = _data((1, 50, 5, 5, 20, 3, 1, 1))
    ww = kernel.prepare_binary_weights(bits)
    dot = kernel.BinaryConvPlan(ww, 20, 50, 3, 1, 1)(x)
    assert np.array_equal(dot, np.round(dot))  # integers
    rng = np.random.default_rng(1)
    scale, bias = rng.random(20).astype(np.float32), rng.standard_normal(20).astype(np.float32)
    got = kernel.BinaryConvPlan(ww, 20, 50, 3, 1, 1, scale, bias)(x)
    want = dot.astype(np.float64) * scale + bias
    assert np.allclose(got, want, rtol=1e-6, atol=1e-5)


def test_bad_inputs_raise_kernel_errors():
    x, bits = _data((1, 8, 4, 4, 4, 3, 1, 1))
    ww = kernel.prepare_binary_weights(bits)
    with pytest.raises(kernel.KernelError, match="uint32"):
        kernel.binary_conv2d(x, ww.astype(np.int64), 4, 3)
    with pytest.raises(kernel.KernelError, match="NHWC"):
        kernel.binary_conv2d(x[0], ww, 4, 3)
    with pytest.raises(kernel.KernelError, match="no output"):
        kernel.binary_conv2d(x[:, :2, :2], ww, 4, 3)
    with pytest.raises(kernel.KernelError, match="threads"):
        kernel.binary_conv2d(x, ww, 4, 3, threads=0)


@pytest.mark.parametrize("choice", ["fortran", "c:sse9", "py:avx2"])
def test_unknown_kernel_choice_says_what_is_valid(choice):
    with pytest.raises(kernel.KernelError, match="'auto', 'c', 'c:portable'.*'torch'"):
        kernel._load(choice)


@pytest.mark.parametrize("isa", kernel.ISAS)
def test_kernel_env_var_forces_an_isa_where_the_cpu_has_it(isa):
    """``SLIMFACE_KERNEL=c:<isa>`` runs that path (benchmarks and tests force AVX2 this way
    on AVX-512 machines); one the CPU lacks is an error that names the best it has."""
    import subprocess
    import sys

    code = "from slimface.runtime import kernel; print(kernel.implementation(), kernel.layer_path())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, kernel.ENV_VAR: f"c:{isa}"}, timeout=60)
    if BEST is not None and kernel.ISAS.index(isa) <= kernel.ISAS.index(BEST):
        assert out.stdout.split() == [f"c:{isa}", "kernel"]
    else:
        assert out.returncode != 0 and "not available" in out.stderr + out.stdout


def test_layer_path_rule_parses_every_documented_choice():
    assert kernel._parse_choice(None) == (None, None, "auto")
    assert kernel._parse_choice("torch") == (None, None, "torch")
    assert kernel._parse_choice("C:AVX2") == ("c", "avx2", "kernel")
    assert kernel._parse_choice("py") == ("py", None, "kernel")
    with pytest.raises(kernel.KernelError, match="layer path"):
        kernel.set_layer_path("fastest")


def test_non_contiguous_input_is_accepted(impl):
    x, bits = _data((2, 5, 6, 6, 3, 3, 1, 1))
    xt = np.asfortranarray(x)
    ww = kernel.prepare_binary_weights(bits)
    assert np.array_equal(kernel.binary_conv2d(xt, ww, 3, 3, 1, 1),
                          kernel.binary_conv2d(x, ww, 3, 3, 1, 1))


@pytest.mark.parametrize("aligned", [False, True], ids=["plain", "aligned-view"])
def test_plan_reuses_an_output_only_when_the_caller_dropped_it(impl, monkeypatch, aligned):
    """Large outputs are cache-line aligned views of a larger buffer, and a slice of one
    references that buffer, not the output: the slice must still pin the memory, as must a
    torch tensor made from it. An array its last holder made read-only is not reused."""
    monkeypatch.setattr(kernel, "STREAM_BYTES", 1 << 10 if aligned else 1 << 40)
    x, bits = _data((1, 8, 6, 5, 16, 1, 1, 0))
    plan = kernel.BinaryConvPlan(kernel.prepare_binary_weights(bits), 16, 8, 1)
    recycles = impl[0] == "c"  # the NumPy twin allocates every output

    def addr(a):
        return a.__array_interface__["data"][0]

    first = plan(x)
    assert (first.base is not None) == aligned
    want = first.copy()
    view, first_addr = first[0, :2], addr(first)
    del first
    second = plan(-x)  # the view still pins the first output: fresh memory
    assert addr(second) != first_addr and np.array_equal(view, want[0, :2])
    tensor, second_addr = torch.from_numpy(second), addr(second)
    del second
    third = plan(x)  # the tensor pins the second one
    assert addr(third) != second_addr and np.array_equal(third, want)
    assert not np.array_equal(tensor.numpy(), want)
    third_addr = addr(third)
    del view, tensor, third
    fourth = plan(x)  # nothing outside the plan holds the last output: its memory is reused
    assert np.array_equal(fourth, want)
    if recycles:  # the NumPy twin allocates afresh, and malloc may hand the same block back
        assert addr(fourth) == third_addr
    fourth.setflags(write=False)
    del fourth
    assert np.array_equal(plan(-x), kernel.BinaryConvPlan(
        kernel.prepare_binary_weights(bits), 16, 8, 1)(-x))


@pytest.mark.parametrize("cout", [256, 250], ids=["streamed", "cout-not-16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_large_float_outputs_written_with_streaming_stores_are_exact(impl, cout, threads):
    """Outputs of at least STREAM_BYTES are 64-byte aligned and written with non-temporal
    stores on AVX-512 (whole 16-float groups of aligned rows only: C_out = 250 takes the
    ordinary path)."""
    x, bits = _data((3, 64, 64, 64, cout, 1, 1, 0), seed=3)
    out = kernel.BinaryConvPlan(kernel.prepare_binary_weights(bits), cout, 64, 1,
                                threads=threads)(x)
    if cout == 256:
        assert out.nbytes >= kernel.STREAM_BYTES and out.ctypes.data % kernel.CACHE_LINE == 0
    assert np.array_equal(out, _reference(x, bits, 1, 0, binary=True))


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_sign_words_out_and_in_match_the_float_path(impl, shape):
    """A "signs" plan writes exactly the packed signs of the float plan's output, and a plan
    fed those words computes what it computes from the floats they came from."""
    n, c, h, w, co, k, s, p = shape
    x, bits = _data(shape)
    rng = np.random.default_rng(2)
    scale, bias = rng.random(co).astype(np.float32) + 0.1, rng.standard_normal(co).astype(np.float32)
    ww = kernel.prepare_binary_weights(bits)
    floats = kernel.BinaryConvPlan(ww, co, c, k, s, p, scale, bias)(x)
    words = kernel.BinaryConvPlan(ww, co, c, k, s, p, scale, bias, output="signs")(x)
    assert words.dtype == np.uint32 and np.array_equal(words, kernel.pack_signs(floats))
    nxt_bits = rng.random((5, co, 3, 3)) > 0.5
    nxt = kernel.BinaryConvPlan(kernel.prepare_binary_weights(nxt_bits), 5, co, 3, 1, 1)
    assert np.array_equal(nxt(words), nxt(floats))


@pytest.mark.skipif(BEST is None, reason="the C extension is not built")
def test_plan_follows_a_switch_of_implementation():
    """A plan binds the implementation's own Plan on first use; kernel.use() afterwards must
    not leave it calling the old one."""
    x, bits = _data((2, 40, 5, 4, 24, 3, 1, 1))
    plan = kernel.BinaryConvPlan(kernel.prepare_binary_weights(bits), 24, 40, 3, 1, 1)
    want = _reference(x, bits, 1, 1, binary=True)
    try:
        kernel.use("c")
        assert np.array_equal(plan(x), want) and "_kernel_py" not in plan._impl.__name__
        kernel.use("py")
        assert np.array_equal(plan(x), want) and plan._impl.__name__.endswith("_kernel_py")
    finally:
        kernel.use("c")


@pytest.mark.parametrize("impl_name", ["c", "py"])
def test_native_plan_rejects_buffers_that_do_not_fit_its_geometry(impl_name):
    if impl_name == "c" and BEST is None:
        pytest.skip("the C extension is not built")
    """The native plan checks every buffer it is handed (an output of the wrong size or type
    from alloc, an input of the wrong channel count), never reading or writing out of
    bounds, and declines (None) inputs unlike the one it was told to expect."""
    mod = kernel._load(impl_name)
    x, bits = _data((1, 40, 5, 4, 24, 3, 1, 1))
    ww = kernel.prepare_binary_weights(bits)
    native = mod.Plan(ww, kernel.fold_affine(1.0, 0.0, 9 * 40, 24), 40, 24, 3, 3, 1, 1, 1, 1, 1)
    assert native.call(x) is None  # nothing expected yet
    native.expect(x.shape, False, (1, 5, 4, 24), np.empty, np.float32)
    assert np.array_equal(native.call(x), _reference(x, bits, 1, 1, binary=True))
    assert native.call(x[:, :4]) is None and native.call(x.astype(np.float64)) is None
    native.expect(x.shape, False, (1, 5, 4, 23), np.empty, np.float32)
    with pytest.raises((ValueError, TypeError)):
        native.call(x)
    native.expect(x.shape, False, (1, 5, 4, 24), np.empty, np.float64)
    with pytest.raises((ValueError, TypeError)):
        native.call(x)
    x39 = x[:, :, :, :39].copy()
    native.expect(x39.shape, False, (1, 5, 4, 24), np.empty, np.float32)
    with pytest.raises((ValueError, TypeError)):
        native.call(x39)


def test_stream_fill_writes_every_float_and_varies_them(impl):
    """The bench's memory floor must write real, non-constant data (zeros stream faster)."""
    out = kernel._aligned_empty((1000,), np.float32)  # not a multiple of 16 floats
    out[...] = np.nan
    kernel._impl.stream_fill(out, 2)
    assert np.isfinite(out).all() and len(np.unique(out)) > 1


def test_stream_fill_rejects_misaligned_or_non_float_buffers():
    pytest.importorskip("slimface.runtime._kernel")
    from slimface.runtime import _kernel

    raw = kernel._aligned_empty((65,), np.float32)
    with pytest.raises(ValueError, match="cache line"):
        _kernel.stream_fill(raw[1:], 1)
    with pytest.raises(TypeError, match="stream_fill"):
        _kernel.stream_fill(np.zeros(64, np.int32), 1)


def test_streamed_write_ms_is_the_least_time_of_the_timed_fills(monkeypatch):
    seen = {}

    def blocks(fns, repeats, rounds):
        fns["write"]()  # one real fill of the buffer
        seen.update(repeats=repeats, rounds=rounds)
        return {"write": [3.0, 1.5, 2.0]}

    monkeypatch.setattr(kernel, "time_in_blocks", blocks)
    assert kernel.streamed_write_ms(1 << 16, threads=1, repeats=3) == 1.5
    assert seen == {"repeats": 3, "rounds": 1}

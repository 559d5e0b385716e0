"""The `cpu` engine (numba kernels on packed words) against the `reference` kernels, bit for bit.

Layers are random with odd sizes, channel counts that are not multiples of 32 (both the uint32 path, odd word
counts, and the uint64 path, even word counts), every border case, thresholds at exact ties (taken from the
reference's own dot products) and the constant +-2**30 thresholds.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, random_frames, shipped_bit_models
from mbunet.arch import Architecture, Step
from mbunet.bits import is_binary, pack_bits, pack_signs, weight_planes
from mbunet.engines.base import create_engine
from mbunet.engines.cpu import CpuKernels, conv_arguments, kernel_weights
from mbunet.engines.reference import ReferenceKernels
from mbunet.errors import MbunetError, ModelFileError
from mbunet.bits import ALWAYS_OFF, ALWAYS_ON
from mbunet.cudakernels.cpu import binconv
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import ModelFile, load_model
from mbunet.prepared import conv_layer, prepare_steps

REF = ReferenceKernels()


@pytest.fixture(scope="module")
def cpu() -> CpuKernels:
    return CpuKernels()


def _layer(rng, op, n, h, w, cin, cout, masked, parts=()):
    """Random packed activations and planes of one layer; thresholds left to the caller."""
    k = 3 if op == "conv3x3" else 2
    acts = rng.choice([-1, 1], size=(n, h, w, cin)).astype(np.int8)
    x = np.concatenate([pack_signs(acts[..., :parts[0]]), pack_signs(acts[..., parts[0]:])], -1) if parts \
        else pack_signs(acts)
    weights = rng.choice([-1, 1], size=(cout, k, k, cin)).astype(np.int8)
    if masked:
        weights[rng.random(weights.shape) < 0.6] = 0
    pos, neg = weight_planes(weights, parts)
    oh, ow = (h, w) if op == "conv3x3" else (2 * h, 2 * w)
    return Step(op, "t", ("x",), cin, cout, oh, ow, None, "masked" if masked else "binary", parts), x, pos, neg


def _tie_thresholds(rng, dots):
    """Thresholds equal to a dot somewhere in the layer (exact ties), plus the two constants."""
    flat = dots.reshape(-1, dots.shape[-1])
    thr = flat[rng.integers(0, flat.shape[0], dots.shape[-1]), np.arange(dots.shape[-1])].astype(np.int32)
    thr[rng.random(thr.shape) < 0.15] = ALWAYS_ON
    thr[rng.random(thr.shape) < 0.15] = ALWAYS_OFF
    return thr


def _run_conv(cpu, step, x, pos, neg, thr, masked=None):
    """The kernel's output and its nonzero plane (None: the binary form) for the form the bits pick, or `masked`."""
    sign, nonzero, bound = conv_arguments(conv_layer(step, pos, neg, thr), masked)
    kernel = cpu.conv3x3 if step.op == "conv3x3" else cpu.conv_t2x2
    return kernel(x, sign, nonzero, bound, step.cout), nonzero


CONV_CASES = [  # n, h, w, cin, cout, masked, parts
    (1, 1, 1, 1, 1, False, ()),         # one pixel: every tap but the centre is padding
    (2, 5, 7, 3, 5, True, ()),
    (1, 3, 9, 31, 33, False, ()),
    (1, 4, 3, 33, 31, True, ()),        # 2 words: uint64 path
    (1, 6, 5, 65, 65, False, ()),       # 3 words: uint32 path
    (1, 2, 2, 100, 3, True, ()),        # 4 words: uint64 path
    (1, 7, 2, 64, 100, False, ()),
    (1, 5, 4, 24, 6, True, (12, 12)),   # concat input: each part padded to its own word
    (1, 3, 3, 66, 9, False, (33, 33)),
]


@pytest.mark.parametrize("op", ["conv3x3", "convT2x2"])
@pytest.mark.parametrize("n,h,w,cin,cout,masked,parts", CONV_CASES)
def test_conv_matches_reference(cpu, rng, op, n, h, w, cin, cout, masked, parts):
    step, x, pos, neg = _layer(rng, op, n, h, w, cin, cout, masked, parts)
    dots = REF.conv3x3_dots(x, pos, neg) if op == "conv3x3" else REF.conv_t2x2_dots(x, pos, neg)
    thr = _tie_thresholds(rng, dots)
    got, nonzero = _run_conv(cpu, step, x, pos, neg, thr)
    assert (nonzero is None) == (not masked)  # the form is chosen from the bits
    expected = pack_bits(dots >= thr)
    assert got.dtype == np.uint32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    refconv = REF.conv3x3 if op == "conv3x3" else REF.conv_t2x2
    np.testing.assert_array_equal(got, refconv(x, pos, neg, thr, cout))


@pytest.mark.parametrize("op", ["conv3x3", "convT2x2"])
@pytest.mark.parametrize("cin,parts", [(33, ()), (65, ()), (24, (12, 12))])
def test_binary_form_equals_masked_form(cpu, rng, op, cin, parts):
    """The two one-popcount forms on the same binary layer: binary (a & sign, A, C) and masked ((a ^ sign) & nz, M)."""
    step, x, pos, neg = _layer(rng, op, 1, 5, 6, cin, 40, False, parts)
    dots = REF.conv3x3_dots(x, pos, neg) if op == "conv3x3" else REF.conv_t2x2_dots(x, pos, neg)
    thr = _tie_thresholds(rng, dots)
    binary, nonzero = _run_conv(cpu, step, x, pos, neg, thr)
    assert nonzero is None
    masked, _ = _run_conv(cpu, step, x, pos, neg, thr, masked=True)
    np.testing.assert_array_equal(binary, masked)
    np.testing.assert_array_equal(binary, pack_bits(dots >= thr))


NARROW_CASES = [  # n, h, w, cin, cout, masked: uint32 and uint64 words, batches, Cout not a multiple of 32
    (3, 4, 5, 31, 40, True),
    (2, 3, 7, 64, 33, False),
    (1, 1, 1, 17, 5, False),
    (2, 5, 3, 130, 64, True),   # 5 words: uint32, several a pixel
    (1, 4, 6, 128, 96, False),  # 4 words: 2 uint64 a pixel
]


@pytest.mark.parametrize("n,h,w,cin,cout,masked", NARROW_CASES)
def test_narrow_and_wide_conv3x3_agree(rng, n, h, w, cin, cout, masked):
    """Both conv3x3 kernels (the engine picks one per layer, narrow_conv) on the same arguments, in each form the
    layer allows, give the reference's bits."""
    step, x, pos, neg = _layer(rng, "conv3x3", n, h, w, cin, cout, masked)
    dots = REF.conv3x3_dots(x, pos, neg)
    thr = _tie_thresholds(rng, dots)
    expected = pack_bits(dots >= thr)
    for form in [True] if masked else [False, True]:
        sign, nonzero, bound = conv_arguments(conv_layer(step, pos, neg, thr), form)
        args = (x.view(sign.dtype), sign, sign if nonzero is None else nonzero, bound, form)
        for kernel in (binconv.conv3x3, binconv.conv3x3_narrow):
            np.testing.assert_array_equal(kernel(*args), expected, err_msg=f"{kernel.py_func.__name__} {form=}")


def test_masked_form_reads_both_bits_set_as_zero(cpu, rng):
    """b = pos - neg: a weight with both planes set is 0, in the sign/nonzero planes too (foreign files may do it)."""
    step, x, pos, neg = _layer(rng, "conv3x3", 1, 4, 5, 40, 12, True)
    both = rng.integers(0, 2**32, size=pos.shape, dtype=np.uint64).astype(np.uint32) & ~(pos | neg)
    both &= weight_planes(np.ones((1, 1, 1, 40), np.int8))[0]  # valid bits only
    pos2, neg2 = pos | both, neg | both
    dots = REF.conv3x3_dots(x, pos, neg)
    np.testing.assert_array_equal(REF.conv3x3_dots(x, pos2, neg2), dots)
    thr = _tie_thresholds(rng, dots)
    got, nonzero = _run_conv(cpu, step, x, pos2, neg2, thr)
    assert nonzero is not None
    np.testing.assert_array_equal(got, pack_bits(dots >= thr))


def test_form_choice_needs_every_valid_bit(rng):
    """A 'binary' layer whose weights miss one input channel everywhere is not binary: A would overcount."""
    step, _, pos, neg = _layer(rng, "conv3x3", 1, 3, 3, 40, 8, False)
    assert is_binary(pos, neg, step.cin, step.cin_parts)
    pos2, neg2 = pos.copy(), neg.copy()
    pos2[..., 1] &= ~np.uint32(1 << 3)
    neg2[..., 1] &= ~np.uint32(1 << 3)
    assert not is_binary(pos2, neg2, step.cin, step.cin_parts)
    assert not is_binary(pos, neg | pos, step.cin, step.cin_parts)


@pytest.mark.parametrize("n,h,w,cout", [(1, 1, 1, 1), (2, 5, 7, 31), (1, 3, 9, 33), (1, 4, 4, 100)])
def test_input_conv_matches_reference(cpu, rng, n, h, w, cout):
    frames = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    weight = rng.integers(-2047, 2048, size=(cout, 3, 3, 3)).astype(np.int32)
    fp = np.zeros((n, h + 2, w + 2, 3), np.int64)
    fp[:, 1:-1, 1:-1] = frames
    z = sum(np.tensordot(fp[:, i:i + h, j:j + w], weight[:, i, j].T.astype(np.int64), 1)
            for i in range(3) for j in range(3))
    thr = _tie_thresholds(rng, z)
    prepared = kernel_weights(prepare_steps([Step("input", "in.0", ("frames",), 3, cout, h, w)],
                                            {"in.0.weight": weight, "in.0.threshold": thr}))
    got = cpu.input_conv(frames, prepared["in.0.weight"], prepared["in.0.threshold"])
    np.testing.assert_array_equal(got, pack_bits(z >= thr))
    np.testing.assert_array_equal(got, REF.input_conv(frames, weight, thr))


@pytest.mark.parametrize("h,w,cw", [(2, 2, 1), (6, 10, 3), (4, 2, 4)])
def test_pool_and_concat_match_reference(cpu, rng, h, w, cw):
    x = rng.integers(0, 2**32, size=(2, h, w, cw), dtype=np.uint32)
    np.testing.assert_array_equal(cpu.pool(x), REF.pool(x))
    up = rng.integers(0, 2**32, size=(2, h, w, cw + 1), dtype=np.uint32)
    np.testing.assert_array_equal(cpu.concat(x, up), REF.concat(x, up))


@pytest.mark.parametrize("classes,cin", [(1, 1), (1, 33), (3, 31), (4, 65)])
def test_output_matches_reference_with_ties(cpu, rng, classes, cin):
    x = pack_bits(rng.random((2, 5, 7, cin)) < 0.5)
    weight = rng.integers(-32767, 32768, size=(classes, cin)).astype(np.int32)
    if classes > 1:
        weight[1] = weight[0]  # classes 0 and 1 tie everywhere: the first maximum must win
    bias = rng.integers(-20000, 20000, size=(classes,)).astype(np.int32)
    bias[1 % classes] = bias[0]
    ref_logits, _ = REF.output(x, weight, np.zeros(classes, np.int32))
    if classes == 1:
        bias[0] = -ref_logits[0, 2, 3, 0]  # a logit of exactly 0 somewhere: the mask is 1 there
    prepared = kernel_weights(prepare_steps([Step("output", "out", ("x",), cin, classes, 5, 7)],
                                            {"out.weight": weight, "out.bias": bias}))
    logits, mask = cpu.output(x, prepared["out.weight"], prepared["out.bias"])
    ref_logits, ref_mask = REF.output(x, weight, bias)
    np.testing.assert_array_equal(logits, ref_logits)
    np.testing.assert_array_equal(mask, ref_mask)
    assert mask.dtype == np.uint8
    if classes == 1:
        assert logits[0, 2, 3, 0] == 0 and mask[0, 2, 3] == 1


ARCHS = [  # width, classes, input size, masked layers
    (8, 1, (16, 48), ["up-CT1", "up-CT2", "up-CT3", "up-CT4"]),
    (12, 3, (32, 16), ["down-C2", "up-C1", "up-CT3"]),
    (8, 2, (16, 16), []),
    (33, 1, (16, 32), ["down-C1", "down-C3", "up-C4"]),
]


def _assert_same_as_reference(model, frames):
    cpu_engine = create_engine("cpu", model)
    ref_engine = create_engine("reference", model)
    masks, bits = cpu_engine.segment_bits(frames)
    ref_masks, ref_bits = ref_engine.segment_bits(frames)
    assert set(bits) == set(ref_bits)
    for name, ref in ref_bits.items():
        np.testing.assert_array_equal(bits[name], ref, err_msg=name)
    np.testing.assert_array_equal(masks, ref_masks)
    assert len(np.unique(ref_masks)) > 1  # a mask of one value proves little
    np.testing.assert_array_equal(cpu_engine.segment(frames), ref_masks)


@pytest.mark.parametrize("width,classes,size,masked", ARCHS)
def test_whole_network_matches_reference(width, classes, size, masked):
    arch = Architecture(width=width, classes=classes, input_size=size).with_masked(masked)
    model = random_quantized_model(arch, seed=width + classes)
    _assert_same_as_reference(model, random_frames(2, *size, seed=3))


@pytest.mark.parametrize("name", shipped_bit_models() or [pytest.param("none", marks=pytest.mark.skip(
    reason="no shipped binary/mbunet model in weights/ yet"))])
def test_shipped_model_matches_reference(name):
    model = load_model(name)
    _assert_same_as_reference(model, random_frames(1, *model.arch.input_size, seed=5))


def test_rejects_bad_frames_and_bad_arrays():
    arch = Architecture(width=8, input_size=(16, 16))
    model = random_quantized_model(arch, seed=0)
    engine = create_engine("cpu", model)
    with pytest.raises(MbunetError, match=r"expected uint8 frames \[N, 16, 16, 3\]"):
        engine.segment(np.zeros((1, 16, 32, 3), np.uint8))
    arrays = dict(model.arrays, **{"down1.0.pos": model.arrays["down1.0.pos"][:, :, :, :0]})
    # checked once, when the model is made (pipeline.modelfile), so no engine ever sees the bad array
    with pytest.raises(ModelFileError,
                       match=r"down1.0.pos is uint32\[16, 3, 3, 0\], the architecture expects uint32\[16, 3, 3, 1\]"):
        ModelFile(None, arch, model.card, arrays)


def test_kernels_load_from_the_numba_cache():
    """A second process finds every kernel compiled (cache=True works from this install): no recompiling."""
    script = (
        "from mbunet.arch import Architecture\n"
        "from mbunet.random_model import random_quantized_model\n"
        "from mbunet.engines.base import create_engine\n"
        "from mbunet.cudakernels.cpu import binconv, fpconv, packed\n"
        "create_engine('cpu', random_quantized_model(Architecture(width=8, input_size=(16, 16))))\n"
        "kernels = [binconv.conv3x3, binconv.conv3x3_narrow, binconv.conv_t2x2, fpconv.input_conv,\n"
        "           fpconv.output_conv, packed.pool2x2, packed.concat]\n"
        "print(sum(k.stats.cache_misses.total() for k in kernels), sum(k.stats.cache_hits.total() for k in kernels))\n"
    )
    run = lambda: subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,  # noqa
                                 check=True).stdout.split()
    run()  # fills the cache if this checkout has never compiled these signatures
    misses, hits = run()
    assert int(misses) == 0 and int(hits) >= 7

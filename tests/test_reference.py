"""The integer maths of DESIGN section 4: AND form == XOR form == float conv of ±1 values with -1 padding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mbunet.bits import pack_bits, pack_signs, unpack_bits, unpack_signs, weight_planes
from mbunet.engines.reference import ReferenceKernels, class_mask
from mbunet.bits import ALWAYS_OFF, ALWAYS_ON
from mbunet.export import fold_threshold

FORMS = ("and", "xor")


def _random_layer(rng, n, h, w, cin, cout, k, masked, parts=()):
    acts = rng.choice([-1, 1], size=(n, h, w, cin)).astype(np.int8)
    weights = rng.choice([-1, 1], size=(cout, k, k, cin)).astype(np.int8)
    if masked:
        weights[rng.random(weights.shape) < 0.5] = 0
    if parts:
        packed = np.concatenate([pack_signs(acts[..., :parts[0]]), pack_signs(acts[..., parts[0]:])], axis=-1)
    else:
        packed = pack_signs(acts)
    return acts, weights, packed, weight_planes(weights, parts)


def _float_conv(acts, weights):
    """Oracle: float64 conv of ±1 activations padded with -1."""
    x = F.pad(torch.from_numpy(acts).double().permute(0, 3, 1, 2), (1, 1, 1, 1), value=-1.0)
    return F.conv2d(x, torch.from_numpy(weights).double().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("n,h,w,cin,cout,masked,parts", [
    (1, 1, 1, 1, 1, False, ()),       # a single pixel: every tap but the centre is padding
    (2, 5, 7, 3, 5, True, ()),
    (1, 3, 9, 31, 2, False, ()),
    (1, 4, 3, 33, 7, True, ()),
    (1, 6, 5, 65, 33, True, ()),
    (1, 2, 2, 100, 3, False, ()),
    (1, 5, 4, 24, 6, True, (12, 12)),  # concat input: each part padded to its own word
])
def test_conv3x3_forms_equal_float_conv(n, h, w, cin, cout, masked, parts, rng):
    acts, weights, packed, (pos, neg) = _random_layer(rng, n, h, w, cin, cout, 3, masked, parts)
    expected = _float_conv(acts, weights)
    for form in FORMS:
        got = ReferenceKernels(form).conv3x3_dots(packed, pos, neg)
        np.testing.assert_array_equal(got, expected.astype(np.int32), err_msg=form)


@pytest.mark.parametrize("cin,cout,masked", [(1, 1, False), (33, 5, True), (64, 3, False), (70, 31, True)])
def test_conv_t2x2_forms_equal_float_transposed_conv(cin, cout, masked, rng):
    acts, weights, packed, (pos, neg) = _random_layer(rng, 2, 3, 5, cin, cout, 2, masked)
    x = torch.from_numpy(acts).double().permute(0, 3, 1, 2)
    wt = torch.from_numpy(weights).double().permute(3, 0, 1, 2)  # [Cin, Cout, 2, 2]
    expected = F.conv_transpose2d(x, wt, stride=2).permute(0, 2, 3, 1).numpy().astype(np.int32)
    for form in FORMS:
        np.testing.assert_array_equal(ReferenceKernels(form).conv_t2x2_dots(packed, pos, neg), expected)


def test_channel_padding_bits_contribute_nothing(rng):
    """Garbage in the activations' padding bits must not change the dot (weights are 0 there)."""
    acts, weights, packed, (pos, neg) = _random_layer(rng, 1, 4, 4, 5, 3, 3, True)
    dirty = packed | np.uint32(0xFFFFFFE0)
    for form in FORMS:
        k = ReferenceKernels(form)
        np.testing.assert_array_equal(k.conv3x3_dots(dirty, pos, neg), k.conv3x3_dots(packed, pos, neg))


def test_threshold_output_is_packed_with_zero_padding(rng):
    acts, weights, packed, (pos, neg) = _random_layer(rng, 1, 3, 3, 8, 5, 3, False)
    out = ReferenceKernels().conv3x3(packed, pos, neg, np.zeros(5, np.int32), 5)
    assert out.shape == (1, 3, 3, 1) and not (out & np.uint32(~0x1F & 0xFFFFFFFF)).any()
    np.testing.assert_array_equal(unpack_bits(out, 5), _float_conv(acts, weights) >= 0)


def test_pool_is_or_of_signs(rng):
    acts = rng.choice([-1, 1], size=(2, 6, 4, 40)).astype(np.int8)
    expected = acts.reshape(2, 3, 2, 2, 2, 40).max(axis=(2, 4))
    np.testing.assert_array_equal(unpack_signs(ReferenceKernels().pool(pack_signs(acts)), 40), expected)


@pytest.mark.parametrize("gamma", [1.7, -0.8, 0.0])
@pytest.mark.parametrize("beta", [0.6, -0.4, 0.0])
def test_batchnorm_sign_fold_matches_float_on_every_integer(gamma, beta):
    mu, sd = 3.3, 2.0
    z = np.arange(-40, 41)
    expected = gamma * (z - mu) / sd + beta >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mu - beta * sd / np.float64(gamma)  # inf or nan when gamma == 0, as in a real export
    thr, flip = fold_threshold(np.array([t]), np.array([gamma]), np.array([beta]))
    signed = -z if flip[0] else z
    np.testing.assert_array_equal(signed >= thr[0], expected)
    if gamma == 0.0:
        assert thr[0] in (ALWAYS_ON, ALWAYS_OFF)


def test_exact_tie_goes_to_plus_one():
    thr, flip = fold_threshold(np.array([5.0, 5.0]), np.array([1.0, -1.0]), np.array([0.0, 0.0]))
    assert (5 >= thr[0]) and (-5 >= thr[1])  # z == t: BN output 0, sign(0) = +1, for either gamma sign


def test_output_logits_and_mask(rng):
    acts = rng.choice([-1, 1], size=(1, 3, 4, 37)).astype(np.int8)
    w = rng.integers(-100, 100, size=(3, 37)).astype(np.int32)
    b = np.array([5, -3, 0], np.int32)
    logits, mask = ReferenceKernels().output(pack_signs(acts), w, b)
    np.testing.assert_array_equal(logits, acts.astype(np.int32) @ w.T + b)
    np.testing.assert_array_equal(mask, np.argmax(logits, -1))
    assert class_mask(np.array([[[[0]], [[-1]]]])).ravel().tolist() == [1, 0]
    assert class_mask(np.array([[7, 7, 2]])).tolist() == [0]  # ties: first maximum


def test_input_conv_equals_integer_conv_with_black_padding(rng):
    frames = rng.integers(0, 256, size=(2, 5, 6, 3)).astype(np.uint8)
    w = rng.integers(-32767, 32768, size=(4, 3, 3, 3)).astype(np.int32)
    x = F.pad(torch.from_numpy(frames).double().permute(0, 3, 1, 2), (1, 1, 1, 1))
    z = F.conv2d(x, torch.from_numpy(w).double().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    thr = np.median(z.reshape(-1, 4), axis=0).astype(np.int32)
    got = ReferenceKernels().input_conv(frames, w, thr)
    np.testing.assert_array_equal(unpack_bits(got, 4), z >= thr)


def test_pack_unpack_round_trip(rng):
    bits = rng.random((3, 2, 70)) < 0.5
    packed = pack_bits(bits)
    assert packed.dtype == np.uint32 and packed.shape == (3, 2, 3)
    np.testing.assert_array_equal(unpack_bits(packed, 70), bits)
    assert int(pack_bits(np.array([True] + [False] * 31 + [True]))[1]) == 1  # channel 32 -> word 1, bit 0

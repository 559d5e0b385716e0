"""pipeline.prepared: every form's partial sum compared with its bound gives the reference's dot >= threshold.

The partial sums are formed here in numpy exactly as the fused kernels form them (padding word 0 outside the image,
one sum per output group), so the bounds the bmma library receives are checked without a GPU as well.
"""
from __future__ import annotations

import numpy as np
import pytest

from mbunet.arch import Architecture, Step, plan
from mbunet.bits import ALWAYS_OFF, ALWAYS_ON, pack_signs, unpack_signs, weight_planes
from mbunet.engines.reference import ReferenceKernels
from mbunet.prepared import ConvLayer, InputLayer, OutputLayer, conv_layer, output_layer, prepare
from mbunet.random_model import random_quantized_model

REF = ReferenceKernels()
INT32 = np.iinfo(np.int32)


def _popc(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(-1, dtype=np.int64)


def _partial_sums(layer: ConvLayer, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each form's partial sum [N, H', W', Cout] as its kernels accumulate it, over the taps one output sees."""
    forms = {
        "and": lambda a, t: 2 * _popc(a & layer.pos[:, t]) - 2 * _popc(a & layer.neg[:, t]),
        "xor": lambda a, t: _popc(a ^ layer.neg[:, t]) - _popc(a ^ layer.pos[:, t]),
        "masked": lambda a, t: -2 * _popc((a ^ layer.sign[:, t]) & layer.nonzero[:, t]),
    }
    n, h, w, _ = x.shape
    out = {}
    for form, share in forms.items():
        if layer.step.op == "conv3x3":
            xp = np.zeros((n, h + 2, w + 2, x.shape[-1]), np.uint32)  # padding word 0: all -1
            xp[:, 1:-1, 1:-1] = x
            out[form] = sum(share(xp[:, t // 3:t // 3 + h, t % 3:t % 3 + w, None, :], t) for t in range(9))
        else:
            part = np.zeros((n, 2 * h, 2 * w, layer.pos.shape[0]), np.int64)
            for t in range(4):
                part[:, t // 2::2, t % 2::2] = share(x[..., None, :], t)
            out[form] = part
    return out


def _bound_per_output(layer: ConvLayer, bound: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [groups, Cout] bound spread over the outputs: one row (3x3), the output's tap 2i + j (transposed)."""
    if layer.step.op == "conv3x3":
        return np.broadcast_to(bound[0], shape)
    full = np.empty(shape, np.int64)
    for t in range(4):
        full[:, t // 2::2, t % 2::2] = bound[t]
    return full


@pytest.mark.parametrize("op", ["conv3x3", "convT2x2"])
@pytest.mark.parametrize("cin,cout,masked,parts", [(5, 3, True, ()), (33, 40, False, ()), (40, 7, True, (20, 20)),
                                                   (64, 33, False, (32, 32))])
def test_every_form_compares_as_the_reference(rng, op, cin, cout, masked, parts):
    k = 3 if op == "conv3x3" else 2
    acts = rng.choice(np.array([-1, 1], np.int8), size=(2, 4, 5, cin))
    x = np.concatenate([pack_signs(acts[..., :parts[0]]), pack_signs(acts[..., parts[0]:])], -1) if parts \
        else pack_signs(acts)
    weights = rng.choice(np.array([-1, 1], np.int8), size=(cout, k, k, cin))
    if masked:
        weights[rng.random(weights.shape) < 0.5] = 0
    pos, neg = weight_planes(weights, parts)
    step = Step(op, "t", ("x",), cin, cout, 4 if k == 3 else 8, 5 if k == 3 else 10, None, "binary", parts)
    dots = REF.conv3x3_dots(x, pos, neg) if op == "conv3x3" else REF.conv_t2x2_dots(x, pos, neg)
    flat = dots.reshape(-1, cout)
    thr = flat[rng.integers(0, len(flat), cout), np.arange(cout)].astype(np.int32)  # exact ties
    thr[::5], thr[1::5], thr[2::5] = ALWAYS_ON, ALWAYS_OFF, INT32.min  # constants, and a bound that must clip
    if cout > 3:
        thr[3] = INT32.max
    layer = conv_layer(step, pos, neg, thr)
    assert layer.binary == (not masked)
    expected = dots >= thr
    assert expected.any() and not expected.all()
    for form, partial in _partial_sums(layer, x).items():
        bound = getattr(layer, f"{form}_bound")
        assert bound.dtype == np.int32 and bound.shape == ((1 if op == "conv3x3" else 4), cout)
        np.testing.assert_array_equal(partial >= _bound_per_output(layer, bound, partial.shape), expected,
                                      err_msg=form)
    if layer.binary:  # the cpu binary form: 4 S - 2 A from the sign plane alone, against the AND bound
        zero, none = np.zeros(cout, np.int32), np.zeros_like(neg)
        two_s = _partial_sums(conv_layer(step, pos, none, zero), x)["and"]  # 2 sum popc(a & sign)
        two_a = _partial_sums(conv_layer(step, pos | neg, none, zero), x)["and"]  # 2 sum popc(a), valid bits
        np.testing.assert_array_equal(2 * two_s - two_a, _partial_sums(layer, x)["and"])


def test_output_layer_set_bits_form(rng):
    x = pack_signs(rng.choice(np.array([-1, 1], np.int8), size=(1, 3, 4, 37)))
    weight = rng.integers(-32767, 32768, size=(3, 37)).astype(np.int32)
    bias = rng.integers(-20000, 20000, size=(3,)).astype(np.int32)
    layer = output_layer(weight, bias)
    bits = unpack_signs(x, 37) > 0
    logits = layer.base + np.tensordot(bits.astype(np.int64), layer.set_weight.T.astype(np.int64), 1)
    np.testing.assert_array_equal(logits, REF.output(x, weight, bias)[0])


def test_prepare_covers_every_weighted_step():
    arch = Architecture(width=6, classes=2, input_size=(16, 32)).with_masked({"down-C1", "up-CT2"})
    layers = prepare(random_quantized_model(arch, seed=4))
    steps = [s for s in plan(arch) if s.has_weights]
    assert list(layers) == [s.name for s in steps]
    kinds = {"input": InputLayer, "conv3x3": ConvLayer, "convT2x2": ConvLayer, "output": OutputLayer}
    for s in steps:
        assert isinstance(layers[s.name], kinds[s.op])
        if isinstance(layers[s.name], ConvLayer):
            assert layers[s.name].binary == (s.kind == "binary"), s.name  # random bits: the kind decides the form

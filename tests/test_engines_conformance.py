"""Every registered engine against `reference` on random models (docs/design.md, section 5).

Bit engines (those that run only quantized models) must give identical packed bits at every layer, identical
logits and identical masks. Float engines (those that also run "fp" models: the PyTorch baselines) compute the
quantized function in floating point and must agree on >= 99.99% of mask pixels. An engine that cannot run here
is skipped with its own unavailable() reason.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import random_frames
from mbunet.arch import Architecture
from mbunet.engines.base import create_engine, engine_class, list_engines
from mbunet.random_model import random_quantized_model

MODELS = [  # width, classes, input size, masked layers, seed
    (8, 1, (16, 48), ["up-CT1", "up-CT2", "up-CT3", "up-CT4"], 1),
    (12, 3, (32, 16), ["down-C1", "down-C4", "up-C2", "up-CT1"], 2),
]
FLOAT_AGREEMENT = 0.9999


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: f"w{m[0]}-c{m[1]}-{m[2][0]}x{m[2][1]}")
def golden(request):
    width, classes, size, masked, seed = request.param
    model = random_quantized_model(Architecture(width=width, classes=classes, input_size=size).with_masked(masked),
                                   seed=seed)
    frames = random_frames(2, *size, seed=seed)
    masks, bits = create_engine("reference", model).segment_bits(frames)
    return model, frames, masks, bits


def run_engine(name, model, call):
    """call(engine) on a fresh engine of that name (skipped with its reason where it cannot run here)."""
    why = engine_class(name).unavailable(model)
    if why is not None:
        pytest.skip(f"{name}: {why}")
    engine = create_engine(name, model)
    try:
        out = call(engine)
        engine.sync()
        return out
    finally:
        engine.close()


@pytest.mark.parametrize("name", [n for n in list_engines() if n != "reference"])
def test_engine_matches_reference(name, golden):
    model, frames, ref_masks, ref_bits = golden
    cls = engine_class(name)
    masks, bits = run_engine(name, model, lambda engine: engine.segment_bits(frames))
    assert masks.dtype == np.uint8 and masks.shape == ref_masks.shape
    if "fp" in cls.kinds:
        agreement = float(np.mean(masks == ref_masks))
        assert agreement >= FLOAT_AGREEMENT, f"{name} agrees with reference on {agreement:.4%} of pixels"
        return
    assert set(bits) == set(ref_bits), f"{name} returned tensors {sorted(set(bits) ^ set(ref_bits))} differently"
    for tensor, ref in ref_bits.items():
        assert bits[tensor].dtype == ref.dtype and bits[tensor].shape == ref.shape, tensor
        np.testing.assert_array_equal(bits[tensor], ref, err_msg=f"{name}: tensor {tensor}")
    np.testing.assert_array_equal(masks, ref_masks, err_msg=f"{name}: masks")


@pytest.mark.parametrize("name", list_engines())
def test_frame_size_masks_match_reference(name, golden):
    """The scores every engine hands to the shared enlargement (preprocess.scores_to_frame), and so the masks at
    a frame's size: bit engines equal to reference, float engines on >= 99.99% of the pixels."""
    from mbunet.preprocess import geometry, scores_to_frame

    model, frames, ref_masks, ref_bits = golden
    cls = engine_class(name)
    masks, scores = run_engine(name, model, lambda engine: engine.segment_scores(frames))
    geo = geometry((5 * frames.shape[1], 3 * frames.shape[2]), model.arch.input_size, "letterbox")
    ref_frame = np.stack([scores_to_frame(s, geo) for s in ref_bits["out.logits"]])
    frame = np.stack([scores_to_frame(s, geo) for s in scores])
    assert frame.shape == (len(frames), *geo.frame_size)
    if "fp" in cls.kinds:
        assert float(np.mean(frame == ref_frame)) >= FLOAT_AGREEMENT
        return
    assert scores.dtype == np.int32
    np.testing.assert_array_equal(scores, ref_bits["out.logits"], err_msg=f"{name}: scores")
    np.testing.assert_array_equal(masks, ref_masks, err_msg=f"{name}: masks")
    np.testing.assert_array_equal(frame, ref_frame, err_msg=f"{name}: frame-size masks")

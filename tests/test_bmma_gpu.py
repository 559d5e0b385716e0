"""bmma on a real GPU: bit-exact against `reference` at every layer (random models with awkward sizes, every
padding case, both dot-product forms) and on every shipped model; graphs per batch size; the MMA bench.
Skipped, with the engine's own reason, where no GPU with binary Tensor Cores is present."""
from __future__ import annotations

import numpy as np
import pytest

from mbunet.arch import Architecture, plan
from mbunet.engines.base import create_engine
from mbunet.bench import mma_bench
from mbunet.engines.bmma import BmmaEngine
from mbunet.errors import MbunetError
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import load_model, shipped_names
from conftest import random_frames

WHY = BmmaEngine.unavailable()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY is not None, reason=f"bmma cannot run here: {WHY}")]


def _forms() -> list[str]:
    from mbunet.cudakernels.bmma.lib import load_library

    dev = load_library().device()
    return ["and", "xor"] if dev.major * 10 + dev.minor >= 80 else ["xor"]


def _assert_same_as_reference(model, frames: np.ndarray, form: str) -> None:
    ref_masks, ref_bits = create_engine("reference", model).segment_bits(frames)
    engine = BmmaEngine(form)
    engine.load(model)
    try:
        masks, bits = engine.segment_bits(frames)
    finally:
        engine.close()
    assert engine.form_used == form
    assert set(bits) == set(ref_bits)
    for s in plan(model.arch):  # layer order, so the first wrong layer is the one reported
        name = "out.logits" if s.op == "output" else s.name
        np.testing.assert_array_equal(bits[name], ref_bits[name], err_msg=f"{form}: {name} ({s.op})")
    np.testing.assert_array_equal(masks, ref_masks)


# widths give channel counts that are not multiples of 32 or 128, K chunks of 1..3 (8 words each), N beyond one
# 64-column tile; sizes give deep levels of 1x1 and 3x5 pixels and M not a multiple of the 64-pixel tile.
@pytest.mark.parametrize("width,classes,size,masked,batch", [
    (5, 1, (16, 16), set(), 1),
    (7, 3, (48, 80), {"up-CT1", "up-CT2", "down-C1"}, 2),
    (33, 1, (32, 48), {"up-C4", "down-C4"}, 1),
    (64, 2, (32, 32), {"up-CT1", "up-CT2", "up-CT3", "up-CT4"}, 3),
    (20, 1, (80, 48), {"down-C2", "up-C1"}, 1),
])
def test_random_models_match_reference_at_every_layer(width, classes, size, masked, batch):
    arch = Architecture(width=width, classes=classes, input_size=size).with_masked(masked)
    model = random_quantized_model(arch, seed=width)
    frames = random_frames(batch, *size, seed=batch)
    for form in _forms():
        _assert_same_as_reference(model, frames, form)


@pytest.mark.parametrize("name", shipped_names() or ["<none shipped>"])
def test_shipped_models_match_reference(name):
    if name == "<none shipped>":
        pytest.skip("no model in weights/")
    model = load_model(name)
    if model.kind not in BmmaEngine.kinds:
        pytest.skip(f"{name} is a {model.kind} model")
    frames = random_frames(1, *model.arch.input_size, seed=7)
    _assert_same_as_reference(model, frames, _forms()[0])


def test_graphs_per_batch_size_and_buffer_growth():
    """Batch 1, 3 (buffers grow, graphs rebuilt), 1 again (cached graph on the larger buffers)."""
    model = random_quantized_model(Architecture(width=9, classes=2, input_size=(32, 16)), seed=5)
    engine = create_engine("bmma", model)
    reference = create_engine("reference", model)
    frames = random_frames(3, 32, 16, seed=11)
    try:
        for batch in (frames[:1], frames, frames[1:2], frames[:2]):
            np.testing.assert_array_equal(engine.segment(batch), reference.segment(batch))
    finally:
        engine.close()
        engine.close()  # idempotent


def test_bad_frames_are_refused_before_the_gpu():
    model = random_quantized_model(Architecture(width=4, input_size=(16, 16)))
    engine = create_engine("bmma", model)
    try:
        with pytest.raises(MbunetError, match="expected uint8 frames"):
            engine.segment(np.zeros((1, 16, 32, 3), np.uint8))
    finally:
        engine.close()


def test_mma_bench_reports_every_supported_flavour():
    result = mma_bench(iters=200)
    rows = {r["flavour"]: r for r in result["rows"]}
    assert set(rows) == {"b1-and", "b1-xor", "s8", "f16"}
    assert rows["b1-xor"]["tops"] > 0
    for r in rows.values():
        assert "error" in r or (r["ms"] > 0 and r["tops"] > 0)

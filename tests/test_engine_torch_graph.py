"""`torch-fp16-graph`: one CUDA graph per batch shape, replayed on new frames (the conformance test covers the
rest of the contract on random models)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import random_frames
from mbunet.arch import Architecture
from mbunet.engines.base import create_engine, engine_class
from mbunet.random_model import random_quantized_model

FLOAT_AGREEMENT = 0.9999  # as tests/test_engines_conformance.py: fp16 rounding may flip near-ties


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_without_cuda_it_says_why():
    why = engine_class("torch-fp16-graph").unavailable()
    if _cuda():
        assert why is None
    else:
        assert "CUDA" in why or "PyTorch is not installed" in why


@pytest.mark.gpu
def test_graph_replays_match_reference_across_shapes_and_inputs():
    if not _cuda():
        pytest.skip("PyTorch sees no CUDA device")
    arch = Architecture(width=20, classes=2, input_size=(48, 80)).with_masked({"down-C1", "up-CT2"})
    model = random_quantized_model(arch, seed=5)
    engine, reference = create_engine("torch-fp16-graph", model), create_engine("reference", model)
    try:
        for batch, seed in ((2, 1), (1, 2), (2, 3), (1, 4)):  # each shape captured once, then replayed on new frames
            frames = random_frames(batch, 48, 80, seed=seed)
            masks, scores = engine.segment_scores(frames)
            expected = reference.segment(frames)
            assert masks.shape == expected.shape and scores.shape == (batch, 48, 80, 2)
            assert float(np.mean(masks == expected)) >= FLOAT_AGREEMENT, (batch, seed)
        assert sorted(engine.graphs) == [(1, 48, 80, 3), (2, 48, 80, 3)]
    finally:
        engine.close()

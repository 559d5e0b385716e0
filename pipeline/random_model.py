"""A model file of random bits, for tests, smoke runs (`--model random`) and `mbunet bench --size`."""
from __future__ import annotations

import numpy as np

from .arch import Architecture, plan
from .bits import ALWAYS_OFF, ALWAYS_ON, weight_planes
from .modelfile import (INPUT_WEIGHT_MAX, OUTPUT_WEIGHT_MAX, ModelFile, arrays_sha256, default_labels,
                        expected_arrays)


def random_quantized_model(arch: Architecture, seed: int = 0, zero_fraction: float = 0.6,
                           name: str = "random") -> ModelFile:
    """A model file of random bits with thresholds that keep every layer's outputs mixed (not all +1 or -1).

    Thresholds are drawn around the dot product's spread, and a few channels get the constant thresholds, so
    tests exercise ties, constants and both signs. Used by engine tests and by `mbunet bench --size`.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for s in plan(arch):
        if s.op == "input":
            w = rng.integers(-INPUT_WEIGHT_MAX, INPUT_WEIGHT_MAX + 1, size=(s.cout, 3, 3, 3)).astype(np.int32)
            centre = w.reshape(s.cout, -1).sum(1) * 110
            spread = np.abs(w).reshape(s.cout, -1).sum(1) * 40
            arrays[f"{s.name}.weight"] = w
            arrays[f"{s.name}.threshold"] = (centre + rng.normal(0, 1, s.cout) * spread).astype(np.int32)
        elif s.op in ("conv3x3", "convT2x2"):
            k = 3 if s.op == "conv3x3" else 2
            w = rng.choice([-1, 1], size=(s.cout, k, k, s.cin)).astype(np.int8)
            if s.kind == "masked":
                w[rng.random(w.shape) < zero_fraction] = 0
            pos, neg = weight_planes(w, s.cin_parts)
            arrays[f"{s.name}.pos"], arrays[f"{s.name}.neg"] = pos, neg
            spread = np.sqrt(np.maximum(1, np.abs(w).reshape(s.cout, -1).sum(1)))
            thr = np.round(rng.normal(0, 1, s.cout) * spread).astype(np.int32)
            thr[rng.random(s.cout) < 0.05] = ALWAYS_ON
            thr[rng.random(s.cout) < 0.05] = ALWAYS_OFF
            arrays[f"{s.name}.threshold"] = thr
        elif s.op == "output":
            arrays[f"{s.name}.weight"] = rng.integers(-OUTPUT_WEIGHT_MAX, OUTPUT_WEIGHT_MAX + 1,
                                                      size=(s.cout, s.cin)).astype(np.int32)
            arrays[f"{s.name}.bias"] = rng.integers(-20000, 20000, size=(s.cout,)).astype(np.int32)
    assert set(arrays) == set(expected_arrays(arch))
    card = {"name": name, "format": "mbunet", "kind": arch.model_kind, "architecture": arch.to_json(),
            "labels": default_labels(arch.classes), "arrays_sha256": arrays_sha256(arrays),
            "training": {"data": f"none: random bits (seed {seed})"}}
    return ModelFile(None, arch, card, arrays)

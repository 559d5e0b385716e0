"""Model files from trained PyTorch networks (export_model) or from random bits (random_quantized_model, tests/bench).

BatchNorm + sign folding (DESIGN.md section 4): sign(gamma*(z - mu)/sqrt(var+eps) + beta) >= 0 with
t = mu - beta*sqrt(var+eps)/gamma is z >= ceil(t) for gamma > 0 and z <= floor(t) for gamma < 0; the latter is
stored as -z >= -floor(t) by negating the channel's weights (swapping pos/neg planes), so every engine only ever
compares dot >= threshold. gamma == 0 gives a constant: threshold -2**30 (always +1) or 2**30 (always -1).
"""
from __future__ import annotations

import numpy as np

from .arch import Architecture, plan
from .bits import weight_planes
from .modelfile import ModelFile, arrays_sha256, default_labels, expected_arrays

ALWAYS_ON = -(1 << 30)
ALWAYS_OFF = 1 << 30


def fold_threshold(t: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float thresholds t (for z) -> (int32 thresholds for the possibly negated dot, flip mask).

    For integer z: gamma > 0: z >= t  <=>  z >= ceil(t);  gamma < 0: z <= t  <=>  -z >= -floor(t).
    """
    t = np.asarray(t, np.float64)
    flip = gamma < 0
    thr = np.where(flip, -np.floor(t), np.ceil(t))
    thr = np.where(gamma == 0, np.where(beta >= 0, ALWAYS_ON, ALWAYS_OFF), thr)
    thr = np.clip(np.nan_to_num(thr, nan=ALWAYS_OFF), ALWAYS_ON, ALWAYS_OFF)
    return thr.astype(np.int32), flip & (gamma != 0)


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
            w = rng.integers(-2047, 2048, size=(s.cout, 3, 3, 3)).astype(np.int32)
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
            arrays[f"{s.name}.weight"] = rng.integers(-32767, 32768, size=(s.cout, s.cin)).astype(np.int32)
            arrays[f"{s.name}.bias"] = rng.integers(-20000, 20000, size=(s.cout,)).astype(np.int32)
    assert set(arrays) == set(expected_arrays(arch))
    card = {"name": name, "format": "mbunet", "kind": arch.model_kind, "architecture": arch.to_json(),
            "labels": default_labels(arch.classes), "arrays_sha256": arrays_sha256(arrays),
            "training": {"data": f"none: random bits (seed {seed})"}}
    return ModelFile(None, arch, card, arrays)

"""`cpu`: numba njit(parallel=True) kernels on packed words (cudakernels/cpu), walked by program.execute.

load() rewrites every weight array once into the layout its kernel wants, under the model's own names:
  <conv>.pos / .neg   [taps, words, Cout] (output channel innermost, so the popcount loop vectorises), as
                      uint64 when the word count is even (two little-endian uint32 words keep the bit order).
                      Both forms use one popcount per word and output channel (cudakernels/cpu/binconv.py):
                      binary layers (neg = ~pos on every valid bit; judged from the bits, not the card) keep
                      .pos and set .neg None; masked layers hold the sign plane in .pos and the nonzero plane
                      in .neg.
  <conv>.threshold    int64 bound [groups, Cout] that the kernel compares with (t + C binary, t - M masked);
                      groups = 1 (3x3) or 4 taps (2x2 transposed).
  in.0.weight         int32 [9, 3, C];   out.weight = 2*W int32 [classes, Cin];   out.bias = b - sum W.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from ..arch import Step, plan
from ..bits import is_binary, sign_and_nonzero
from ..errors import ModelFileError
from ..modelfile import ModelFile, expected_arrays
from .base import Engine, register_engine
from .program import execute


def tap_major(plane: np.ndarray, word: type) -> np.ndarray:
    """[Cout, kh, kw, K] uint32 -> [kh*kw, K', Cout] of `word` (uint64 pairs two uint32 words)."""
    cout, kh, kw, _ = plane.shape
    merged = np.ascontiguousarray(plane).view(word)
    return np.ascontiguousarray(merged.reshape(cout, kh * kw, -1).transpose(1, 2, 0))


def prepare_conv(step: Step, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray) -> dict[str, object]:
    """Kernel-ready planes and bounds of one conv3x3 / convT2x2 step (keys: pos, neg, threshold)."""
    if is_binary(pos, neg, step.cin, step.cin_parts):
        return binary_form(step, pos, neg, threshold)
    return masked_form(step, pos, neg, threshold)


def _word(planes: np.ndarray) -> type:
    return np.uint64 if planes.shape[-1] % 2 == 0 else np.uint32


def _per_output_group(step: Step, per_tap_counts: np.ndarray) -> np.ndarray:
    """[Cout, kh, kw] counts -> [groups, Cout]: summed over the window (conv3x3) or one group per tap (convT2x2)."""
    per_tap = per_tap_counts.reshape(per_tap_counts.shape[0], -1).T.astype(np.int64)
    return per_tap.sum(0, keepdims=True) if step.op == "conv3x3" else per_tap


def binary_form(step: Step, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray) -> dict[str, object]:
    """One plane (pos); bound = t + C, C = sum popc(pos) - popc(neg)."""
    c = _per_output_group(step, np.bitwise_count(pos).sum(-1, dtype=np.int64)
                          - np.bitwise_count(neg).sum(-1, dtype=np.int64))
    return {"pos": tap_major(pos, _word(pos)), "neg": None,
            "threshold": np.ascontiguousarray(threshold.astype(np.int64) + c)}


def masked_form(step: Step, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray) -> dict[str, object]:
    """Sign and nonzero planes (pipeline.bits.sign_and_nonzero, stored as pos, neg); bound = t - M,
    M = sum popc(nonzero)."""
    sign, nonzero = sign_and_nonzero(pos, neg)
    m = _per_output_group(step, np.bitwise_count(nonzero).sum(-1, dtype=np.int64))
    return {"pos": tap_major(sign, _word(pos)), "neg": tap_major(nonzero, _word(pos)),
            "threshold": np.ascontiguousarray(threshold.astype(np.int64) - m)}


def prepare_weights(steps: list[Step], arrays: dict[str, np.ndarray]) -> dict[str, object]:
    """Every array of the model in its kernel's layout, keyed like the model file."""
    out: dict[str, object] = {}
    for s in steps:
        key = lambda suffix: f"{s.name}.{suffix}"  # noqa: E731
        if s.op == "input":
            w = arrays[key("weight")]
            out[key("weight")] = np.ascontiguousarray(w.reshape(w.shape[0], 9, 3).transpose(1, 2, 0))
            out[key("threshold")] = np.ascontiguousarray(arrays[key("threshold")])
        elif s.op in ("conv3x3", "convT2x2"):
            prepared = prepare_conv(s, arrays[key("pos")], arrays[key("neg")], arrays[key("threshold")])
            out.update({key(k): v for k, v in prepared.items()})
        elif s.op == "output":
            w = arrays[key("weight")].astype(np.int64)
            out[key("weight")] = (2 * w).astype(np.int32)
            out[key("bias")] = (arrays[key("bias")] - w.sum(1)).astype(np.int32)
    return out


class CpuKernels:
    """program.KernelSet over the numba kernels; the weight arguments come from prepare_weights."""

    def __init__(self) -> None:
        from mbunet.cudakernels.cpu import binconv, fpconv, packed

        self.binconv, self.fpconv, self.packed = binconv, fpconv, packed

    def input_conv(self, frames, weight, threshold):
        return self.fpconv.input_conv(frames, weight, threshold)

    def conv3x3(self, x, pos, neg, threshold, cout):
        return self.binconv.conv3x3(x.view(pos.dtype), pos, pos if neg is None else neg, threshold, neg is not None)

    def pool(self, x):
        return self.packed.pool2x2(x)

    def conv_t2x2(self, x, pos, neg, threshold, cout):
        return self.binconv.conv_t2x2(x.view(pos.dtype), pos, pos if neg is None else neg, threshold,
                                      neg is not None)

    def concat(self, skip, up):
        return self.packed.concat(skip, up)

    def output(self, x, weight, bias):
        return self.fpconv.output_conv(x, weight, bias)

    def to_host(self, array):
        return array


@register_engine
class CpuEngine(Engine):
    name = "cpu"
    priority = 20

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "numba is not installed (pip install numba)"
        return super().unavailable(model)

    def load(self, model: ModelFile) -> None:
        for name, (dtype, shape) in expected_arrays(model.arch).items():
            a = model.arrays.get(name)
            if a is None or str(a.dtype) != dtype or a.shape != shape:
                found = "missing" if a is None else f"{a.dtype}{list(a.shape)}"
                raise ModelFileError(f"engine cpu: array {name} should be {dtype}{list(shape)}, found {found}")
        self.model = model
        self.steps = plan(model.arch)
        self.weights = prepare_weights(self.steps, model.arrays)
        self.kernels = CpuKernels()
        h, w = model.arch.input_size
        self.segment(np.zeros((1, h, w, 3), np.uint8))  # compile or load the cache now, not on the first frame

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frames = self.check_frames(frames)
        masks, logits, kept = execute(self.steps, self.weights, frames, self.kernels, keep_bits)
        if keep_logits:
            kept["out.logits"] = logits
        return masks, kept

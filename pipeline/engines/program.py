"""Walks arch.plan() with one engine's kernel set, so reference, cpu and cuda share the network logic.

A kernel set provides one method per step op (arrays in, arrays out; the arrays may live on a device):
  input_conv(frames, weight, threshold) -> packed bits        conv3x3(x, pos, neg, threshold, cout) -> packed bits
  pool(x) -> packed bits                                       conv_t2x2(x, pos, neg, threshold, cout) -> packed bits
  concat(skip, up) -> packed bits                              output(x, weight, bias) -> (logits int32, masks uint8)
and `to_host(array) -> np.ndarray` for the tensors a test asks to keep.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..arch import Step


class KernelSet(Protocol):
    def input_conv(self, frames, weight, threshold): ...
    def conv3x3(self, x, pos, neg, threshold, cout: int): ...
    def pool(self, x): ...
    def conv_t2x2(self, x, pos, neg, threshold, cout: int): ...
    def concat(self, skip, up): ...
    def output(self, x, weight, bias): ...
    def to_host(self, array) -> np.ndarray: ...


def last_uses(steps: list[Step]) -> dict[str, int]:
    """Index of the last step reading each tensor, so intermediates are freed as soon as possible."""
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for name in s.inputs:
            last[name] = i
    return last


def execute(steps: list[Step], weights: dict, frames, kernels: KernelSet,
            keep_bits: bool = False) -> tuple[object, object, dict[str, np.ndarray]]:
    """Run the network; returns (masks and logits as produced by kernels.output, host copies of every tensor when
    `keep_bits`)."""
    tensors = {"frames": frames}
    kept: dict[str, np.ndarray] = {}
    last = last_uses(steps)
    masks = logits = None
    for i, s in enumerate(steps):
        x = [tensors[n] for n in s.inputs]
        w = lambda suffix: weights[f"{s.name}.{suffix}"]  # noqa: E731  (short accessor for this step)
        if s.op == "input":
            out = kernels.input_conv(x[0], w("weight"), w("threshold"))
        elif s.op == "conv3x3":
            out = kernels.conv3x3(x[0], w("pos"), w("neg"), w("threshold"), s.cout)
        elif s.op == "pool":
            out = kernels.pool(x[0])
        elif s.op == "convT2x2":
            out = kernels.conv_t2x2(x[0], w("pos"), w("neg"), w("threshold"), s.cout)
        elif s.op == "concat":
            out = kernels.concat(x[0], x[1])
        elif s.op == "output":
            logits, masks = kernels.output(x[0], w("weight"), w("bias"))
            if keep_bits:
                kept["out.logits"] = kernels.to_host(logits)
            break
        else:
            raise ValueError(f"unknown step op {s.op!r}")
        tensors[s.name] = out
        if keep_bits:
            kept[s.name] = kernels.to_host(out)
        for name in s.inputs:
            if last.get(name) == i and name != "frames":
                del tensors[name]
    return masks, logits, kept

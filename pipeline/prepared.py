"""Each weighted layer of a quantized model as the engines run it, derived once from the model file's arrays.

A model file holds what export knows (docs/design.md, sections 4 and 7): per binary or masked conv the weight planes
pos/neg and one threshold per output channel, out bit = dot >= threshold, with BatchNorm folded in and the channels
of negative gamma already flipped by the exporter (their weights negated, the card's "flipped_channels" only records
them), so no engine handles flipped channels. A fused kernel never forms `dot` itself: it accumulates a partial sum
that differs from dot by a constant of the weights, and compares it with a bound that absorbs that constant. The
bounds, the sign/nonzero planes and the layer's form are derived here and nowhere else; the engines (cpu, cuda, bmma)
only lay them out for their kernels, in the way larq compute-engine's converter fills an OutputTransform that the
kernels merely apply.

Notation: a in {0,1} is one activation bit (value 2a - 1), the weight is b = pos - neg, the sums run over every tap
and input word one output sees (section "Groups"), and
    C = sum popc(pos) - popc(neg),   sign = pos & ~neg,   nonzero = pos ^ neg,   M = sum popc(nonzero).
Per bit (x ^ y = x + y - 2xy), the three partial sums and their bounds, dot >= t  <=>  partial >= bound:
  and     (2a-1)(p-n) = 2ap - 2an - (p-n), so
          partial = 2 sum popc(a & pos) - 2 sum popc(a & neg) = dot + C                   and_bound = t + C
          On a binary layer (neg = ~pos on the valid bits; bits above a tensor's channels are 0 in `a`) popc(a & neg)
          = popc(a) - popc(a & pos), so the cpu kernels form 4 S - 2 A from one plane against the same bound.
  xor     (a^n) - (a^p) = (2a-1)(p-n), so
          partial = sum popc(a ^ neg) - sum popc(a ^ pos) = dot                           xor_bound = t
  masked  where b != 0 the product is +1 exactly when a equals the sign bit, else -1, so
          partial = -2 sum popc((a ^ sign) & nonzero) = dot - M                           masked_bound = t - M
          pos & ~neg and pos ^ neg keep b exact where a file sets both bits (b = 0). On a binary layer nonzero is
          every valid bit, so a kernel may drop the AND (is_binary says when).
Spatial padding is the word a = 0 (all -1) and is summed like any other word, while C and M count every tap, those
outside the image included: a padding tap then adds exactly -sum b, what a -1-padded conv gives.

Groups: an output of the 3x3 conv sees all 9 taps, so C and M are one number per channel (bounds [1, Cout]); an
output (2y+i, 2x+j) of the 2x2 stride-2 transposed conv sees only tap 2i + j (bounds [4, Cout], one row per tap).

Bounds are int32, clipped: a file's threshold may lie anywhere in int32 and t + C or t - M can then leave it. Each
partial sum lies within +-sum popc(pos | neg) (< 2**20 for any width), far inside int32, so a bound clipped to the
int32 limits is still above every partial sum (never on) or below every one (always on), as the exact bound was.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arch import Step, plan
from .bits import is_binary, sign_and_nonzero
from .modelfile import ModelFile


@dataclass(frozen=True)
class InputLayer:
    """The integer input conv: out bit = sum weight * pixel >= threshold, black (0) padding."""

    weight: np.ndarray     # int32 [Cout, 3, 3, 3] (kh, kw, R G B)
    threshold: np.ndarray  # int32 [Cout]


@dataclass(frozen=True)
class ConvLayer:
    """A binary or masked conv3x3 / convT2x2 with every plane and bound an engine compares with (module docstring).

    Planes are [Cout, taps, Cin_words] uint32 (taps = 9 or 4, the file's [Cout][k][k][words] order); bounds are
    int32 [groups, Cout].
    """

    step: Step
    pos: np.ndarray
    neg: np.ndarray
    threshold: np.ndarray  # int32 [Cout], as in the file
    binary: bool           # every weight +-1 on every valid input bit (judged from the bits, not the card)
    sign: np.ndarray
    nonzero: np.ndarray
    and_bound: np.ndarray
    xor_bound: np.ndarray
    masked_bound: np.ndarray


@dataclass(frozen=True)
class OutputLayer:
    """The integer 1x1 output conv on +-1 activations: logit = sum_c weight_c * (2 a_c - 1) + bias.

    The same logit from the set bits alone: logit = base + sum_{a_c = 1} set_weight_c, set_weight = 2 * weight,
    base = bias - sum_c weight_c (int32 with wrap-around, as every engine's logits).
    """

    weight: np.ndarray      # int32 [classes, Cin]
    bias: np.ndarray        # int32 [classes]
    set_weight: np.ndarray  # int32 [classes, Cin]
    base: np.ndarray        # int32 [classes]


Layer = InputLayer | ConvLayer | OutputLayer


def prepare(model: ModelFile) -> dict[str, Layer]:
    """Every weighted step of a quantized model (arrays checked when the ModelFile was made), by step name."""
    return prepare_steps(plan(model.arch), model.arrays)


def prepare_steps(steps: list[Step], arrays: dict[str, np.ndarray]) -> dict[str, Layer]:
    """The layers of `steps` from model-file arrays named like `<step>.<array>` (steps without weights are skipped)."""
    out: dict[str, Layer] = {}
    for s in steps:
        a = lambda suffix: arrays[f"{s.name}.{suffix}"]  # noqa: E731  (short accessor for this step)
        if s.op == "input":
            out[s.name] = InputLayer(a("weight"), a("threshold"))
        elif s.op in ("conv3x3", "convT2x2"):
            out[s.name] = conv_layer(s, a("pos"), a("neg"), a("threshold"))
        elif s.op == "output":
            out[s.name] = output_layer(a("weight"), a("bias"))
    return out


def conv_layer(step: Step, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray) -> ConvLayer:
    """One conv's planes and bounds from its file planes [Cout, k, k, Cin_words] and thresholds [Cout]."""
    cout, words = pos.shape[0], pos.shape[-1]
    pos = np.ascontiguousarray(pos, np.uint32).reshape(cout, -1, words)
    neg = np.ascontiguousarray(neg, np.uint32).reshape(cout, -1, words)
    sign, nonzero = sign_and_nonzero(pos, neg)
    c = _per_group(step, np.bitwise_count(pos).sum(-1, dtype=np.int64) - np.bitwise_count(neg).sum(-1, dtype=np.int64))
    m = _per_group(step, np.bitwise_count(nonzero).sum(-1, dtype=np.int64))
    t = np.asarray(threshold).astype(np.int64)
    return ConvLayer(step, pos, neg, np.ascontiguousarray(threshold, np.int32),
                     is_binary(pos, neg, step.cin, step.cin_parts), sign, nonzero,
                     _int32(t + c), _int32(np.broadcast_to(t, c.shape)), _int32(t - m))


def output_layer(weight: np.ndarray, bias: np.ndarray) -> OutputLayer:
    w = weight.astype(np.int64)
    return OutputLayer(weight, bias, (2 * w).astype(np.int32), (bias - w.sum(1)).astype(np.int32))


def _per_group(step: Step, per_tap: np.ndarray) -> np.ndarray:
    """Counts [Cout, taps] -> [groups, Cout]: summed over the window (conv3x3), one row per tap (convT2x2)."""
    return per_tap.sum(1)[None] if step.op == "conv3x3" else np.ascontiguousarray(per_tap.T)


def _int32(bound: np.ndarray) -> np.ndarray:
    info = np.iinfo(np.int32)
    return np.ascontiguousarray(np.clip(bound, info.min, info.max).astype(np.int32))

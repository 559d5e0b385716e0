"""The two integer (non-binary) layers: the input conv on RGB pixels and the output 1x1 conv on ±1 bits.

Arrays in, arrays out:
  input_conv(frames uint8 [N, H, W, 3], weight int32 [9, 3, C] (tap, colour, out), threshold int32 [C])
      -> uint32 [N, H, W, ceil(C/32)]: bit = sum W*X >= threshold, black (0) padding, so border taps are skipped.
  output_conv(x uint32 [N, H, W, K], weight2 int32 [classes, Cin], base int32 [classes])
      -> (logits int32 [N, H, W, classes], mask uint8 [N, H, W]): logit = base + sum_{bit c set} weight2_c, the
      set-bits form of mbunet.prepared.OutputLayer (weight2 = set_weight = 2*W, base = b - sum_c W_c).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def input_conv(frames, weight, threshold):
    """One output row per parallel iteration, vectorised along the row: the three input rows are first copied
    into planar int32 lines with a zero (black) border, so every tap is a contiguous multiply-add."""
    n, h, w, _ = frames.shape
    cout = weight.shape[2]
    out = np.empty((n, h, w, (cout + 31) // 32), np.uint32)
    for row in prange(n * h):
        b, y = row // h, row % h
        lines = np.zeros((3, 3, w + 2), np.int32)  # [kh, colour, column + 1]
        for kh in range(max(0, 1 - y), min(3, h + 1 - y)):
            for col in range(w):
                for c in range(3):
                    lines[kh, c, col + 1] = frames[b, y + kh - 1, col, c]
        acc = np.empty(w, np.int32)  # |z| < 2**24 (model file contract)
        words = np.zeros((out.shape[3], w), np.int64)
        for o in range(cout):
            acc[:] = 0
            for kh in range(3):
                for kw in range(3):
                    for c in range(3):
                        wv = weight[3 * kh + kw, c, o]
                        for col in range(w):
                            acc[col] += wv * lines[kh, c, col + kw]
            for col in range(w):
                words[o // 32, col] |= np.int64(acc[col] >= threshold[o]) << (o % 32)
        for col in range(w):
            for ow in range(out.shape[3]):
                out[b, y, col, ow] = words[ow, col]
    return out


@njit(parallel=True, cache=True)
def output_conv(x, weight2, base):
    n, h, w, nk = x.shape
    classes, cin = weight2.shape
    logits = np.empty((n, h, w, classes), np.int32)
    mask = np.empty((n, h, w), np.uint8)
    for row in prange(n * h):
        b, y = row // h, row % h
        for col in range(w):
            for o in range(classes):
                total = np.int64(base[o])
                for k in range(nk):
                    word = np.int64(x[b, y, col, k])
                    for j in range(min(32, cin - 32 * k)):  # branch-free, vectorised over the bits
                        total += ((word >> j) & 1) * weight2[o, 32 * k + j]
                logits[b, y, col, o] = total
            best = 0
            for o in range(1, classes):
                if logits[b, y, col, o] > logits[b, y, col, best]:  # strict: the first maximum wins (np.argmax)
                    best = o
            mask[b, y, col] = best if classes > 1 else logits[b, y, col, 0] >= 0
    return logits, mask

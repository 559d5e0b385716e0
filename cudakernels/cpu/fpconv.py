"""The two integer (non-binary) layers: the input conv on RGB pixels and the output 1x1 conv on ±1 bits.

Arrays in, arrays out:
  input_conv(frames uint8 [N, H, W, 3], weight int32 [9, 3, C32] (tap, colour, out), threshold int32 [C32])
      -> uint32 [N, H, W, C32/32]: bit = sum W*X >= threshold, black (0) padding, so border taps are skipped.
      C32 is C rounded up to whole output words; the padding channels' threshold is above every sum (bit 0).
  output_conv(x uint32 [N, H, W, K], weight2 int32 [classes, Cin], base int32 [classes])
      -> (logits int32 [N, H, W, classes], mask uint8 [N, H, W]): logit = base + sum_{bit c set} weight2_c, the
      set-bits form of mbunet.prepared.OutputLayer (weight2 = set_weight = 2*W, base = b - sum_c W_c).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always", cache=True)
def _pixel_lines(frames, b, y):
    """The three input rows around output row y as planar int32 lines [kh, colour, column + 1], zero (black)
    outside the image, so every tap is a contiguous read."""
    h, w = frames.shape[1], frames.shape[2]
    lines = np.zeros((3, 3, w + 2), np.int32)
    for kh in range(max(0, 1 - y), min(3, h + 1 - y)):
        for col in range(w):
            for c in range(3):
                lines[kh, c, col + 1] = frames[b, y + kh - 1, col, c]
    return lines


@njit(inline="always", cache=True)
def _channel_pair_sums(acc, lines, weight, o):
    """acc[i, col] = sum W*X of output channel o + i, i < 2: the 27 taps inside the vectorised column loop, so the
    partial sums stay in registers, and each pixel load serves both channels (four channels measured 10x slower:
    the loop no longer vectorises)."""
    for col in range(acc.shape[1]):
        even = odd = np.int32(0)  # |z| < 2**28 (model file contract)
        for kh in range(3):
            for kw in range(3):
                for c in range(3):
                    pixel = lines[kh, c, col + kw]
                    even += weight[3 * kh + kw, c, o] * pixel
                    odd += weight[3 * kh + kw, c, o + 1] * pixel
        acc[0, col] = even
        acc[1, col] = odd


@njit(parallel=True, cache=True)
def input_conv(frames, weight, threshold):
    """One output row per parallel iteration, vectorised along the row, two output channels at a time."""
    n, h, w, _ = frames.shape
    words = weight.shape[2] // 32
    out = np.empty((n, h, w, words), np.uint32)
    for row in prange(n * h):
        b, y = row // h, row % h
        lines = _pixel_lines(frames, b, y)
        acc = np.empty((2, w), np.int32)
        bits = np.zeros((words, w), np.int64)
        for o in range(0, 32 * words, 2):
            _channel_pair_sums(acc, lines, weight, o)
            for col in range(w):
                bits[o // 32, col] |= np.int64(acc[0, col] >= threshold[o]) << (o % 32)
                bits[o // 32, col] |= np.int64(acc[1, col] >= threshold[o + 1]) << ((o + 1) % 32)
        for col in range(w):
            for ow in range(words):
                out[b, y, col, ow] = bits[ow, col]
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

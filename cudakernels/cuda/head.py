"""Numba-CUDA output head: 1x1 conv on ±1 inputs -> int32 logits -> uint8 class mask, on the device.

One thread = one pixel: it reads the pixel's packed words once, forms each class's logit
  logit[o] = bias[o] + sum_c weight[o, c] * (+1 if bit c else -1)
in int32 with wrap-around (the reference's exact int32 arithmetic), and writes the mask byte itself
(logit >= 0 for one class, else the first maximum), so only uint8 masks cross the bus back to the host.
All threads of a block read the same weight at the same time (a broadcast through L1), so the small
[classes, cin] table needs no shared-memory staging.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.cuda import int32, uint32, uint8

THREADS = 128


@cuda.jit(cache=True)
def output_kernel(x, weight, bias, logits, masks):
    """Packed [N,H,W,Cw] x int32 weight [classes, cin] + bias -> logits [N,H,W,classes], masks [N,H,W]."""
    n_img, h, w, _ = x.shape
    classes, cin = weight.shape
    p = cuda.grid(1)
    if p >= n_img * h * w:
        return
    n, y, xx = p // (h * w), (p // w) % h, p % w
    best = 0
    best_logit = int32(0)
    for o in range(classes):
        s = bias[o]
        for c in range(cin):
            bit = (x[n, y, xx, c // 32] >> uint32(c % 32)) & uint32(1)
            s = int32(s + weight[o, c]) if bit else int32(s - weight[o, c])
        logits[n, y, xx, o] = s
        if o == 0 or s > best_logit:  # strict: the first maximum wins
            best, best_logit = o, s
    if classes == 1:
        masks[n, y, xx] = uint8(1) if best_logit >= 0 else uint8(0)
    else:
        masks[n, y, xx] = uint8(best)


def output(x, weight, bias, stream, alloc=cuda.device_array):
    """Launch on `stream`: packed [N,H,W,Cw] -> (int32 logits [N,H,W,classes], uint8 masks [N,H,W])."""
    n, h, w, _ = x.shape
    logits = alloc((n, h, w, weight.shape[0]), np.int32, stream=stream)
    masks = alloc((n, h, w), np.uint8, stream=stream)
    output_kernel[math.ceil(n * h * w / THREADS), THREADS, stream](x, weight, bias, logits, masks)
    return logits, masks


#: kernel -> explicit signature, for ahead-of-time PTX checks (cuda.compile_ptx) of every kernel
SIGNATURES = {
    output_kernel: "void(uint32[:, :, :, ::1], int32[:, ::1], int32[::1], int32[:, :, :, ::1], uint8[:, :, ::1])",
}

"""Numba-CUDA word-level ops on packed ±1 tensors: 2x2 max-pool as OR, and channel concat.

One thread = one output uint32 word (32 channels of one pixel): no bit is ever unpacked. Consecutive threads
handle consecutive words of a pixel, then the next pixel, so both the reads and the writes are coalesced.
These ops are pure memory traffic (a few bytes per pixel); they stay separate kernels because the kernel-set
interface (pipeline/engines/program.py) runs them as steps of their own.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

THREADS = 256


@cuda.jit(cache=True)
def pool_kernel(x, out):
    """Packed [N,2h,2w,Cw] -> [N,h,w,Cw]: max of ±1 values = OR of the four words of each 2x2 block."""
    n_img, h, w, cw = out.shape
    i = cuda.grid(1)
    if i >= n_img * h * w * cw:
        return
    k = i % cw
    p = i // cw
    n, y, xx = p // (h * w), (p // w) % h, p % w
    out[n, y, xx, k] = (x[n, 2 * y, 2 * xx, k] | x[n, 2 * y, 2 * xx + 1, k]
                        | x[n, 2 * y + 1, 2 * xx, k] | x[n, 2 * y + 1, 2 * xx + 1, k])


@cuda.jit(cache=True)
def concat_kernel(skip, up, out):
    """Word-concat (skip, up) along the packed channel axis; each part keeps its own zero-padded words."""
    n_img, h, w, cw = out.shape
    c1 = skip.shape[3]
    i = cuda.grid(1)
    if i >= n_img * h * w * cw:
        return
    k = i % cw
    p = i // cw
    n, y, xx = p // (h * w), (p // w) % h, p % w
    out[n, y, xx, k] = skip[n, y, xx, k] if k < c1 else up[n, y, xx, k - c1]


def pool(x, stream, alloc=cuda.device_array):
    """Launch on `stream`: packed [N,H,W,Cw] (H, W even) -> packed [N,H/2,W/2,Cw]."""
    n, h, w, cw = x.shape
    out = alloc((n, h // 2, w // 2, cw), np.uint32, stream=stream)
    pool_kernel[math.ceil(out.size / THREADS), THREADS, stream](x, out)
    return out


def concat(skip, up, stream, alloc=cuda.device_array):
    """Launch on `stream`: packed [N,H,W,C1w] + [N,H,W,C2w] -> [N,H,W,C1w+C2w]."""
    n, h, w, c1 = skip.shape
    out = alloc((n, h, w, c1 + up.shape[3]), np.uint32, stream=stream)
    concat_kernel[math.ceil(out.size / THREADS), THREADS, stream](skip, up, out)
    return out


_PACKED = "uint32[:, :, :, ::1]"
#: kernel -> explicit signature, for ahead-of-time PTX checks (cuda.compile_ptx) of every kernel
SIGNATURES = {
    pool_kernel: f"void({_PACKED}, {_PACKED})",
    concat_kernel: f"void({_PACKED}, {_PACKED}, {_PACKED})",
}

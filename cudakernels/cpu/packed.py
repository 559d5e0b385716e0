"""Word-level ops on packed ±1 tensors (uint32 [N, H, W, K]): max-pool is an OR, concat a word copy.

Both run on one thread on purpose: they move a few thousand words a frame, so a parallel region would cost
more than the work (each region wakes the passive-waiting OpenMP threads: 0.04-0.12 ms on the 2-core VM,
against 0.004-0.1 ms for the op on one thread; measured 2-3% of a batch-1 frame of the shipped model).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def pool2x2(x):
    """2x2 stride-2 max-pool of ±1 values: +1 wins, so the OR of the four words."""
    n, h, w, nk = x.shape
    out = np.empty((n, h // 2, w // 2, nk), x.dtype)
    for b in range(n):
        for y in range(h // 2):
            for col in range(w // 2):
                for k in range(nk):
                    out[b, y, col, k] = (x[b, 2 * y, 2 * col, k] | x[b, 2 * y, 2 * col + 1, k]
                                         | x[b, 2 * y + 1, 2 * col, k] | x[b, 2 * y + 1, 2 * col + 1, k])
    return out


@njit(cache=True)
def concat(skip, up):
    """Channel concat on words: each part keeps its own zero-padded words (skip first)."""
    n, h, w, ks = skip.shape
    out = np.empty((n, h, w, ks + up.shape[3]), skip.dtype)
    out[..., :ks] = skip
    out[..., ks:] = up
    return out

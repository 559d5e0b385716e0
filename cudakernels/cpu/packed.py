"""Word-level ops on packed ±1 tensors (uint32 [N, H, W, K]): max-pool is an OR, concat a word copy."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def pool2x2(x):
    """2x2 stride-2 max-pool of ±1 values: +1 wins, so the OR of the four words."""
    n, h, w, nk = x.shape
    out = np.empty((n, h // 2, w // 2, nk), x.dtype)
    for row in prange(n * (h // 2)):
        b, y = row // (h // 2), row % (h // 2)
        for col in range(w // 2):
            for k in range(nk):
                out[b, y, col, k] = (x[b, 2 * y, 2 * col, k] | x[b, 2 * y, 2 * col + 1, k]
                                     | x[b, 2 * y + 1, 2 * col, k] | x[b, 2 * y + 1, 2 * col + 1, k])
    return out


@njit(parallel=True, cache=True)
def concat(skip, up):
    """Channel concat on words: each part keeps its own zero-padded words (skip first)."""
    n, h, w, ks = skip.shape
    ku = up.shape[3]
    out = np.empty((n, h, w, ks + ku), skip.dtype)
    for row in prange(n * h):
        b, y = row // h, row % h
        for col in range(w):
            out[b, y, col, :ks] = skip[b, y, col]
            out[b, y, col, ks:] = up[b, y, col]
    return out

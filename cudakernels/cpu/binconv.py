"""Binary / masked convolutions on packed words, fused with the threshold compare and the output bit packing.

Arrays in (laid out once by the engine from mbunet.prepared), arrays out. Shapes:
  x      uint32 or uint64 [N, H, W, K]   packed ±1 activations (K words; uint64 = two uint32 words, little-endian)
  sign   same word dtype   [T, K, Cout]  weight bit-planes, tap-major, output channel innermost (vectorised loop)
  nz     same word dtype   [T, K, Cout]  masked layers: where the weight is not 0 (binary layers: pass `sign`)
  bound  int32             [G, Cout]     per output group (1 for conv3x3, 4 for the 2x2 transposed conv)
  out    uint32            [N, H', W', ceil(Cout/32)], bits >= Cout are 0.

The partial sums and their bounds are derived in mbunet.prepared (module docstring), with S the popcount sum below
and A = sum popc(a) over the window (bits above a packed tensor's channel count are always 0, so A counts valid bits):
  binary (the "and" form on one plane):  4*S - 2*A >= ConvLayer.and_bound,     S = sum popc(a & sign)
  masked:                                -2*S      >= ConvLayer.masked_bound,  S = sum popc((a ^ sign) & nz)
One popcount per (word, output channel) in both. Taps outside the image read the padding word a = 0 like any other
word, which is what the bounds assume.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .popcount import popcount


# Accumulators of one tile of output pixels [pixels, Cout] stay in L1; consecutive updates go to different
# pixels, so the vectorised popcount-add loop is bound by throughput, not by a chain through one accumulator.
TILE_BYTES = 16384


def accumulators(pixels, cout, planes):
    """Zeroed accumulator tile [pixels, Cout]: int64 for uint64 words, int32 for uint32 words.

    Matching the popcount's lane width avoids a narrowing per add (measured: ~20% on uint64 layers, while
    int64 lanes slow the uint32 layers down by half).
    """
    return np.zeros((pixels, cout), np.int64 if planes.dtype.itemsize == 8 else np.int32)


@overload(accumulators, inline="always")
def _accumulators(pixels, cout, planes):
    dtype = np.int64 if planes.dtype.bitwidth == 64 else np.int32
    return lambda pixels, cout, planes: np.zeros((pixels, cout), dtype)


@njit(inline="always", cache=True)
def _tile_width(width, cout, planes):
    return max(1, min(width, TILE_BYTES // (planes.itemsize * cout)))


@njit(inline="always", cache=True)
def _share(a, sign, nz, tap, k, o, masked):
    """This word's share of S for output channel o: popc((a ^ sign) & nz) masked, popc(a & sign) binary."""
    if masked:
        return popcount((a ^ sign[tap, k, o]) & nz[tap, k, o])
    return popcount(a & sign[tap, k, o])


@njit(inline="always", cache=True)
def _accumulate(acc, a, sign, nz, tap, k, masked):
    """acc[o] += this word's share of S for every output channel (the hot, vectorised loop)."""
    for o in range(acc.shape[0]):
        acc[o] += _share(a, sign, nz, tap, k, o, masked)


@njit(inline="always", cache=True)
def _accumulate_row(acc, a0, a1, a2, sign, nz, tap, k, masked):
    """The three taps tap..tap+2 of one kernel row at once: a third of the accumulator loads and stores."""
    for o in range(acc.shape[0]):
        acc[o] += (_share(a0, sign, nz, tap, k, o, masked) + _share(a1, sign, nz, tap + 1, k, o, masked)
                   + _share(a2, sign, nz, tap + 2, k, o, masked))


@njit(inline="always", cache=True)
def _word_or_padding(x, b, y, col, k):
    """x[b, y, col, k], or the padding word 0 (all -1) outside the image."""
    if 0 <= y < x.shape[1] and 0 <= col < x.shape[2]:
        return x[b, y, col, k]
    return x.dtype.type(0)


@njit(inline="always", cache=True)
def _threshold_pack(acc, ones, bound, masked, out_words):
    """out_words[w] = packed bits (-2*S >= bound) or (4*S - 2*A >= bound) of 32 output channels (branch-free)."""
    cout = acc.shape[0]
    scale = -2 if masked else 4
    offset = 0 if masked else 2 * ones
    for w in range(out_words.shape[0]):
        word = 0
        for j in range(min(32, cout - 32 * w)):
            word |= np.int64(scale * np.int64(acc[32 * w + j]) - offset >= bound[32 * w + j]) << j
        out_words[w] = word


@njit(parallel=True, cache=True)
def conv3x3(x, sign, nz, bound, masked):
    """3x3 stride-1 conv, padding -1 (bit 0); one tile of an output row per parallel iteration."""
    n, h, w, nk = x.shape
    cout = sign.shape[2]
    tile = _tile_width(w, cout, sign)
    tiles = (w + tile - 1) // tile
    out = np.empty((n, h, w, (cout + 31) // 32), np.uint32)
    for job in prange(n * h * tiles):
        b, y, x0 = job // (h * tiles), (job // tiles) % h, (job % tiles) * tile
        x1 = min(w, x0 + tile)
        acc = accumulators(tile, cout, sign)
        ones = np.zeros(tile, np.int64)
        for kh in range(3):
            for k in range(nk):
                for col in range(x0, x1):
                    a0 = _word_or_padding(x, b, y + kh - 1, col - 1, k)
                    a1 = _word_or_padding(x, b, y + kh - 1, col, k)
                    a2 = _word_or_padding(x, b, y + kh - 1, col + 1, k)
                    if not masked:
                        ones[col - x0] += popcount(a0) + popcount(a1) + popcount(a2)
                    _accumulate_row(acc[col - x0], a0, a1, a2, sign, nz, 3 * kh, k, masked)
        for col in range(x0, x1):
            _threshold_pack(acc[col - x0], ones[col - x0], bound[0], masked, out[b, y, col])
    return out


@njit(parallel=True, cache=True)
def conv_t2x2(x, sign, nz, bound, masked):
    """2x2 stride-2 transposed conv: input pixel (y, x) gives the output block (2y+i, 2x+j) from tap 2i+j."""
    n, h, w, nk = x.shape
    cout = sign.shape[2]
    tile = _tile_width(w, cout, sign)
    tiles = (w + tile - 1) // tile
    out = np.empty((n, 2 * h, 2 * w, (cout + 31) // 32), np.uint32)
    for job in prange(n * h * tiles):
        b, y, x0 = job // (h * tiles), (job // tiles) % h, (job % tiles) * tile
        x1 = min(w, x0 + tile)
        acc = accumulators(tile, cout, sign)
        ones = np.zeros(tile, np.int64)
        if not masked:
            for col in range(x0, x1):
                for k in range(nk):
                    ones[col - x0] += popcount(x[b, y, col, k])
        for tap in range(4):
            acc[:] = 0
            for k in range(nk):
                for col in range(x0, x1):
                    _accumulate(acc[col - x0], x[b, y, col, k], sign, nz, tap, k, masked)
            for col in range(x0, x1):
                _threshold_pack(acc[col - x0], ones[col - x0], bound[tap], masked,
                                out[b, 2 * y + tap // 2, 2 * col + tap % 2])
    return out

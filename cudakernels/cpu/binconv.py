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

Two 3x3 kernels compute the same bits: conv3x3 (numba loops over an accumulator tile, for layers with many words
per pixel) and conv3x3_narrow (for small weight planes); the engine picks one per layer. conv3x3_narrow and conv_t2x2
work on pairs of pixels and need Cout a multiple of 32; their inner steps are explicit LLVM vector code.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

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


@njit(cache=True)
def _padded(x):
    """x with a border of padding words 0 (all -1), so the window reads need no bounds checks, and one more padding
    column on the right for the unused second pixel of a pair at an odd width."""
    n, h, w, nk = x.shape
    xp = np.zeros((n, h + 2, w + 3, nk), x.dtype)
    xp[:, 1:h + 1, 1:w + 1] = x
    return xp


@njit(inline="always", cache=True)
def _window(xp, b, y, col, k):
    """Word k of the 9 pixels under output pixel (y, col) of padded xp, tap order 3*kh + kw."""
    return (xp[b, y, col, k], xp[b, y, col + 1, k], xp[b, y, col + 2, k],
            xp[b, y + 1, col, k], xp[b, y + 1, col + 1, k], xp[b, y + 1, col + 2, k],
            xp[b, y + 2, col, k], xp[b, y + 2, col + 1, k], xp[b, y + 2, col + 2, k])


# The pair gathers are functions of their own, not inline: numba's parallel array analysis fails (IndexError) on a
# tuple of tuples built inside the prange body.
@njit(cache=True)
def _window_pair(xp, b, y, col, k):
    """Word k of the 3x3 windows (taps 0-8) of pixels col and col + 1."""
    return _window(xp, b, y, col, k), _window(xp, b, y, col + 1, k)


@njit(cache=True)
def _pixel_pair(xp, b, y, col, k):
    """Word k of pixels col and col + 1 themselves (one tap each), from padded xp."""
    return (xp[b, y + 1, col + 1, k],), (xp[b, y + 1, col + 2, k],)


@njit(inline="always", cache=True)
def _ones(words):
    """These words' share of A: their set bits."""
    ones = 0
    for a in words:
        ones += popcount(a)
    return ones


# The pair kernels' two steps are written as LLVM vector code: numba's loop over 32 output channels that stores
# into an accumulator array gets a runtime overlap check against every weight row per pixel (about as costly as the
# popcounts at one word per pixel), and its 32-step threshold pack stays scalar.
LANES = 32


def _vector_load(builder, pointer, lanes):
    """`lanes` consecutive elements from `pointer` as one LLVM vector."""
    element = pointer.type.pointee
    return builder.load(builder.bitcast(pointer, ir.VectorType(element, lanes).as_pointer()),
                        align=element.width // 8)


def _splat(builder, value, lanes):
    """A vector of `lanes` copies of a scalar."""
    vector = builder.insert_element(ir.Constant(ir.VectorType(value.type, lanes), None), value,
                                    ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), lanes), None))


def _vector_popcount(builder, vector):
    """Lane-wise popcount (llvm.ctpop on the vector: vpopcntd / vpopcntq on AVX-512 VPOPCNTDQ)."""
    popcount_type = ir.FunctionType(vector.type, [vector.type])
    name = f"llvm.ctpop.v{vector.type.count}i{vector.type.element.width}"
    return builder.call(cgutils.get_or_insert_function(builder.module, popcount_type, name), [vector])


@intrinsic
def _add_tap_shares(typingctx, acc, pixels, sign, nz, tap0, k, o0):
    """acc[p, j] += sum over i of popc((pixels[p][i] ^ sign[tap0 + i, k, o0 + j]) & nz[tap0 + i, k, o0 + j]), j < 32,
    or of popc(pixels[p][i] & sign[tap0 + i, k, o0 + j]) when nz is None (the binary form), for the P pixels p of
    `pixels` (a tuple of their tap words); acc int32 [P, 32], sign [T, K, Cout] C order with o0 + 32 <= Cout. Each
    weight row is loaded once for the P pixels, and the taps are summed in registers (word-wide lanes) before the
    one add to acc."""
    if not (isinstance(acc, types.Array) and acc.dtype == types.int32 and acc.layout == "C" and acc.ndim == 2
            and isinstance(sign, types.Array) and sign.layout == "C" and sign.ndim == 3
            and isinstance(pixels, types.UniTuple) and isinstance(pixels.dtype, types.UniTuple)
            and pixels.dtype.dtype == sign.dtype and (nz == types.none or nz == sign)
            and all(isinstance(v, types.Integer) for v in (tap0, k, o0))):
        return None
    masked, npixels, taps = nz != types.none, len(pixels), len(pixels.dtype)

    def codegen(context, builder, signature, args):
        acc_ptr = context.make_array(signature.args[0])(context, builder, args[0]).data
        planes = [context.make_array(signature.args[2])(context, builder, args[2])]
        if masked:
            planes.append(context.make_array(signature.args[3])(context, builder, args[3]))
        _, words, cout = cgutils.unpack_tuple(builder, planes[0].shape)
        tap0, k, o0 = (context.cast(builder, v, t, types.intp) for v, t in zip(args[4:], signature.args[4:]))
        first = builder.add(builder.mul(k, cout), o0)
        totals = [None] * npixels
        for i in range(taps):
            tap = builder.add(tap0, ir.Constant(tap0.type, i))
            at = builder.add(first, builder.mul(builder.mul(words, cout), tap))
            rows = [_vector_load(builder, cgutils.gep(builder, plane.data, at), LANES) for plane in planes]
            for p in range(npixels):
                a = _splat(builder, builder.extract_value(builder.extract_value(args[1], p), i), LANES)
                bits = builder.and_(builder.xor(a, rows[0]), rows[1]) if masked else builder.and_(a, rows[0])
                count = _vector_popcount(builder, bits)
                totals[p] = count if totals[p] is None else builder.add(totals[p], count)
        for p, total in enumerate(totals):
            if total.type.element.width != 32:
                total = builder.trunc(total, ir.VectorType(ir.IntType(32), LANES))
            row = builder.bitcast(cgutils.gep(builder, acc_ptr, p * LANES), total.type.as_pointer())
            builder.store(builder.add(builder.load(row, align=4), total), row, align=4)
        return context.get_dummy_value()

    return types.none(acc, pixels, sign, nz, tap0, k, o0), codegen


@intrinsic
def _ge_bits32(typingctx, acc, scale, offset, bound, start):
    """The output word: bit j set where scale * acc[j] - offset >= bound[start + j], j < 32 (int32 arrays), from
    one vector compare into a mask register (vpcmpd + kmovd on AVX-512)."""
    if not (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.int32
                for a in (acc, bound)) and all(isinstance(v, types.Integer) for v in (scale, offset, start))):
        return None

    def codegen(context, builder, signature, args):
        acc_ptr = context.make_array(signature.args[0])(context, builder, args[0]).data
        bound_ptr = context.make_array(signature.args[3])(context, builder, args[3]).data
        scale, offset = (_splat(builder, context.cast(builder, v, t, types.int32), LANES)
                         for v, t in zip(args[1:3], signature.args[1:3]))
        start = context.cast(builder, args[4], signature.args[4], types.intp)
        value = builder.sub(builder.mul(_vector_load(builder, acc_ptr, LANES), scale), offset)
        above = builder.icmp_signed(">=", value, _vector_load(builder, cgutils.gep(builder, bound_ptr, start), LANES))
        return builder.bitcast(above, ir.IntType(32))

    return types.uint32(acc, scale, offset, bound, start), codegen


@njit(inline="always", cache=True)
def _add_pair(acc, pair, sign, nz, tap0, k, o0, masked):
    """acc += the S shares of a pixel pair's words (tuples of taps from tap0); returns the pair's shares of A."""
    if masked:
        _add_tap_shares(acc, pair, sign, nz, tap0, k, o0)
        return 0, 0
    _add_tap_shares(acc, pair, sign, None, tap0, k, o0)
    return _ones(pair[0]), _ones(pair[1])


@njit(inline="always", cache=True)
def _store_pair(out, b, oy, ox, step, second, ow, acc, ones0, ones1, bound, masked):
    """Output word ow of the pixel pair in acc (-2*S >= bound masked, 4*S - 2*A >= bound binary) at out[b, oy, ox]
    and, if `second` (the pair's second pixel is in the image), at out[b, oy, ox + step]."""
    scale = -2 if masked else 4
    out[b, oy, ox, ow] = _ge_bits32(acc[0], scale, 0 if masked else 2 * ones0, bound, LANES * ow)
    if second:
        out[b, oy, ox + step, ow] = _ge_bits32(acc[1], scale, 0 if masked else 2 * ones1, bound, LANES * ow)


@njit(inline="always", cache=True)
def _whole_words(sign):
    """Output words of a plane whose Cout the engine padded to whole 32-channel words (pair kernels)."""
    if sign.shape[2] % LANES:
        raise ValueError("Cout must be padded to whole 32-channel words")
    return sign.shape[2] // LANES


@njit(parallel=True, cache=True)
def conv3x3_narrow(x, sign, nz, bound, masked):
    """conv3x3 for small weight planes, Cout a multiple of 32 (the engine pads it); same result as conv3x3.

    Two output pixels and one output word at a time: the 9 taps' shares of its 32 channels summed in registers,
    each weight row loaded once for both pixels, the word made by one vector compare. conv3x3 instead keeps an
    accumulator tile in memory and packs 32 compares per word, which costs more than its popcounts when a pixel
    has few input words; with many, this kernel's reloads of the windows and weight rows per output word cost more
    (cpu.narrow_conv picks per layer)."""
    n, h, w, nk = x.shape
    words = _whole_words(sign)
    xp = _padded(x)
    out = np.empty((n, h, w, words), np.uint32)
    for job in prange(n * h):
        b, y = job // h, job % h
        acc = np.empty((2, LANES), np.int32)
        for col in range(0, w, 2):  # pairs of pixels share each weight load
            for ow in range(words):
                acc[:] = 0
                ones0 = ones1 = 0
                for k in range(nk):
                    a0, a1 = _add_pair(acc, _window_pair(xp, b, y, col, k), sign, nz, 0, k, LANES * ow, masked)
                    ones0, ones1 = ones0 + a0, ones1 + a1
                _store_pair(out, b, y, col, 1, col + 1 < w, ow, acc, ones0, ones1, bound[0], masked)
    return out


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
    """2x2 stride-2 transposed conv, Cout a multiple of 32 (the engine pads it): input pixel (y, x) gives the output
    block (2y+i, 2x+j) from tap 2i+j. Pairs of input pixels share each weight load, as in conv3x3_narrow (measured
    2-2.5x faster than an accumulator tile with the 32-step pack on every up-CT layer of mbunet-w32)."""
    n, h, w, nk = x.shape
    words = _whole_words(sign)
    xp = _padded(x)
    out = np.empty((n, 2 * h, 2 * w, words), np.uint32)
    for job in prange(n * h):
        b, y = job // h, job % h
        acc = np.empty((2, LANES), np.int32)
        for col in range(0, w, 2):
            for tap in range(4):
                for ow in range(words):
                    acc[:] = 0
                    ones0 = ones1 = 0
                    for k in range(nk):
                        a0, a1 = _add_pair(acc, _pixel_pair(xp, b, y, col, k), sign, nz, tap, k, LANES * ow, masked)
                        ones0, ones1 = ones0 + a0, ones1 + a1
                    _store_pair(out, b, 2 * y + tap // 2, 2 * col + tap % 2, 2, col + 1 < w, ow, acc, ones0, ones1,
                                bound[tap], masked)
    return out

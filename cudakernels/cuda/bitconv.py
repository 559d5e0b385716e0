"""Numba-CUDA convolutions producing packed ±1 bits: input conv, 3x3 binary/masked conv, 2x2/s2 transposed conv.

Thread mapping (the same for all three, docs/design.md, section 4):
- One thread = one output pixel x one output *word* (32 output channels). It keeps 32 int32 accumulators in
  registers, so every input word it loads is reused 32 times from a register, and it ends by comparing the 32
  sums with their thresholds and writing one whole packed uint32 word. No warp vote (ballot) is needed to pack
  bits, which keeps every kernel runnable in Numba's CUDA simulator (it has no warp intrinsics).
- A block = 128 neighbouring pixels (flattened n, y, x) x the same output word (blockIdx.y). All its threads
  use the same 32 output channels, so the block stages those channels' weights in shared memory, a chunk of
  CHUNK input words at a time (masked layers, sign and nonzero planes: 2 x 32 x 9 x 8 words = 18 KiB; binary
  layers, sign only: 9 KiB), and every weight read in the inner loop is a shared-memory broadcast (all threads
  read the same address: no bank conflict).
- Input words come from global memory through L1: neighbouring threads read neighbouring pixels, and the
  3x3 window's nine re-reads of a word by nearby threads hit the cache.
- One POPC per channel and word, in both layer forms: the kernels accumulate -2 sum popc((a ^ sign) & nonzero)
  and compare it with the bound of mbunet.prepared's masked form (ConvLayer.masked_bound = threshold - M, derived
  there, taps outside the image included: they read a = 0 like any other word). Channel padding bits are 0 in
  every plane and in `a`. A binary layer (ConvLayer.binary) has nonzero = every valid bit, so its kernels skip the
  AND and stage only the sign plane. popc is taken on uint32 words (the simulator's popc is
  exact only there).
- The loop over the 32 channels has a constant trip count so it unrolls and the accumulators stay in registers;
  channels past `cout` (last word of a layer whose width is not a multiple of 32) are skipped by a predicate
  that is uniform across the block, and their output bits stay 0.
- The input conv is the same mapping on integers: the block stages its 32 channels' 27 int32 weights, a thread
  keeps its 27 pixel values (black padding) in registers and forms 32 exact int32 sums (|z| < 2**24).
- Device helpers are inlined at the Numba IR level (inline="always"): besides saving calls, this lets
  cuda.compile_ptx build the kernels on a machine without a GPU (a separately compiled device function asks
  the driver for the current device's compute capability).

Cost model (an estimate to check with `mbunet bench` on a GPU, not a measurement): per thread, per tap and input
word, 1 global load, then for each of the 32 channels 2 shared loads (broadcast), an XOR, an AND, a POPC and a
shift-add (binary layers: 1 shared load, no AND). POPC issues at 16 lanes/clock/SM on sm_75..sm_90, so a warp
spends about 64 clocks on POPC against about 64 (32) on shared loads: POPC and the shared loads bound it, as
they do CUDA-core binary convs; Tensor Cores (engine `bmma`) remove exactly that limit. Ways left open here, each
a measured change for later: sign/nonzero could be staged interleaved and read as one 64-bit shared load; a
thread could produce two pixels' words to halve the weight reads.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.cuda import int32, uint32

THREADS = 128       # pixels per block
CHUNK = 8           # input words of weights staged in shared memory per pass
TAPS3 = 9           # 3x3 kernel positions; the 2x2 transposed conv uses 4 of the same staging slots
GROUP = 32          # output channels per thread = bits of one output word
INPUT_TAPS = 27     # 3x3 window x RGB of the input conv
# shared/local array sizes must be plain globals (numba does not fold products of globals into a constant)
_STAGED = GROUP * TAPS3 * CHUNK
_INPUT_WEIGHTS = GROUP * INPUT_TAPS


@cuda.jit(device=True, inline="always")
def _stage_planes(ssign, snz, sign, nonzero, g, w0, kc, binary):
    """Copy planes [32 channels of word g][taps][words w0..w0+kc) into shared [o][tap][CHUNK]; 0 past cout.
    A binary layer stages the sign plane only."""
    cout, taps, _ = sign.shape
    n = GROUP * taps * kc
    for i in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        o = i // (taps * kc)
        tap = (i // kc) % taps
        k = i % kc
        ch = g * GROUP + o
        j = (o * TAPS3 + tap) * CHUNK + k
        ssign[j] = sign[ch, tap, w0 + k] if ch < cout else uint32(0)
        if not binary:
            snz[j] = nonzero[ch, tap, w0 + k] if ch < cout else uint32(0)


@cuda.jit(device=True, inline="always")
def _accumulate(acc, a, ssign, snz, tap, k, nout, binary):
    """For the 32 staged channels (one tap, one word): acc[o] -= 2 popc((a ^ sign[o]) & nonzero[o]), the dot
    minus M (see the module docstring); a binary layer's nonzero plane is every valid bit, so no AND."""
    for o in range(GROUP):
        if o < nout:
            j = (o * TAPS3 + tap) * CHUNK + k
            differ = uint32(a ^ ssign[j])  # 32-bit popc: numba widens ^ and &
            if not binary:
                differ = uint32(differ & snz[j])
            acc[o] -= 2 * cuda.popc(differ)


@cuda.jit(device=True, inline="always")
def _pack(acc, bound, g, nout):
    """Compare the 32 sums of output word g with their bounds and pack them: bit o = acc[o] >= bound[32 g + o]."""
    word = uint32(0)
    for o in range(GROUP):
        if o < nout and acc[o] >= bound[g * GROUP + o]:
            word |= uint32(1) << uint32(o)
    return word


@cuda.jit(cache=True)
def input_conv_kernel(frames, weight, threshold, out):
    """uint8 RGB [N,H,W,3] x int32 weight [C, 27] (kh, kw, c) -> packed bits z >= threshold, black padding."""
    sw = cuda.shared.array(_INPUT_WEIGHTS, int32)
    px = cuda.local.array(INPUT_TAPS, int32)
    n_img, h, w, _ = frames.shape
    cout = weight.shape[0]
    g = cuda.blockIdx.y
    nout = min(GROUP, cout - g * GROUP)
    for i in range(cuda.threadIdx.x, _INPUT_WEIGHTS, cuda.blockDim.x):
        ch = g * GROUP + i // INPUT_TAPS
        sw[i] = weight[ch, i % INPUT_TAPS] if ch < cout else 0
    cuda.syncthreads()
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if p >= n_img * h * w:
        return
    n, y, x = p // (h * w), (p // w) % h, p % w
    for t in range(INPUT_TAPS):
        iy = y + t // 9 - 1
        ix = x + (t // 3) % 3 - 1
        px[t] = int32(frames[n, iy, ix, t % 3]) if 0 <= iy < h and 0 <= ix < w else 0
    word = uint32(0)
    for o in range(GROUP):
        if o < nout:
            z = int32(0)
            for t in range(INPUT_TAPS):
                z = int32(z + sw[o * INPUT_TAPS + t] * px[t])  # truncating keeps the multiply 32-bit (|z| < 2**24)
            if z >= threshold[g * GROUP + o]:
                word |= uint32(1) << uint32(o)
    out[n, y, x, g] = word


@cuda.jit(device=True, inline="always")
def _conv3x3(x, sign, nonzero, bound, out, ssign, snz, binary):
    """Packed [N,H,W,Cw] x planes [Cout, 9, Cw] -> packed [N,H,W,Cout_w]: 3x3, stride 1, padding bit 0 (-1).
    bound [Cout] = threshold - M over the 9 taps."""
    acc = cuda.local.array(GROUP, int32)
    n_img, h, w, cw = x.shape
    g = cuda.blockIdx.y
    nout = min(GROUP, sign.shape[0] - g * GROUP)
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    active = p < n_img * h * w
    n, y, xx = p // (h * w), (p // w) % h, p % w
    for o in range(GROUP):
        acc[o] = 0
    for w0 in range(0, cw, CHUNK):
        kc = min(CHUNK, cw - w0)
        _stage_planes(ssign, snz, sign, nonzero, g, w0, kc, binary)
        cuda.syncthreads()
        if active:
            for tap in range(TAPS3):
                iy = y + tap // 3 - 1
                ix = xx + tap % 3 - 1
                inside = 0 <= iy < h and 0 <= ix < w
                for k in range(kc):
                    a = x[n, iy, ix, w0 + k] if inside else uint32(0)
                    _accumulate(acc, a, ssign, snz, tap, k, nout, binary)
        cuda.syncthreads()  # every thread reaches both barriers: the staging loop is shared work
    if active:
        out[n, y, xx, g] = _pack(acc, bound, g, nout)


@cuda.jit(device=True, inline="always")
def _conv_t2x2(x, sign, nonzero, bound, out, ssign, snz, binary):
    """Packed [N,h,w,Cw] x planes [Cout, 4, Cw] -> packed [N,2h,2w,Cout_w]; out (2y+i, 2x+j) uses tap 2i+j.
    bound [4, Cout] = threshold - M of each tap.

    One thread per *output* pixel: each reads its one input pixel and one tap, so writes stay coalesced.
    """
    acc = cuda.local.array(GROUP, int32)
    n_img, h2, w2, _ = out.shape
    cw = x.shape[3]
    g = cuda.blockIdx.y
    nout = min(GROUP, sign.shape[0] - g * GROUP)
    p = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    active = p < n_img * h2 * w2
    n, y, xx = p // (h2 * w2), (p // w2) % h2, p % w2
    tap = (y % 2) * 2 + xx % 2
    for o in range(GROUP):
        acc[o] = 0
    for w0 in range(0, cw, CHUNK):
        kc = min(CHUNK, cw - w0)
        _stage_planes(ssign, snz, sign, nonzero, g, w0, kc, binary)
        cuda.syncthreads()
        if active:
            for k in range(kc):
                _accumulate(acc, x[n, y // 2, xx // 2, w0 + k], ssign, snz, tap, k, nout, binary)
        cuda.syncthreads()
    if active:
        out[n, y, xx, g] = _pack(acc, bound[tap], g, nout)


# The kernels: each layer form of each conv, with its own shared staging (a binary layer stages half as much).
# One cuda.shared.array call per line: the simulator tells allocations apart by source line.
@cuda.jit(cache=True)
def conv3x3_kernel(x, sign, nonzero, bound, out):
    """Masked 3x3 conv (sign and nonzero planes, bounds from the engine's conv_arguments)."""
    ssign = cuda.shared.array(_STAGED, uint32)
    snz = cuda.shared.array(_STAGED, uint32)
    _conv3x3(x, sign, nonzero, bound, out, ssign, snz, False)


@cuda.jit(cache=True)
def conv3x3_binary_kernel(x, sign, bound, out):
    """Binary 3x3 conv (sign plane only, bounds from conv_arguments)."""
    ssign = cuda.shared.array(_STAGED, uint32)
    _conv3x3(x, sign, sign, bound, out, ssign, ssign, True)  # snz is never read in the binary form


@cuda.jit(cache=True)
def conv_t2x2_kernel(x, sign, nonzero, bound, out):
    """Masked 2x2 stride-2 transposed conv (sign and nonzero planes, per-tap bounds from conv_arguments)."""
    ssign = cuda.shared.array(_STAGED, uint32)
    snz = cuda.shared.array(_STAGED, uint32)
    _conv_t2x2(x, sign, nonzero, bound, out, ssign, snz, False)


@cuda.jit(cache=True)
def conv_t2x2_binary_kernel(x, sign, bound, out):
    """Binary 2x2 stride-2 transposed conv (sign plane only, per-tap bounds from conv_arguments)."""
    ssign = cuda.shared.array(_STAGED, uint32)
    _conv_t2x2(x, sign, sign, bound, out, ssign, ssign, True)  # snz is never read in the binary form


# Launchers: arrays in, a new device array out, queued on `stream`; `alloc(shape, dtype, stream=)` makes the output
# (the engine passes a buffer arena so that batches after the first allocate nothing).
def _grid(pixels: int, cout: int) -> tuple[int, int]:
    return math.ceil(pixels / THREADS), (cout + GROUP - 1) // GROUP


def input_conv(frames, weight, threshold, stream, alloc=cuda.device_array):
    """Launch on `stream`: device uint8 frames [N,H,W,3], int32 weight [C,27], threshold [C] -> packed bits."""
    n, h, w, _ = frames.shape
    cout = weight.shape[0]
    out = alloc((n, h, w, (cout + 31) // 32), np.uint32, stream=stream)
    input_conv_kernel[_grid(n * h * w, cout), THREADS, stream](frames, weight, threshold, out)
    return out


def conv3x3(x, sign, nonzero, bound, stream, alloc=cuda.device_array):
    """Launch on `stream`: packed x [N,H,W,Cw], (sign, nonzero, bound) from conv_arguments -> packed [N,H,W,Cout_w].
    nonzero None: a binary layer."""
    n, h, w, _ = x.shape
    cout = sign.shape[0]
    out = alloc((n, h, w, (cout + 31) // 32), np.uint32, stream=stream)
    grid = _grid(n * h * w, cout)
    if nonzero is None:
        conv3x3_binary_kernel[grid, THREADS, stream](x, sign, bound, out)
    else:
        conv3x3_kernel[grid, THREADS, stream](x, sign, nonzero, bound, out)
    return out


def conv_t2x2(x, sign, nonzero, bound, stream, alloc=cuda.device_array):
    """Launch on `stream`: packed x [N,h,w,Cw], (sign, nonzero, bound) from conv_arguments ->
    packed [N,2h,2w,Cout_w]. nonzero None: a binary layer."""
    n, h, w, _ = x.shape
    cout = sign.shape[0]
    out = alloc((n, 2 * h, 2 * w, (cout + 31) // 32), np.uint32, stream=stream)
    grid = _grid(4 * n * h * w, cout)
    if nonzero is None:
        conv_t2x2_binary_kernel[grid, THREADS, stream](x, sign, bound, out)
    else:
        conv_t2x2_kernel[grid, THREADS, stream](x, sign, nonzero, bound, out)
    return out


_PACKED = "uint32[:, :, :, ::1]"
_PLANES = "uint32[:, :, ::1]"
#: kernel -> explicit signature, for ahead-of-time PTX checks (cuda.compile_ptx) of every kernel
SIGNATURES = {
    input_conv_kernel: f"void(uint8[:, :, :, ::1], int32[:, ::1], int32[::1], {_PACKED})",
    conv3x3_kernel: f"void({_PACKED}, {_PLANES}, {_PLANES}, int32[::1], {_PACKED})",
    conv3x3_binary_kernel: f"void({_PACKED}, {_PLANES}, int32[::1], {_PACKED})",
    conv_t2x2_kernel: f"void({_PACKED}, {_PLANES}, {_PLANES}, int32[:, ::1], {_PACKED})",
    conv_t2x2_binary_kernel: f"void({_PACKED}, {_PLANES}, int32[:, ::1], {_PACKED})",
}

/* The CUDA-core steps around the binary convs: integer input conv, pool (OR), concat (word copy) and the
 * integer 1x1 output conv + class mask. One thread produces one whole output word (or pixel), so packing needs
 * no atomics. Semantics: the "Exact integer semantics" of the project notes, same as engines/reference.py.
 */
#pragma once
#include <stdint.h>

namespace ops {

constexpr int THREADS = 256;

/* z[o] = sum W[o][kh][kw][c] * x[y+kh-1][x+kw-1][c] (0 outside the image); bit o = z >= thr[o]. */
__global__ void input_conv(const uint8_t *x, int n, int h, int w, const int32_t *wt, const int32_t *thr,
                           int cout, int cout_words, uint32_t *out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * h * w * cout_words) return;
    const long long pix = idx / cout_words;
    const int ow = (int)(idx - pix * cout_words), rem = (int)(pix % ((long long)h * w));
    const int y = rem / w, xx = rem % w;
    int v[27];
#pragma unroll
    for (int k = 0; k < 9; ++k) {
        const int yy = y + k / 3 - 1, xk = xx + k % 3 - 1;
        const bool ok = yy >= 0 && yy < h && xk >= 0 && xk < w;
        const uint8_t *src = x + (pix + (k / 3 - 1) * w + (k % 3 - 1)) * 3;
#pragma unroll
        for (int c = 0; c < 3; ++c) v[3 * k + c] = ok ? src[c] : 0;
    }
    uint32_t word = 0;
    const int hi = min(cout, 32 * ow + 32);
    for (int o = 32 * ow; o < hi; ++o) {
        int z = 0;
#pragma unroll
        for (int k = 0; k < 27; ++k) z += wt[o * 27 + k] * v[k];
        if (z >= thr[o]) word |= 1u << (o - 32 * ow);
    }
    out[idx] = word;
}

/* out[y][x][w] = OR of the 2x2 input block (max-pool of +-1 values). */
__global__ void pool_or(const uint32_t *in, int n, int h, int w, int words, uint32_t *out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * h * w * words) return;
    const long long pix = idx / words;
    const int wd = (int)(idx - pix * words), rem = (int)(pix % ((long long)h * w));
    const long long img = pix / ((long long)h * w);
    const int y = rem / w, x = rem % w;
    const uint32_t *p = in + ((img * 2 * h + 2 * y) * 2 * w + 2 * x) * words + wd;
    out[idx] = p[0] | p[words] | p[2 * w * words] | p[2 * w * words + words];
}

/* Word concat: out pixel = (a's words0 words, b's words1 words). */
__global__ void concat_words(const uint32_t *a, int words0, const uint32_t *b, int words1, long long pixels,
                             uint32_t *out) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int words = words0 + words1;
    if (idx >= pixels * words) return;
    const long long pix = idx / words;
    const int wd = (int)(idx - pix * words);
    out[idx] = wd < words0 ? a[pix * words0 + wd] : b[pix * words1 + wd - words0];
}

/* logit[o] = sum_c W[o][c] * (+1 if bit c else -1) + bias[o]; mask = logit >= 0 (1 class) or the first argmax. */
__global__ void output_conv(const uint32_t *in, int cin, int cin_words, long long pixels, const int32_t *wt,
                            const int32_t *bias, int classes, int32_t *logits, uint8_t *mask) {
    const long long pix = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (pix >= pixels) return;
    const uint32_t *a = in + pix * cin_words;
    int best = 0, best_logit = 0;
    for (int o = 0; o < classes; ++o) {
        int z = bias[o];
        for (int c = 0; c < cin; ++c) z += (a[c >> 5] >> (c & 31) & 1u) ? wt[o * cin + c] : -wt[o * cin + c];
        logits[pix * classes + o] = z;
        if (o == 0 || z > best_logit) {
            best = o;
            best_logit = z;
        }
    }
    mask[pix] = classes == 1 ? (uint8_t)(best_logit >= 0) : (uint8_t)best;
}

}  // namespace ops

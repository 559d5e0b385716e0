/* MMA micro-benchmark: a timing loop per Tensor Core flavour, to see on a real GPU what the DESIGN notes
 * predict for Hopper (b1 XOR emulated by two AND-MMAs + LOP3 on sm_90, AND native; int8/fp16 for scale).
 * Each warp runs CHAINS independent accumulator chains so the loop measures throughput, not latency.
 */
#pragma once
#include "mma.cuh"

namespace bench {

constexpr int CHAINS = 8, THREADS = 128;

/* flavour: 0 b1 AND m16n8k256, 1 b1 XOR (m16n8k256; m8n8k128 x4 on sm_75), 2 s8 m16n8k32, 3 f16 m16n8k16. */
template <int FLAVOUR>
__device__ __forceinline__ void step(int c[4], const uint32_t a[4], const uint32_t b[2]) {
    if (FLAVOUR == 0) {
        mma_b1<FORM_AND>(c, a, b);
    } else if (FLAVOUR == 1) {
        mma_b1<FORM_XOR>(c, a, b);
    } else {
#if __CUDA_ARCH__ >= 800
        if (FLAVOUR == 2) {
            asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
        } else {  // fp16 inputs, fp32 accumulators kept in the int registers' bits
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                         : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
        }
#else
        __trap();  // the host refuses these flavours below sm_80
#endif
    }
}

template <int FLAVOUR>
__global__ void __launch_bounds__(THREADS) loop(int iters, int *sink) {
    const uint32_t seed = threadIdx.x * 2654435761u + blockIdx.x;
    const uint32_t a[4] = {seed, seed ^ 0x55555555u, seed * 3u, seed ^ 0x0f0f0f0fu};
    const uint32_t b[2] = {seed ^ 0x33333333u, seed * 7u};
    int c[CHAINS][4] = {};
    for (int i = 0; i < iters; ++i)
#pragma unroll
        for (int k = 0; k < CHAINS; ++k) step<FLAVOUR>(c[k], a, b);
    int s = 0;
#pragma unroll
    for (int k = 0; k < CHAINS; ++k) s += c[k][0] ^ c[k][1] ^ c[k][2] ^ c[k][3];
    if (s == 0x7fffffff) sink[blockIdx.x] = s;  // keeps the loop alive without a store per thread
}

/* 2*m*n*k of one step() call. */
constexpr double ops_per_step(int flavour) {
    return flavour <= 1 ? 2.0 * 16 * 8 * 256 : flavour == 2 ? 2.0 * 16 * 8 * 32 : 2.0 * 16 * 8 * 16;
}

}  // namespace bench

/* Binary Tensor Core primitives: one 16x8x256 bit-MMA step in either form, and cp.async staging.
 *
 * Fragment layout relied on (PTX ISA, "mma.m16n8k256 .b1" and "mma.m8n8k128 .b1"), per lane:
 *     g = lane >> 2 (groupID), t = lane & 3 (threadID_in_group); a K-tile of 256 bits = 8 uint32 words.
 *   A (16 rows x 8 words, row = output pixel):   a[0] = A[g][t]   a[1] = A[g+8][t]
 *                                                a[2] = A[g][t+4] a[3] = A[g+8][t+4]
 *   B (8 cols x 8 words, col = output channel):  b[0] = B[g][t]   b[1] = B[g][t+4]
 *   C/D (16 x 8 int32):                          c[0], c[1] = C[g][2t], C[g][2t+1]
 *                                                c[2], c[3] = C[g+8][2t], C[g+8][2t+1]
 * Bit i of a register is K element 32*word + i for both A and B, and a popcount does not care about the bit
 * order inside a word, so a word-for-word copy of the packed NHWC activations and of the packed weight planes
 * is a valid fragment: no bit shuffling anywhere.
 *
 * m8n8k128 (sm_75) is the same picture cut in four: for rows g (A = a[0], a[2]) and g+8 (a[1], a[3]), and the
 * two 128-bit halves of K (words t and t+4, B = b[0], b[1]); its C fragment (row g, cols 2t, 2t+1) is c[0..1]
 * of the rows-g call and c[2..3] of the rows-(g+8) call. So mma_b1() below has one interface on every arch.
 *
 * Forms (docs/design.md, section 4). The conv accumulates two products per output, one against each weight plane:
 *   AND (sm_80+):  P = popc(a & pos), N = popc(a & neg);  dot = 2 (P - N) - sum(popc(pos) - popc(neg))
 *   XOR (sm_75+):  P = popc(a ^ pos), N = popc(a ^ neg);  dot = N - P
 */
#pragma once
#include <stdint.h>

enum { FORM_AND = 1, FORM_XOR = 2 };

template <int FORM>
__device__ __forceinline__ void mma_b1(int c[4], const uint32_t a[4], const uint32_t b[2]) {
#if __CUDA_ARCH__ >= 800
    if (FORM == FORM_AND) {
        asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.xor.popc "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#elif __CUDA_ARCH__ >= 750
    if (FORM == FORM_AND) {
        __trap();  // the host never launches the AND form below sm_80 (mb_create refuses it)
    } else {
        for (int half = 0; half < 2; ++half) {          // K words t, then t+4
            for (int rows = 0; rows < 2; ++rows) {      // rows g, then g+8
                asm volatile("mma.sync.aligned.m8n8k128.row.col.s32.b1.b1.s32.xor.popc "
                             "{%0,%1}, {%2}, {%3}, {%0,%1};\n"
                             : "+r"(c[2 * rows]), "+r"(c[2 * rows + 1])
                             : "r"(a[2 * half + rows]), "r"(b[half]));
            }
        }
    }
#endif
}

/* cp.async staging (sm_80+); below sm_80 a plain load/store does the same job synchronously. Out-of-range
 * sources are zero-filled (src-size 0) so padding never reads memory. */
__device__ __forceinline__ void cp_async4(uint32_t *smem, const uint32_t *src, bool valid) {
#if __CUDA_ARCH__ >= 800
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
#else
    *smem = valid ? *src : 0u;
#endif
}

__device__ __forceinline__ void cp_async16(uint32_t *smem, const uint32_t *src) {
#if __CUDA_ARCH__ >= 800
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
#else
    *reinterpret_cast<uint4 *>(smem) = *reinterpret_cast<const uint4 *>(src);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING));
#endif
}

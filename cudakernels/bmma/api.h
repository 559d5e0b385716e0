/* C interface of the bmma library (loaded with ctypes by cudakernels/bmma/lib.py).
 *
 * Every entry point returns an int status (MB_OK = 0) and, on failure, leaves a one-line message in a
 * thread-local string read with mb_last_error(). Nothing here aborts the process: without a GPU every call
 * that needs one returns MB_ENODEV.
 *
 * The network is described by an array of mb_step (one per step of pipeline.arch.plan, same order), mirrored
 * by a ctypes.Structure in lib.py; sizeof(mb_step) is exported so the wrapper can refuse a mismatched layout.
 * Weight pointers are host pointers; mb_create re-tiles and uploads them once, so they need not outlive it.
 */
#ifndef MBUNET_BMMA_API_H
#define MBUNET_BMMA_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mb_status { MB_OK = 0, MB_EINVAL = 1, MB_ENODEV = 2, MB_ECUDA = 3, MB_EUNSUPPORTED = 4 };

enum mb_op { MB_OP_INPUT = 0, MB_OP_CONV3X3 = 1, MB_OP_POOL = 2, MB_OP_CONVT2X2 = 3, MB_OP_CONCAT = 4,
             MB_OP_OUTPUT = 5 };

/* Binary MMA flavour of the conv kernels: AND form needs sm_80+, XOR form runs on sm_75+. The host picks it, since
 * each form compares its own partial sum with its own bound (mb_step.bound). */
enum mb_form { MB_FORM_AND = 1, MB_FORM_XOR = 2 };

/* Micro-benchmark flavours (mb_mma_bench). */
enum mb_flavour { MB_BENCH_B1_AND = 0, MB_BENCH_B1_XOR = 1, MB_BENCH_S8 = 2, MB_BENCH_F16 = 3 };

typedef struct mb_step {
    int32_t op;            /* enum mb_op */
    int32_t src0;          /* index of the step producing the input; -1 = the frames */
    int32_t src1;          /* concat: index of the second part; -1 otherwise */
    int32_t height;        /* output spatial size */
    int32_t width;
    int32_t cin;           /* real (unpadded) channel counts */
    int32_t cout;
    int32_t cin_words;     /* packed input words per pixel (a concat keeps each part's padding) */
    int32_t cout_words;    /* packed output words per pixel (output step: number of classes) */
    const uint32_t *pos;   /* conv3x3/convT2x2: planes [cout][k][k][cin_words] */
    const uint32_t *neg;
    const int32_t *weight; /* input: [cout][3][3][3]; output: [classes][cin] */
    const int32_t *threshold; /* input: [cout]; output: bias [classes] */
    /* conv3x3/convT2x2: [groups][cout], groups 1 (3x3) or 4 (2x2 transposed, tap 2i + j): out bit = partial sum
     * >= bound, the AND form's partial sum 2 popc(a & pos) - 2 popc(a & neg) with pipeline.prepared's and_bound,
     * the XOR form's popc(a ^ neg) - popc(a ^ pos) with its xor_bound (the host derives both, once). */
    const int32_t *bound;
} mb_step;

typedef struct mb_net mb_net;

const char *mb_last_error(void);
size_t mb_step_size(void);
/* Compute capability and SM count of the current device (MB_ENODEV without one). */
int mb_device(int *major, int *minor, int *sm_count, char *name, int name_len);
/* Upload a network whose conv bounds are those of `form` (enum mb_form; AND is refused below sm_80). */
int mb_create(const mb_step *steps, int nsteps, int form, mb_net **out);
/* Host uint8 RGB frames [n][H][W][3] -> host uint8 masks [n][H][W]; one CUDA graph per batch size. */
int mb_run(mb_net *net, const uint8_t *frames, int n, uint8_t *masks);
/* Copy the last run's output of step `step` (packed words; the output step gives int32 logits). */
int mb_fetch(mb_net *net, int step, void *dst, size_t bytes);
int mb_destroy(mb_net *net);
/* Time `iters` MMAs per warp of one flavour; *ms = kernel time, *tops = 1e12 ops/s (2*m*n*k per MMA). */
int mb_mma_bench(int flavour, int iters, double *ms, double *tops);

#ifdef __cplusplus
}
#endif

#endif

/* The bmma library: C entry points of api.h. Weights are re-tiled and uploaded once in mb_create; mb_run
 * replays one CUDA graph per batch size (every step's kernel, no host round trip between layers).
 * One translation unit (kernels in the .cuh files) keeps the nvcc build to a single fatbin compile.
 */
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "api.h"
#include "bconv.cuh"
#include "bench.cuh"
#include "ops.cuh"

namespace {

thread_local std::string g_error;

int fail(int status, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_error = buf;
    return status;
}

bool no_device(cudaError_t e) {
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInitializationError ||
           e == cudaErrorStubLibrary || e == cudaErrorDevicesUnavailable || e == cudaErrorSystemDriverMismatch;
}

int cuda_fail(cudaError_t e, const char *what) {
    return fail(no_device(e) ? MB_ENODEV : MB_ECUDA, "%s: %s (CUDA error %d)", what, cudaGetErrorString(e), (int)e);
}

#define CU(expr)                                                    \
    do {                                                            \
        cudaError_t e_ = (expr);                                    \
        if (e_ != cudaSuccess) return cuda_fail(e_, #expr);         \
    } while (0)

int div_up(long long a, long long b) { return (int)((a + b - 1) / b); }

/* A step on the device: its re-tiled weights and its output buffer. */
struct DevStep {
    mb_step s{};
    int taps = 0, kchunks = 0, ncols = 0, cout_pad = 0;
    uint32_t *wpos = nullptr, *wneg = nullptr;
    int32_t *thr = nullptr, *weight = nullptr;  // thr: input threshold, output bias, conv bound per GEMM column
    size_t out_bytes_per_image = 0;  // packed words (or int32 logits for the output step)
    void *out = nullptr;
};

int cuda_cc(int *cc, int *sms) {
    int dev = 0, major = 0, minor = 0;
    CU(cudaGetDevice(&dev));
    CU(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CU(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (sms) CU(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev));
    *cc = major * 10 + minor;
    return MB_OK;
}

template <typename T>
int upload(T **dst, const std::vector<T> &src) {
    CU(cudaMalloc(dst, src.size() * sizeof(T)));
    CU(cudaMemcpy(*dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice));
    return MB_OK;
}

/* Planes [cout][k][k][cin_words] -> GEMM tiles [taps * kchunks][ncols][8] (zero K and N padding), and per
 * column the host's bound of the column's group: one group (3x3), or the column's tap (transposed). */
int tile_weights(DevStep &d) {
    const mb_step &s = d.s;
    const int k = s.op == MB_OP_CONV3X3 ? 3 : 2, cw = s.cin_words;
    d.taps = s.op == MB_OP_CONV3X3 ? 9 : 1;
    d.kchunks = div_up(cw, bconv::KW);
    d.cout_pad = div_up(s.cout, bconv::BN) * bconv::BN;
    d.ncols = s.op == MB_OP_CONV3X3 ? d.cout_pad : 4 * d.cout_pad;
    const size_t tile = (size_t)d.taps * d.kchunks * d.ncols * bconv::KW;
    std::vector<uint32_t> pos(tile, 0u), neg(tile, 0u);
    std::vector<int32_t> thr(d.ncols, 0);
    for (int o = 0; o < s.cout; ++o)
        for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
                const int tap = d.taps == 9 ? ky * 3 + kx : 0;
                const int group = d.taps == 9 ? 0 : ky * 2 + kx;
                const int col = group * d.cout_pad + o;
                thr[col] = s.bound[group * s.cout + o];
                for (int w = 0; w < cw; ++w) {
                    const size_t src = (((size_t)o * k + ky) * k + kx) * cw + w;
                    const size_t dst = (((size_t)tap * d.kchunks + w / bconv::KW) * d.ncols + col) * bconv::KW +
                                       w % bconv::KW;
                    pos[dst] = s.pos[src];
                    neg[dst] = s.neg[src];
                }
            }
    int rc;
    if ((rc = upload(&d.wpos, pos)) || (rc = upload(&d.wneg, neg)) || (rc = upload(&d.thr, thr))) return rc;
    return MB_OK;
}

/* Shape checks, once, naming expected vs found. */
int check_step(const std::vector<DevStep> &net, int i) {
    const mb_step &s = net[i].s;
    if (s.op < MB_OP_INPUT || s.op > MB_OP_OUTPUT) return fail(MB_EINVAL, "step %d: unknown op %d", i, s.op);
    if (s.height <= 0 || s.width <= 0 || s.cout <= 0)
        return fail(MB_EINVAL, "step %d: sizes must be positive, got %dx%d, cout %d", i, s.height, s.width, s.cout);
    if (s.op == MB_OP_INPUT) {
        if (s.src0 != -1 || i != 0) return fail(MB_EINVAL, "step %d: the input step must be first, on the frames", i);
        if (!s.weight || !s.threshold) return fail(MB_EINVAL, "step %d: input conv weights missing", i);
        return s.cout_words == (s.cout + 31) / 32 ? MB_OK
               : fail(MB_EINVAL, "step %d: cout_words %d, expected %d", i, s.cout_words, (s.cout + 31) / 32);
    }
    if (s.src0 < 0 || s.src0 >= i) return fail(MB_EINVAL, "step %d: input step %d is not an earlier step", i, s.src0);
    const mb_step &a = net[s.src0].s;
    const int a_words = a.op == MB_OP_OUTPUT ? -1 : a.cout_words;
    int want_h = a.height, want_w = a.width, want_words = a_words;
    if (s.op == MB_OP_POOL) want_h /= 2, want_w /= 2;
    if (s.op == MB_OP_CONVT2X2) want_h *= 2, want_w *= 2;
    if (s.op == MB_OP_CONCAT) {
        if (s.src1 < 0 || s.src1 >= i)
            return fail(MB_EINVAL, "step %d: concat part %d is not an earlier step", i, s.src1);
        const mb_step &b = net[s.src1].s;
        if (b.height != a.height || b.width != a.width)
            return fail(MB_EINVAL, "step %d: concat parts are %dx%d and %dx%d", i, a.height, a.width, b.height,
                        b.width);
        want_words = a_words + b.cout_words;
    }
    if (s.height != want_h || s.width != want_w)
        return fail(MB_EINVAL, "step %d: output %dx%d, expected %dx%d from its input", i, s.height, s.width,
                    want_h, want_w);
    if (s.cin_words != want_words)
        return fail(MB_EINVAL, "step %d: cin_words %d, its input holds %d words", i, s.cin_words, want_words);
    if ((s.op == MB_OP_POOL || s.op == MB_OP_CONCAT) && s.cout_words != s.cin_words)
        return fail(MB_EINVAL, "step %d: cout_words %d, expected %d (pool/concat keep the words)", i,
                    s.cout_words, s.cin_words);
    if ((s.op == MB_OP_CONV3X3 || s.op == MB_OP_CONVT2X2) &&
        (!s.pos || !s.neg || !s.bound || s.cout_words != (s.cout + 31) / 32 || s.cin > 32 * s.cin_words))
        return fail(MB_EINVAL, "step %d: conv needs pos/neg/bound and cout_words %d (got %d)", i,
                    (s.cout + 31) / 32, s.cout_words);
    if (s.op == MB_OP_OUTPUT && (!s.weight || !s.threshold || s.cin > 32 * s.cin_words || s.cout_words != s.cout))
        return fail(MB_EINVAL, "step %d: output needs weight/bias and cout_words == classes (%d, got %d)", i,
                    s.cout, s.cout_words);
    return MB_OK;
}

}  // namespace

struct mb_net {
    std::vector<DevStep> steps;
    int form = FORM_AND;
    int height = 0, width = 0;
    cudaStream_t stream = nullptr;
    int capacity = 0, last_n = 0;  // batch size the buffers hold / of the last run
    uint8_t *frames = nullptr, *masks = nullptr;
    std::map<int, cudaGraphExec_t> graphs;
};

namespace {

void free_buffers(mb_net *net) {
    for (auto &g : net->graphs) cudaGraphExecDestroy(g.second);
    net->graphs.clear();
    for (auto &d : net->steps) {
        cudaFree(d.out);
        d.out = nullptr;
    }
    cudaFree(net->frames);
    cudaFree(net->masks);
    net->frames = net->masks = nullptr;
    net->capacity = 0;
}

int ensure_capacity(mb_net *net, int n) {
    if (n <= net->capacity) return MB_OK;
    free_buffers(net);
    const size_t pixels = (size_t)n * net->height * net->width;
    CU(cudaMalloc(&net->frames, pixels * 3));
    CU(cudaMalloc(&net->masks, pixels));
    for (auto &d : net->steps) CU(cudaMalloc(&d.out, d.out_bytes_per_image * n));
    net->capacity = n;
    return MB_OK;
}

template <int FORM>
void launch_conv(const DevStep &d, const DevStep &src, int n, cudaStream_t st) {
    bconv::Params p;
    p.in = (const uint32_t *)src.out;
    p.in_words = d.s.cin_words;
    p.n = n;
    p.h = d.s.op == MB_OP_CONV3X3 ? d.s.height : d.s.height / 2;
    p.w = d.s.op == MB_OP_CONV3X3 ? d.s.width : d.s.width / 2;
    p.taps = d.taps;
    p.kchunks = d.kchunks;
    p.ncols = d.ncols;
    p.cout = d.s.cout;
    p.cout_pad = d.cout_pad;
    p.cout_words = d.s.cout_words;
    p.wpos = d.wpos;
    p.wneg = d.wneg;
    p.bound = d.thr;
    p.out = (uint32_t *)d.out;
    const dim3 grid(div_up((long long)n * p.h * p.w, bconv::BM), d.ncols / bconv::BN);
    bconv::kernel<FORM><<<grid, bconv::THREADS, 0, st>>>(p);
}

void enqueue(mb_net *net, int n) {
    cudaStream_t st = net->stream;
    const int T = ops::THREADS;
    for (size_t i = 0; i < net->steps.size(); ++i) {
        const DevStep &d = net->steps[i];
        const mb_step &s = d.s;
        const long long pixels = (long long)n * s.height * s.width;
        const DevStep *a = s.src0 >= 0 ? &net->steps[s.src0] : nullptr;
        switch (s.op) {
        case MB_OP_INPUT:
            ops::input_conv<<<div_up(pixels * s.cout_words, T), T, 0, st>>>(
                net->frames, n, s.height, s.width, d.weight, d.thr, s.cout, s.cout_words, (uint32_t *)d.out);
            break;
        case MB_OP_CONV3X3:
        case MB_OP_CONVT2X2:
            if (net->form == FORM_AND) launch_conv<FORM_AND>(d, *a, n, st);
            else launch_conv<FORM_XOR>(d, *a, n, st);
            break;
        case MB_OP_POOL:
            ops::pool_or<<<div_up(pixels * s.cout_words, T), T, 0, st>>>(
                (const uint32_t *)a->out, n, s.height, s.width, s.cout_words, (uint32_t *)d.out);
            break;
        case MB_OP_CONCAT: {
            const DevStep &b = net->steps[s.src1];
            ops::concat_words<<<div_up(pixels * s.cout_words, T), T, 0, st>>>(
                (const uint32_t *)a->out, a->s.cout_words, (const uint32_t *)b.out, b.s.cout_words, pixels,
                (uint32_t *)d.out);
            break;
        }
        case MB_OP_OUTPUT:
            ops::output_conv<<<div_up(pixels, T), T, 0, st>>>(
                (const uint32_t *)a->out, s.cin, s.cin_words, pixels, d.weight, d.thr, s.cout,
                (int32_t *)d.out, net->masks);
            break;
        }
    }
}

int graph_for(mb_net *net, int n, cudaGraphExec_t *exec) {
    auto it = net->graphs.find(n);
    if (it != net->graphs.end()) {
        *exec = it->second;
        return MB_OK;
    }
    cudaGraph_t graph;
    CU(cudaStreamBeginCapture(net->stream, cudaStreamCaptureModeThreadLocal));
    enqueue(net, n);
    CU(cudaStreamEndCapture(net->stream, &graph));
    cudaError_t e = cudaGraphInstantiate(exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGraphInstantiate");
    net->graphs[n] = *exec;
    return MB_OK;
}

int create_steps(mb_net *net, const mb_step *steps, int nsteps) {
    for (int i = 0; i < nsteps; ++i) {
        net->steps.emplace_back();
        DevStep &d = net->steps.back();
        d.s = steps[i];
        int rc = check_step(net->steps, i);
        if (rc) return rc;
        const mb_step &s = d.s;
        const size_t px = (size_t)s.height * s.width;
        d.out_bytes_per_image = px * s.cout_words * 4;  // output step: classes int32 logits, same size
        if (s.op == MB_OP_CONV3X3 || s.op == MB_OP_CONVT2X2) {
            if ((rc = tile_weights(d))) return rc;
        } else if (s.op == MB_OP_INPUT || s.op == MB_OP_OUTPUT) {
            const size_t nw = (size_t)s.cout * (s.op == MB_OP_INPUT ? 27 : s.cin);
            if ((rc = upload(&d.weight, std::vector<int32_t>(s.weight, s.weight + nw))) ||
                (rc = upload(&d.thr, std::vector<int32_t>(s.threshold, s.threshold + s.cout))))
                return rc;
        }
        d.s.pos = d.s.neg = nullptr;  // host pointers are not kept past mb_create
        d.s.weight = d.s.threshold = d.s.bound = nullptr;
    }
    if (nsteps < 2 || net->steps.back().s.op != MB_OP_OUTPUT)
        return fail(MB_EINVAL, "the last of %d steps must be the output step", nsteps);
    net->height = net->steps[0].s.height;
    net->width = net->steps[0].s.width;
    return MB_OK;
}

}  // namespace

extern "C" {

const char *mb_last_error(void) { return g_error.c_str(); }

size_t mb_step_size(void) { return sizeof(mb_step); }

int mb_device(int *major, int *minor, int *sm_count, char *name, int name_len) {
    int count = 0, dev = 0;
    CU(cudaGetDeviceCount(&count));
    if (count == 0) return fail(MB_ENODEV, "no CUDA device");
    CU(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, dev));
    *major = prop.major;
    *minor = prop.minor;
    *sm_count = prop.multiProcessorCount;
    if (name && name_len > 0) snprintf(name, name_len, "%s", prop.name);
    return MB_OK;
}

int mb_destroy(mb_net *net) {
    if (!net) return MB_OK;
    free_buffers(net);
    for (auto &d : net->steps) {
        cudaFree(d.wpos);
        cudaFree(d.wneg);
        cudaFree(d.thr);
        cudaFree(d.weight);
    }
    if (net->stream) cudaStreamDestroy(net->stream);
    delete net;
    return MB_OK;
}

int mb_create(const mb_step *steps, int nsteps, int form, mb_net **out) {
    if (!steps || !out || nsteps <= 0) return fail(MB_EINVAL, "mb_create: no steps given");
    *out = nullptr;
    int cc = 0, rc = cuda_cc(&cc, nullptr);
    if (rc) return rc;
    if (cc < 75) return fail(MB_EUNSUPPORTED, "binary Tensor Cores need sm_75 or newer, this GPU is sm_%d", cc);
    if (form == MB_FORM_AND && cc < 80)
        return fail(MB_EUNSUPPORTED, "the AND form (.and.popc) needs sm_80 or newer, this GPU is sm_%d", cc);
    if (form != MB_FORM_AND && form != MB_FORM_XOR) return fail(MB_EINVAL, "unknown form %d (1 and, 2 xor)", form);
    mb_net *net = new mb_net;
    net->form = form == MB_FORM_AND ? FORM_AND : FORM_XOR;
    cudaError_t e = cudaStreamCreateWithFlags(&net->stream, cudaStreamNonBlocking);
    rc = e != cudaSuccess ? cuda_fail(e, "cudaStreamCreate") : create_steps(net, steps, nsteps);
    if (rc) {
        mb_destroy(net);
        return rc;
    }
    *out = net;
    return MB_OK;
}

int mb_run(mb_net *net, const uint8_t *frames, int n, uint8_t *masks) {
    if (!net || !frames || !masks || n <= 0)
        return fail(MB_EINVAL, "mb_run: need a network, frames, masks and n > 0 (n = %d)", n);
    int rc = ensure_capacity(net, n);
    if (rc) return rc;
    cudaGraphExec_t exec;
    if ((rc = graph_for(net, n, &exec))) return rc;
    const size_t pixels = (size_t)n * net->height * net->width;
    CU(cudaMemcpyAsync(net->frames, frames, pixels * 3, cudaMemcpyHostToDevice, net->stream));
    CU(cudaGraphLaunch(exec, net->stream));
    CU(cudaMemcpyAsync(masks, net->masks, pixels, cudaMemcpyDeviceToHost, net->stream));
    CU(cudaStreamSynchronize(net->stream));
    net->last_n = n;
    return MB_OK;
}

int mb_fetch(mb_net *net, int step, void *dst, size_t bytes) {
    if (!net || !dst) return fail(MB_EINVAL, "mb_fetch: no network or destination");
    if (step < 0 || step >= (int)net->steps.size())
        return fail(MB_EINVAL, "mb_fetch: step %d out of range 0..%d", step, (int)net->steps.size() - 1);
    const DevStep &d = net->steps[step];
    const size_t want = d.out_bytes_per_image * net->last_n;
    if (net->last_n == 0) return fail(MB_EINVAL, "mb_fetch: run the network first");
    if (bytes != want) return fail(MB_EINVAL, "mb_fetch: step %d holds %zu bytes, buffer is %zu", step, want, bytes);
    CU(cudaMemcpy(dst, d.out, want, cudaMemcpyDeviceToHost));
    return MB_OK;
}

int mb_mma_bench(int flavour, int iters, double *ms, double *tops) {
    if (flavour < MB_BENCH_B1_AND || flavour > MB_BENCH_F16 || iters <= 0 || !ms || !tops)
        return fail(MB_EINVAL, "mb_mma_bench: flavour must be 0..3 and iters > 0 (got %d, %d)", flavour, iters);
    int cc = 0, sms = 0, rc = cuda_cc(&cc, &sms);
    if (rc) return rc;
    if (cc < 75 || (flavour != MB_BENCH_B1_XOR && cc < 80))
        return fail(MB_EUNSUPPORTED, "flavour %d needs sm_%d or newer, this GPU is sm_%d", flavour,
                    flavour == MB_BENCH_B1_XOR ? 75 : 80, cc);
    void (*kernels[4])(int, int *) = {bench::loop<0>, bench::loop<1>, bench::loop<2>, bench::loop<3>};
    const int blocks = sms * 8;
    int *sink = nullptr;
    cudaEvent_t t0, t1;
    CU(cudaMalloc(&sink, blocks * sizeof(int)));
    CU(cudaEventCreate(&t0));
    CU(cudaEventCreate(&t1));
    kernels[flavour]<<<blocks, bench::THREADS>>>(iters / 10 + 1, sink);  // warm-up (clocks, module load)
    CU(cudaEventRecord(t0));
    kernels[flavour]<<<blocks, bench::THREADS>>>(iters, sink);
    CU(cudaEventRecord(t1));
    CU(cudaEventSynchronize(t1));
    CU(cudaGetLastError());
    float elapsed = 0.f;
    CU(cudaEventElapsedTime(&elapsed, t0, t1));
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaFree(sink);
    const double warps = (double)blocks * bench::THREADS / 32;
    *ms = elapsed;
    *tops = warps * iters * bench::CHAINS * bench::ops_per_step(flavour) / (elapsed * 1e-3) / 1e12;
    return MB_OK;
}

}  // extern "C"

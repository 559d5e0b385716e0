"""The `cuda` engine and its Numba-CUDA kernels (cudakernels/cuda) against the `reference` engine, bit for bit.

Three groups, chosen by where numba.cuda points:
- TestSimulator: every kernel on tiny random layers, then the whole engine, in Numba's CUDA simulator.
- TestHost: every kernel compiles to PTX for sm_75/sm_87/sm_90 (NVVM only, no GPU), the engine says why it
  cannot run without a GPU, and `test_simulator_suite` runs TestSimulator.
- TestGpu (marked gpu): the real engine on random models and every shipped model, skipped without a GPU.

Why a child process: the simulator is chosen once, when numba.cuda is first imported (NUMBA_ENABLE_CUDASIM=1),
and other test modules in the same pytest run may already have imported the real numba.cuda. So this module
runs itself again as `python -m pytest <this file>` with the variable set; `__test__` makes the child collect
only TestSimulator and the parent only the other classes. A failure in the child fails the parent's test with
the child's report. `NUMBA_ENABLE_CUDASIM=1 pytest tests/test_engine_cuda.py` runs the simulator cases directly.
Simulator threads cost about 1 ms each, so the layers are a few pixels (odd sizes hit every padding case).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import random_frames
from mbunet.arch import LAYERS, Architecture, words
from mbunet.bits import is_binary, pack_signs, weight_planes
from mbunet.engines.reference import ReferenceKernels
from mbunet.errors import MbunetError
from mbunet.bits import ALWAYS_OFF, ALWAYS_ON
from mbunet.random_model import random_quantized_model

IN_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
REPO = Path(__file__).resolve().parent.parent
REF = ReferenceKernels()


# ----------------------------------------------------------------------------------------------- random layers
def _signs(rng, shape) -> np.ndarray:
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def _ternary(rng, shape, masked: bool) -> np.ndarray:
    w = _signs(rng, shape)
    if masked:
        w[rng.random(shape) < 0.5] = 0
    return w


def _thresholds(rng, dot: np.ndarray) -> np.ndarray:
    """Thresholds around the spread of `dot` [..., C], with exact ties and the two constants mixed in."""
    c = dot.shape[-1]
    flat = dot.reshape(-1, c)
    thr = np.round(rng.normal(0, 1, c) * (flat.std(0) + 1) + flat.mean(0)).astype(np.int64)
    tie = rng.random(c) < 0.4
    tie[0] = True
    thr[tie] = flat[rng.integers(0, len(flat), c), np.arange(c)][tie]  # dot == threshold at some pixel
    thr[1::7], thr[2::7] = ALWAYS_ON, ALWAYS_OFF
    return thr.astype(np.int32)


def _dot3x3(acts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Oracle for placing ties: ±1 activations [N,H,W,C] padded with -1, conv with ternary w [O,3,3,C]."""
    n, h, wd, _ = acts.shape
    x = np.pad(acts.astype(np.int32), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1)
    return sum(np.einsum("nyxc,oc->nyxo", x[:, i:i + h, j:j + wd], w[:, i, j].astype(np.int32))
               for i in range(3) for j in range(3))


def _input_dot(frames: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Oracle for placing ties: uint8 RGB [N,H,W,3] padded with black, conv with int weight [O,3,3,3]."""
    n, h, w, _ = frames.shape
    x = np.pad(frames.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(np.einsum("nyxc,oc->nyxo", x[:, i:i + h, j:j + w], weight[:, i, j].astype(np.int64))
               for i in range(3) for j in range(3))


def _conv_layer(pos: np.ndarray, neg: np.ndarray, thr: np.ndarray, per_tap: bool):
    """pipeline.prepared's layer of planes [Cout, k, k, Cw]: a 2x2 transposed conv when per_tap, else a 3x3 conv.
    The step's cin only decides ConvLayer.binary, which these tests set explicitly."""
    from mbunet.arch import Step
    from mbunet.prepared import conv_layer

    step = Step("convT2x2" if per_tap else "conv3x3", "c", ("x",), 32 * pos.shape[-1], pos.shape[0], 1, 1)
    return conv_layer(step, pos, neg, thr)


# ------------------------------------------------------------------------------------------ simulator cases
class TestSimulator:
    """Each kernel and the whole engine in the CUDA simulator (collected only in the child process)."""

    __test__ = IN_SIM

    def test_graph_engine_is_unavailable_in_the_simulator(self):
        from mbunet.engines.cuda import CudaGraphEngine

        model = random_quantized_model(Architecture(width=1, input_size=(16, 16)))
        assert CudaGraphEngine.unavailable(model) == "Numba's CUDA simulator cannot capture CUDA graphs"

    @staticmethod
    def kernels():
        from numba import cuda

        from mbunet.engines.cuda import CudaKernels

        return CudaKernels(cuda.stream(), cuda.device_array)

    @staticmethod
    def dev(name: str, a: np.ndarray):
        """Upload an array (`name` says which, for a failing test's reader)."""
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(a))

    @pytest.mark.parametrize("n,h,w,cout", [(1, 3, 5, 1), (2, 1, 1, 3), (1, 2, 3, 33)])
    def test_input_conv(self, n, h, w, cout):
        rng = np.random.default_rng(cout)
        frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        weight = rng.integers(-2047, 2048, (cout, 3, 3, 3)).astype(np.int32)
        z = _input_dot(frames, weight)
        thr = _thresholds(rng, z)
        k = self.kernels()
        got = k.to_host(k.input_conv(self.dev("in.0.frames", frames), self.dev("in.0.weight", weight.reshape(cout, 27)),
                                     self.dev("in.0.threshold", thr)))
        want = REF.input_conv(frames, weight, thr)
        assert got.dtype == np.uint32 and np.array_equal(got, want)
        assert 0 < np.count_nonzero(got) and (np.count_nonzero(z >= thr) < z.size)  # a real mix of bits

    def planes(self, pos, neg, thr, per_tap: bool, binary: bool):
        """A conv's device arguments in either kernel form, as the engine prepares them (conv_arguments)."""
        from numba import cuda

        from mbunet.engines.cuda import conv_arguments

        sign, nonzero, bound = conv_arguments(_conv_layer(pos, neg, thr, per_tap), binary)
        return (cuda.to_device(sign), None if nonzero is None else cuda.to_device(nonzero), cuda.to_device(bound))

    @pytest.mark.parametrize("n,h,w,cin,cout,masked", [
        (1, 1, 1, 1, 1, False),      # one pixel: every tap but the centre is padding
        (1, 3, 5, 3, 3, True),       # corners, edges and interior
        (2, 2, 3, 33, 33, False),    # two words in and out, batch indexing
        (1, 3, 2, 300, 2, True),     # 10 input words: more than one shared-memory chunk (CHUNK = 8)
        (1, 2, 1, 300, 33, False),   # the same chunking, binary
    ])
    def test_conv3x3(self, n, h, w, cin, cout, masked):
        rng = np.random.default_rng(cin * 7 + cout)
        acts = _signs(rng, (n, h, w, cin))
        weights = _ternary(rng, (cout, 3, 3, cin), masked)
        thr = _thresholds(rng, _dot3x3(acts, weights))
        x, (pos, neg) = pack_signs(acts), weight_planes(weights)
        want = REF.conv3x3(x, pos, neg, thr, cout)
        k = self.kernels()
        got = k.to_host(k.conv3x3(self.dev("x", x), *self.planes(pos, neg, thr, False, False), cout))
        assert got.shape == (n, h, w, words(cout)) and np.array_equal(got, want)
        if not masked:  # binary weights: the binary kernel (no nonzero plane) gives the same bits
            assert is_binary(pos, neg, cin)
            got = k.to_host(k.conv3x3(self.dev("x", x), *self.planes(pos, neg, thr, False, True), cout))
            assert np.array_equal(got, want)

    @pytest.mark.parametrize("n,h,w,cin,cout,masked", [
        (1, 1, 2, 1, 1, True), (2, 1, 1, 33, 3, False), (1, 2, 1, 300, 33, True),
    ])
    def test_conv_t2x2(self, n, h, w, cin, cout, masked):
        rng = np.random.default_rng(cin + cout)
        acts = _signs(rng, (n, h, w, cin))
        weights = _ternary(rng, (cout, 2, 2, cin), masked)
        dot = np.einsum("nyxc,oijc->nyxijo", acts.astype(np.int32), weights.astype(np.int32))
        thr = _thresholds(rng, dot)
        x, (pos, neg) = pack_signs(acts), weight_planes(weights)
        want = REF.conv_t2x2(x, pos, neg, thr, cout)
        k = self.kernels()
        got = k.to_host(k.conv_t2x2(self.dev("x", x), *self.planes(pos, neg, thr, True, False), cout))
        assert got.shape == (n, 2 * h, 2 * w, words(cout)) and np.array_equal(got, want)
        if not masked:  # binary weights: the binary kernel (one tap per output pixel) gives the same bits
            assert is_binary(pos, neg, cin)
            got = k.to_host(k.conv_t2x2(self.dev("x", x), *self.planes(pos, neg, thr, True, True), cout))
            assert np.array_equal(got, want)

    @pytest.mark.parametrize("masked", [True, False])
    def test_conv_on_concatenated_parts(self, masked):
        """A conv reading a word-concat of two parts whose channel counts are not multiples of 32: each part's
        padding bits lie inside the words, and the binary form must not count them."""
        rng = np.random.default_rng(5)
        parts = (3, 33)
        skip, up = _signs(rng, (1, 2, 3, parts[0])), _signs(rng, (1, 2, 3, parts[1]))
        weights = _ternary(rng, (5, 3, 3, sum(parts)), masked)
        thr = _thresholds(rng, _dot3x3(np.concatenate([skip, up], -1), weights))
        pos, neg = weight_planes(weights, parts)
        k = self.kernels()
        cat = k.concat(self.dev("s", pack_signs(skip)), self.dev("u", pack_signs(up)))
        want_cat = REF.concat(pack_signs(skip), pack_signs(up))
        assert np.array_equal(k.to_host(cat), want_cat)
        assert is_binary(pos, neg, sum(parts), parts) == (not masked)
        got = k.to_host(k.conv3x3(cat, *self.planes(pos, neg, thr, False, not masked), 5))
        assert np.array_equal(got, REF.conv3x3(want_cat, pos, neg, thr, 5))

    @pytest.mark.parametrize("op", ["conv3x3", "convT2x2"])
    def test_both_bits_set_is_a_zero_weight(self, op):
        """b = pos - neg: a file may set both planes' bits for a 0 weight; the sign/nonzero planes keep it 0."""
        rng = np.random.default_rng(11)
        taps = 3 if op == "conv3x3" else 2
        acts, weights = _signs(rng, (1, 2, 3, 40)), _ternary(rng, (6, taps, taps, 40), True)
        pos, neg = weight_planes(weights)
        both = rng.integers(0, 2**32, pos.shape, dtype=np.uint64).astype(np.uint32) & ~(pos | neg)
        both &= weight_planes(np.ones((1, 1, 1, 40), np.int8))[0]  # valid bits only
        x, conv = pack_signs(acts), (REF.conv3x3 if op == "conv3x3" else REF.conv_t2x2)
        thr = rng.integers(-6, 7, 6).astype(np.int32)
        k = self.kernels()
        launch = k.conv3x3 if op == "conv3x3" else k.conv_t2x2
        got = k.to_host(launch(self.dev("x", x), *self.planes(pos | both, neg | both, thr, op == "convT2x2", False),
                               6))
        assert np.array_equal(got, conv(x, pos, neg, thr, 6))

    @pytest.mark.parametrize("n,h,w,cw", [(1, 2, 2, 1), (2, 4, 6, 2)])
    def test_pool(self, n, h, w, cw):
        rng = np.random.default_rng(cw)
        x = rng.integers(0, 2**32, (n, h, w, cw), dtype=np.uint64).astype(np.uint32)
        x[0, 0, 0, 0] = 0  # one block with a single set bit among zeros
        x[0, 0, 1, 0] = x[0, 1, 0, 0] = x[0, 1, 1, 0] = 0
        x[0, 1, 1, 0] = 1 << 31
        k = self.kernels()
        assert np.array_equal(k.to_host(k.pool(self.dev("x", x))), REF.pool(x))

    # int32 wrap-around is the specified arithmetic; the simulator runs it on numpy scalars, which warn
    @pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
    @pytest.mark.parametrize("classes,cin", [(1, 2), (3, 33)])
    def test_output(self, classes, cin):
        rng = np.random.default_rng(classes)
        x = pack_signs(_signs(rng, (2, 3, 5, cin)))
        weight = rng.integers(-2**30, 2**30, (classes, cin)).astype(np.int32)  # sums wrap around int32
        bias = rng.integers(-1000, 1000, (classes,)).astype(np.int32)  # small: the weights decide the sign
        if classes > 1:
            weight[2], bias[2] = weight[1], bias[1]  # equal logits: the first maximum must win
        k = self.kernels()
        logits, masks = k.output(self.dev("x", x), self.dev("out.weight", weight), self.dev("out.bias", bias))
        with np.errstate(over="ignore"):
            want_logits, want_masks = REF.output(x, weight, bias)
        assert np.array_equal(k.to_host(logits), want_logits)
        assert k.to_host(masks).dtype == np.uint8 and np.array_equal(k.to_host(masks), want_masks)
        assert len(np.unique(want_masks)) > 1

    # seeds picked so that the random model's mask holds every class (checked below)
    @pytest.mark.parametrize("width,classes,batch,masked,seed", [
        (2, 1, 1, (), 1),
        (3, 3, 1, ("down-C1", "up-CT2", "up-C4"), 4),
        (4, 2, 2, LAYERS[::2], 2),
    ])
    def test_whole_engine(self, width, classes, batch, masked, seed):
        from mbunet.engines.base import create_engine

        arch = Architecture(width=width, classes=classes, input_size=(16, 16)).with_masked(set(masked))
        model = random_quantized_model(arch, seed=seed)
        engine = create_engine("cuda", model)
        assert engine.device == "cuda (simulator)"
        binary_layers = {k for k, v in engine.weights.items() if k.endswith(".neg") and v is None}
        # the bits pick the one-popcount form for every conv of every binary layer (a double conv has two)
        assert len(binary_layers) == sum(1 if layer.startswith("up-CT") else 2 for layer in LAYERS
                                         if layer not in masked)
        frames = random_frames(batch, 16, 16, seed=seed)
        masks, bits = engine.segment_bits(frames)
        want_masks, want_bits = create_engine("reference", model).segment_bits(frames)
        assert sorted(bits) == sorted(want_bits)
        for name, want in want_bits.items():
            assert bits[name].dtype == want.dtype and np.array_equal(bits[name], want), f"step {name} differs"
        assert masks.dtype == np.uint8 and np.array_equal(masks, want_masks)
        assert len(np.unique(masks)) == max(2, classes)  # every class present: the comparison has teeth
        buffers = [id(b) for b in engine.arena.buffers]
        assert np.array_equal(engine.segment(frames), masks)
        assert [id(b) for b in engine.arena.buffers] == buffers  # the second batch reused every device buffer
        if batch > 1:  # another batch size: buffers of the new shapes, same answer
            assert np.array_equal(engine.segment(frames[1:]), masks[1:])

    def test_rejects_frames_of_another_size(self):
        from mbunet.engines.base import create_engine

        engine = create_engine("cuda", random_quantized_model(Architecture(width=1, input_size=(16, 16))))
        with pytest.raises(MbunetError, match=r"expected uint8 frames \[N, 16, 16, 3\]"):
            engine.segment(np.zeros((1, 16, 32, 3), np.uint8))

    def test_layer_times_time_every_launch_and_leave_the_engine_intact(self):
        from mbunet.arch import plan
        from mbunet.engines.base import create_engine
        from mbunet.layer_times import layer_times

        model = random_quantized_model(Architecture(width=1, input_size=(16, 16)), seed=2)
        engine = create_engine("cuda", model)
        frames = random_frames(1, 16, 16, seed=2)
        profile = layer_times(engine, frames, repeats=1)
        assert [r.step for r in profile.layers] == [s.name for s in plan(model.arch)]
        assert all(r.ms > 0 for r in profile.layers)
        assert np.array_equal(engine.segment(frames), create_engine("reference", model).segment(frames))


# ----------------------------------------------------------------------------------- host: PTX, availability
def _kernels():
    from mbunet.cudakernels.cuda import kernel_signatures

    return list(kernel_signatures().items())


class TestHost:
    """Real numba.cuda, no GPU needed (collected only in the parent process)."""

    __test__ = not IN_SIM

    @pytest.mark.parametrize("cc", [(7, 5), (8, 7), (9, 0)], ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
    def test_every_kernel_compiles_to_ptx(self, cc):
        from numba import cuda

        kernels = _kernels()
        convs = {"conv3x3_kernel", "conv3x3_binary_kernel", "conv_t2x2_kernel", "conv_t2x2_binary_kernel"}
        assert {k.py_func.__name__ for k, _ in kernels} == convs | {
            "input_conv_kernel", "pool_kernel", "concat_kernel", "output_kernel"}
        shared_loads = {}
        for kernel, sig in kernels:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            name = kernel.py_func.__name__
            assert f".target sm_{cc[0]}{cc[1]}" in ptx, name
            if name in convs:
                # accumulators stay in registers (the 32-channel loop unrolled), weights come from shared memory;
                # one 32-bit POPC per channel and word in both forms (a widened operand would give popc.b64)
                assert "ld.shared" in ptx and "ld.local" not in ptx and "popc.b64" not in ptx, name
                assert ptx.count("popc.b32") == 32, name
                shared_loads[name] = ptx.count("ld.shared")
        # the masked form reads the nonzero plane as well, the binary form the sign plane alone
        for conv in ("conv3x3", "conv_t2x2"):
            assert shared_loads[f"{conv}_kernel"] == 2 * shared_loads[f"{conv}_binary_kernel"], shared_loads

    def test_bounds_keep_every_comparison(self):
        from mbunet.engines.cuda import conv_arguments

        lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        pos = np.full((5, 3, 3, 4), 0xFFFFFFFF, np.uint32)  # 9 taps x 128 channels, all +1: M = 1152
        layer = _conv_layer(pos, np.zeros_like(pos), np.array([lo, -5, 0, 7, hi], np.int32), per_tap=False)
        sign, nonzero, bound = conv_arguments(layer)
        # lo - 1152 would wrap to a large positive int32 (never on); clipped it stays always on, as lo was
        assert bound.dtype == np.int32 and bound.tolist() == [lo, -1157, -1152, -1145, hi - 1152]
        assert nonzero is None and np.array_equal(sign, pos.reshape(5, 9, 4))
        taps4 = pos[:, :2, :2]  # the 2x2 transposed conv: one bound per tap, M = 128 each
        _, nonzero, bound = conv_arguments(_conv_layer(taps4, np.zeros_like(taps4), np.zeros(5, np.int32), True),
                                           binary=False)
        assert bound.shape == (4, 5) and (bound == -128).all() and np.array_equal(nonzero, taps4.reshape(5, 4, 4))

    def test_graph_engine_says_why_it_cannot_run_here(self):
        from numba import cuda

        from mbunet.engines.cuda import CudaGraphEngine

        why = CudaGraphEngine.unavailable(random_quantized_model(Architecture(width=1, input_size=(16, 16))))
        assert (why is None) == cuda.is_available(), why

    def test_unavailable_says_why(self):
        from numba import cuda

        from mbunet.engines.cuda import CudaEngine

        why = CudaEngine.unavailable(random_quantized_model(Architecture(width=1, input_size=(16, 16))))
        if cuda.is_available():
            assert why is None
        else:
            assert why and why.startswith("no usable CUDA GPU/driver: ") and len(why.splitlines()) == 1
        fp = random_quantized_model(Architecture(width=1, input_size=(16, 16)))
        fp.arch = Architecture(width=1, input_size=(16, 16), quantized=False)
        assert "not fp" in CudaEngine.unavailable(fp)

    def test_a_compiler_failure_is_a_one_line_unavailable_error(self, monkeypatch):
        # the H200 image's numba-cuda 0.30.4 under numpy 2.5 failed like this inside kernel.compile
        import mbunet.cudakernels.cuda as kernels_module
        from mbunet.engines import cuda as engine_module

        class Broken:
            def compile(self, signature):
                raise AttributeError("module 'numpy' has no attribute 'row_stack'\nmore lines")

        monkeypatch.setattr(kernels_module, "kernel_signatures", lambda: {Broken(): "void()"})
        with pytest.raises(MbunetError) as err:
            engine_module.compile_kernels()
        assert str(err.value) == ("engine cuda: numba-cuda could not compile the kernels "
                                  "(AttributeError: module 'numpy' has no attribute 'row_stack')")

    def test_capability_floor(self):
        from mbunet.engines.cuda import capability_problem

        assert capability_problem((7, 5)) is None and capability_problem((9, 0)) is None
        assert capability_problem((5, 3)) == ("needs a GPU of compute capability sm_75 or newer "
                                              "(the CUDA 13 compiler numba-cuda uses), found sm_53")

    def test_simulator_suite(self):
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        report = proc.stdout[-6000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, report
        assert " passed" in report and "skipped" not in report, report


# ------------------------------------------------------------------------------------------------- real GPU
def _gpu_or_skip() -> None:
    from mbunet.engines.cuda import device_problem, simulator_enabled

    why = device_problem()
    if why is not None or simulator_enabled():
        pytest.skip(f"needs a CUDA GPU: {why or 'the simulator is on'}")


def _same_as_reference(model, frames) -> None:
    from mbunet.engines.base import create_engine

    engine = create_engine("cuda", model)
    masks, bits = engine.segment_bits(frames)
    want_masks, want_bits = create_engine("reference", model).segment_bits(frames)
    for name, want in want_bits.items():
        assert np.array_equal(bits[name], want), f"{model.name}: step {name} differs"
    assert np.array_equal(masks, want_masks)
    engine.close()


@pytest.mark.gpu
class TestGpu:
    __test__ = not IN_SIM

    @pytest.mark.parametrize("width,classes,size,batch,masked", [
        (8, 1, (64, 64), 2, ()),
        (16, 3, (48, 80), 1, ("up-CT1", "up-CT2", "up-CT3", "up-CT4")),   # pixel counts not multiples of 128
        (32, 2, (128, 96), 2, ("down-C1", "down-C4", "up-C2")),
    ])
    def test_random_models(self, width, classes, size, batch, masked):
        _gpu_or_skip()
        arch = Architecture(width=width, classes=classes, input_size=size).with_masked(set(masked))
        _same_as_reference(random_quantized_model(arch, seed=width), random_frames(batch, *size, seed=width))

    def test_graph_replays_match_reference_across_shapes_and_inputs(self):
        _gpu_or_skip()
        from mbunet.engines.base import create_engine

        arch = Architecture(width=20, classes=2, input_size=(48, 80)).with_masked({"down-C1", "up-CT2"})
        model = random_quantized_model(arch, seed=5)
        engine, reference = create_engine("cuda-graph", model), create_engine("reference", model)
        for batch, seed in ((2, 1), (1, 2), (2, 3), (1, 4)):  # each shape captured once, then replayed on new frames
            frames = random_frames(batch, 48, 80, seed=seed)
            assert np.array_equal(engine.segment(frames), reference.segment(frames)), (batch, seed)
        assert sorted(engine.graphs) == [(1, 48, 80, 3), (2, 48, 80, 3)]
        engine.close()

    def test_shipped_models_at_full_size(self):
        _gpu_or_skip()
        from mbunet.modelfile import load_model, shipped_names

        names = shipped_names()
        if not names:
            pytest.skip("no shipped model in weights/")
        for name in names:
            model = load_model(name)
            if model.kind in ("binary", "mbunet"):
                _same_as_reference(model, random_frames(1, *model.arch.input_size, seed=3))

"""`cuda`: the bit network on Numba-CUDA kernels (cudakernels/cuda) on CUDA cores.

Data movement per batch: the uint8 RGB frames are uploaded once, every step of arch.plan() runs as kernels
queued on one stream (no host synchronisation between layers; every tensor lives in a BufferArena reused batch
after batch, so steady-state batches allocate and free nothing), and only the uint8 masks come back.
Normalisation is folded into the input conv's integer weights, so the frames need no pre-processing kernel of
their own; the mask is formed on the device by the output head. Weights are uploaded once in load(): the sign and
nonzero planes [Cout, taps, Cin_words] and bounds of pipeline.prepared (one popcount per word and channel, see
cudakernels/cuda/bitconv.py), and every kernel is compiled for the GPU there too.

With NUMBA_ENABLE_CUDASIM=1 (set before numba.cuda is first imported) the same kernels run in Numba's CUDA
simulator on the CPU; the engine then reports itself as "cuda (simulator)". It is only useful for tests:
about 1 ms per thread.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from ..arch import plan
from ..errors import EngineUnavailable
from ..modelfile import ModelFile
from ..prepared import ConvLayer, InputLayer, OutputLayer, prepare
from .base import Engine, register_engine
from .program import execute

log = logging.getLogger(__name__)
#: oldest GPU architecture the CUDA 13 NVVM compiler (numba-cuda[cu13]) still targets
MIN_CC = (7, 5)


def simulator_enabled() -> bool:
    """True when numba.cuda is (or will be) the CPU simulator."""
    from numba.cuda.core import config

    return bool(config.ENABLE_CUDASIM)


def device_problem() -> str | None:
    """Why no CUDA device can run kernels here (None when one can, or when the simulator is on)."""
    from ..cudadriver import driver_cuda_version, extra_advice, installed_cuda_major, numba_cuda_mismatch

    if installed_cuda_major() is None:  # numba's own numba.cuda would import, but is not the numba-cuda we need
        return f"numba-cuda is not installed (a CPU-only install): {extra_advice(driver_cuda_version())}"
    try:
        from numba import cuda
    except ImportError as e:
        return f"numba-cuda is not importable ({e})"
    if simulator_enabled():
        return None
    mismatch = numba_cuda_mismatch(driver_cuda_version())
    if mismatch:
        return mismatch
    if cuda.is_available():
        return capability_problem(cuda.gpus[0].compute_capability)
    from numba.cuda.cudadrv.driver import driver

    detail = str(driver.initialization_error or "the driver reports no CUDA device").strip()
    return f"no usable CUDA GPU/driver: {detail.splitlines()[0].rstrip(':')}"


def capability_problem(cc: tuple[int, int]) -> str | None:
    """Why a GPU of compute capability `cc` cannot run the kernels (None when it can)."""
    if tuple(cc) < MIN_CC:
        return (f"needs a GPU of compute capability sm_{MIN_CC[0]}{MIN_CC[1]} or newer "
                f"(the CUDA 13 compiler numba-cuda uses), found sm_{cc[0]}{cc[1]}")
    return None


def device_description() -> str:
    """Name of what the kernels run on, for logs and reports."""
    from numba import cuda

    if simulator_enabled():
        return "cuda (simulator)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    major, minor = dev.compute_capability
    return f"cuda on {name} (sm_{major}{minor})"


def compile_kernels() -> None:
    """JIT every kernel for this GPU now, so the first batch does not pay seconds of compilation. A numba-cuda that
    does not fit the installed numpy fails here rather than at import (numba-cuda 0.30.4 under numpy 2.5, which
    dropped np.row_stack, on an H200 image): that is reported as the engine being unavailable, in one line."""
    from numba.cuda.core import config

    from mbunet.cudakernels.cuda import kernel_signatures

    # the deepest layers of a batch-1 frame are small grids by nature; numba-cuda would warn at every such launch
    config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    try:
        for kernel, signature in kernel_signatures().items():
            kernel.compile(signature)
    except Exception as e:  # numba raises many types here; the user needs the first line, not the traceback
        raise EngineUnavailable(f"engine cuda: numba-cuda could not compile the kernels ({one_line(e)})") from e


def one_line(e: BaseException) -> str:
    """'Type: first line of the message', for errors from numba-cuda and the driver, whose texts run long."""
    text = str(e)
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def host_weights(model: ModelFile) -> dict[str, np.ndarray | None]:
    """The model's layers (pipeline.prepared) in the kernels' layouts, under the model file's names: each conv's
    pos/neg/threshold become the kernels' sign plane, nonzero plane (None for a binary layer) and bound
    (conv_arguments); the input conv's weight is [C, 27]."""
    out: dict[str, np.ndarray | None] = {}
    for name, layer in prepare(model).items():
        if isinstance(layer, InputLayer):
            out[f"{name}.weight"] = layer.weight.reshape(layer.weight.shape[0], -1)  # [C, 27] in (kh, kw, c) order
            out[f"{name}.threshold"] = layer.threshold
        elif isinstance(layer, ConvLayer):
            out.update(zip((f"{name}.pos", f"{name}.neg", f"{name}.threshold"), conv_arguments(layer)))
        elif isinstance(layer, OutputLayer):
            out[f"{name}.weight"], out[f"{name}.bias"] = layer.weight, layer.bias
    return {k: v if v is None else np.ascontiguousarray(v) for k, v in out.items()}


def conv_arguments(layer: ConvLayer, binary: bool | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The conv kernels' (sign [Cout, taps, Cw], nonzero or None, bound) of one layer: both forms compare
    -2 sum popc((a ^ sign) & nonzero) with ConvLayer.masked_bound, [Cout] for the 3x3 conv, [4, Cout] for the
    transposed conv. A binary layer's nonzero plane is every valid bit, which its kernels do not read: None, unless
    `binary` asks for a form (tests run a binary layer in both)."""
    binary = layer.binary if binary is None else binary
    bound = layer.masked_bound[0] if layer.step.op == "conv3x3" else layer.masked_bound
    return layer.sign, None if binary else layer.nonzero, bound


class BufferArena:
    """Device buffers reused batch after batch, so that a steady stream of frames allocates nothing.

    A batch of a given shape asks for the same sequence of (shape, dtype) every time, so the i-th request of a
    batch gets the i-th buffer of the previous batch (a new one where the shape differs). Within a batch every
    request gets its own buffer, and a batch's results are copied to the host before the next batch starts,
    so no buffer is overwritten while still read. Costs the sum of one batch's tensors (29 MiB per 512x512 frame
    at width 64, one class).
    """

    def __init__(self) -> None:
        self.buffers: list = []
        self.next = 0

    def start_batch(self) -> None:
        self.next = 0

    def __call__(self, shape: tuple[int, ...], dtype, stream=0):
        from numba import cuda

        i, self.next = self.next, self.next + 1
        if i < len(self.buffers) and self.buffers[i].shape == tuple(shape) and self.buffers[i].dtype == dtype:
            return self.buffers[i]
        buf = cuda.device_array(shape, dtype, stream=stream)
        self.buffers[i:i + 1] = [buf]
        return buf


class CudaKernels:
    """Kernel set of device launches on one stream (interface: pipeline/engines/program.py).

    The `cout` arguments of the interface are implied by the planes' first axis here. A conv's pos/neg/threshold
    are conv_arguments' sign plane, nonzero plane and bound; a `neg` of None is a binary layer, whose kernels skip
    the nonzero plane.
    """

    def __init__(self, stream, alloc) -> None:
        from mbunet.cudakernels.cuda import bitconv, head, packed

        self.stream, self.alloc = stream, alloc
        self._bitconv, self._packed, self._head = bitconv, packed, head

    def input_conv(self, frames, weight, threshold):
        return self._bitconv.input_conv(frames, weight, threshold, self.stream, self.alloc)

    def conv3x3(self, x, pos, neg, threshold, cout: int):
        return self._bitconv.conv3x3(x, pos, neg, threshold, self.stream, self.alloc)

    def pool(self, x):
        return self._packed.pool(x, self.stream, self.alloc)

    def conv_t2x2(self, x, pos, neg, threshold, cout: int):
        return self._bitconv.conv_t2x2(x, pos, neg, threshold, self.stream, self.alloc)

    def concat(self, skip, up):
        return self._packed.concat(skip, up, self.stream, self.alloc)

    def output(self, x, weight, bias):
        return self._head.output(x, weight, bias, self.stream, self.alloc)

    def to_host(self, array) -> np.ndarray:
        host = array.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return host


@register_engine
class CudaEngine(Engine):
    name = "cuda"
    priority = 30

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        return super().unavailable(model) or device_problem()

    def load(self, model: ModelFile) -> None:
        from numba import cuda

        weights = host_weights(model)
        if not simulator_enabled():
            compile_kernels()
        self.device = device_description()
        self.stream = cuda.stream()
        self.weights = {k: None if v is None else cuda.to_device(v, stream=self.stream) for k, v in weights.items()}
        self.arena = BufferArena()
        self.kernels = CudaKernels(self.stream, self.arena)
        self.steps = plan(model.arch)
        self.stream.synchronize()
        self.model = model
        if simulator_enabled():
            log.warning("engine cuda runs in the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): for tests only, ~1 ms/thread")
        else:
            log.info("engine cuda: model %s on %s", model.name, self.device)

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frames = self.check_frames(frames)
        _, d_masks, d_logits, kept = self._enqueue(frames, self.kernels, self.arena, keep_bits)
        return self._to_host(d_masks, d_logits if keep_logits else None, kept), kept

    def _to_host(self, d_masks, d_logits, kept: dict) -> np.ndarray:
        """Copy the masks (and the logits, when given, into kept["out.logits"]) to the host and wait for them."""
        masks = d_masks.copy_to_host(stream=self.stream)
        if d_logits is not None:
            kept["out.logits"] = d_logits.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return masks

    def _enqueue(self, frames: np.ndarray, kernels: CudaKernels, arena: BufferArena, keep_bits: bool = False,
                 upload: bool = True):
        """Queue one batch with `kernels`: the frames into the arena's first buffer (uploaded unless `upload` is
        False), then every step. Returns (device frames, device masks, device logits, kept host copies)."""
        arena.start_batch()
        d_frames = arena(frames.shape, np.uint8, stream=self.stream)
        if upload:
            d_frames.copy_to_device(frames, stream=self.stream)
        d_masks, d_logits, kept = execute(self.steps, self.weights, d_frames, kernels, keep_bits)
        return d_frames, d_masks, d_logits, kept

    def sync(self) -> None:
        self.stream.synchronize()

    def run_layers(self, frames: np.ndarray, wrap) -> tuple[list, str | None]:
        # the kernels launched one by one, also for cuda-graph (a graph replays these same kernels)
        self._enqueue(self.check_frames(frames), wrap(self.kernels), self.arena)
        self.sync()
        return self.steps, None

    def close(self) -> None:
        self.weights, self.arena.buffers = {}, []
        self.model = None


class CapturedBatch(NamedTuple):
    """One batch shape's graph and the device buffers it addresses (the arena keeps them all alive)."""

    graph: object
    frames: object
    masks: object
    logits: object
    arena: BufferArena


@register_engine
class CudaGraphEngine(CudaEngine):
    """`cuda-graph`: the `cuda` engine's kernels captured once per batch shape into a CUDA graph, then replayed.

    On an H200 at batch 1 the `cuda` engine spent about 3 ms a frame launching some thirty kernels from Python
    (numba-cuda types and packs every argument of every launch), as long as torch-fp16 took for its whole frame;
    replaying a graph is one launch. Each batch shape gets its own BufferArena, whose buffers the graph's kernels
    address for as long as the engine lives: frames are copied into the captured input buffer before a replay and
    the masks out of the captured output after it. Asked for the per-layer bits (tests), it runs as `cuda`.
    Priority just below `cuda` until a GPU run has measured it; the simulator cannot capture graphs.
    """

    name = "cuda-graph"
    priority = 29

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        why = super().unavailable(model)
        if why is None and simulator_enabled():
            return "Numba's CUDA simulator cannot capture CUDA graphs"
        return why

    def load(self, model: ModelFile) -> None:
        from cuda.core import Stream

        super().load(model)
        self.core_stream = Stream.from_handle(int(self.stream.handle))  # the same stream, as cuda.core sees it
        self.graphs: dict[tuple[int, ...], CapturedBatch] = {}  # by frames shape

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if keep_bits:  # copies of every layer to the host cannot be part of a graph
            return super().segment_bits(frames, keep_bits, keep_logits)
        frames = self.check_frames(frames)
        captured = self.graphs.get(frames.shape) or self._capture(frames)
        captured.frames.copy_to_device(frames, stream=self.stream)
        captured.graph.launch(self.core_stream)
        kept: dict[str, np.ndarray] = {}
        return self._to_host(captured.masks, captured.logits if keep_logits else None, kept), kept

    def _capture(self, frames: np.ndarray) -> CapturedBatch:
        arena = BufferArena()
        self._enqueue(frames, CudaKernels(self.stream, arena), arena)  # allocates this shape's buffers, uncaptured
        self.stream.synchronize()
        try:
            builder = self.core_stream.create_graph_builder().begin_building()
            d_frames, d_masks, d_logits, _ = self._enqueue(frames, CudaKernels(builder, arena), arena, upload=False)
            graph = builder.end_building().complete()
        except Exception as e:  # cuda.core and the driver raise many types; the user needs the first line
            raise EngineUnavailable(f"engine cuda-graph: capturing the kernels into a CUDA graph failed "
                                    f"({one_line(e)})") from e
        self.graphs[frames.shape] = CapturedBatch(graph, d_frames, d_masks, d_logits, arena)
        return self.graphs[frames.shape]

    def close(self) -> None:
        for captured in self.graphs.values():
            captured.graph.close()
        self.graphs = {}
        super().close()

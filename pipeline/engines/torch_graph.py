"""`torch-fp16-graph`: the `torch-fp16` network captured once per batch shape into a CUDA graph, then replayed.

Why it exists: on an H200 at batch 1 eager `torch-fp16` spent about 2.9 ms a frame, most of it launching some
thirty kernels one by one from Python, so "bmma is 10x torch-fp16" partly measured PyTorch's launch path. A
replayed graph is one launch; this is the fp16 baseline without that overhead, still free of TensorRT.

How: torch.cuda.graphs, as PyTorch's CUDA-graph notes prescribe: a static uint8 input buffer on the device per
batch shape, warm-up passes on a side stream (cuDNN picks and caches its algorithms there, and no allocation of
the warm-up lands in the capture), one pass recorded with torch.cuda.graph, and then per call: copy the frames
into the static input, replay, read the masks and logits the recorded pass wrote into its static outputs. cuDNN
autotuning (cudnn.benchmark) is on for the warm-up and the capture, so each graph holds the fastest convolution
algorithms cuDNN measured for its shape; the process-wide setting is restored afterwards.

Why not torch.compile(mode="reduce-overhead"): it would also fuse the padding and threshold element-wise ops
(a different, not a stronger launch-free baseline of the same kernels), but it needs Triton, which PyTorch wheels
for Jetson (aarch64, JetPack) often lack, and Inductor compiles for tens of seconds per batch shape, where a
capture takes one warm-up and one recorded pass. The graphs run the very cuDNN kernels `torch-fp16` runs, so the
two rows of a bench differ by the launch overhead and the autotuned algorithms alone.

Priority just below `torch-fp16` until a GPU run has measured it (as `cuda-graph` below `cuda`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import EngineUnavailable
from ..modelfile import ModelFile
from .base import register_engine
from .torch_engines import TorchFP16, _torch, cudnn_setting

#: untimed passes on the side stream before a capture (PyTorch's notes use a few; cuDNN autotunes in the first)
CAPTURE_WARMUP = 3


class CapturedShape(NamedTuple):
    """One batch shape's graph and the static tensors it reads and writes (alive as long as the graph)."""

    graph: object
    pixels: object  # uint8 [N, H, W, 3] on the device: the frames are copied in before each replay
    masks: object
    logits: object


def cudnn_autotuned():
    """cudnn.benchmark on for the duration (it measures the algorithms for each new shape), then as it was."""
    return cudnn_setting("benchmark", True)


@register_engine
class TorchFP16Graph(TorchFP16):
    name = "torch-fp16-graph"
    priority = 9

    def load(self, model: ModelFile) -> None:
        super().load(model)
        self.graphs: dict[tuple[int, ...], CapturedShape] = {}  # by frames shape
        self.detail = "torch.cuda.graphs, one graph per batch shape, cuDNN autotuned at capture"

    def _run(self, frames: np.ndarray):
        torch = _torch()
        captured = self.graphs.get(frames.shape) or self._capture(frames)
        captured.pixels.copy_(torch.from_numpy(frames))
        captured.graph.replay()
        return captured.masks, captured.logits

    def _capture(self, frames: np.ndarray) -> CapturedShape:
        torch = _torch()
        try:
            with cudnn_autotuned():
                pixels = torch.from_numpy(frames).to(self.device)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(CAPTURE_WARMUP):
                        self._infer(pixels)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    masks, logits = self._infer(pixels)
        except RuntimeError as e:  # torch reports capture and CUDA errors as RuntimeError; the first line says why
            raise EngineUnavailable(f"engine {self.name}: capturing the network into a CUDA graph failed "
                                    f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
        self.graphs[frames.shape] = CapturedShape(graph, pixels, masks, logits)
        return self.graphs[frames.shape]

    def close(self) -> None:
        for captured in self.graphs.values():
            captured.graph.reset()
        self.graphs = {}
        super().close()


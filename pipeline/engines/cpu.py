"""`cpu`: numba njit(parallel=True) kernels on packed words (cudakernels/cpu), walked by program.execute.

load() lays every layer of pipeline.prepared out once the way its kernel wants, under the model's own names:
  <conv>.pos / .neg   [taps, words, Cout] (output channel innermost, so the popcount loop vectorises), as
                      uint64 when the word count is even (two little-endian uint32 words keep the bit order).
                      Both forms use one popcount per word and output channel (cudakernels/cpu/binconv.py):
                      binary layers (ConvLayer.binary) hold the sign plane in .pos and set .neg None, and compare
                      4 S - 2 A with the layer's and_bound; masked layers hold the sign plane in .pos and the
                      nonzero plane in .neg, and compare -2 S with the masked_bound.
  <conv>.threshold    that bound, int32 [groups, Cout]; groups = 1 (3x3) or 4 taps (2x2 transposed).
                      Cout is padded to whole 32-channel output words (zero weights, a bound above every sum: bit
                      0) for the pair kernels, conv_t2x2 and conv3x3_narrow (narrow_conv picks it per layer).
  in.0.weight         int32 [9, 3, C32], in.0.threshold [C32]: C padded to whole output words (input_arguments);
                      out.weight, out.bias = OutputLayer.set_weight, .base (the set-bits form).
Each call's parallel regions run on the thread count that cpu_threads.ThreadTuner measures fastest under the load
of the moment (other processes on the same cores); the results do not depend on it.
"""
from __future__ import annotations

import importlib.util
import time

import numpy as np

from ..arch import plan
from ..modelfile import ModelFile
from ..prepared import ConvLayer, InputLayer, Layer, OutputLayer, prepare
from .base import Engine, register_engine
from .cpu_threads import ThreadTuner, candidate_counts, usable_cores
from .program import execute


def tap_major(plane: np.ndarray, word: type) -> np.ndarray:
    """[Cout, taps, K] uint32 -> [taps, K', Cout] of `word` (uint64 pairs two uint32 words)."""
    return np.ascontiguousarray(np.ascontiguousarray(plane).view(word).transpose(1, 2, 0))


# The bound of a padding channel: above every sum a kernel compares, so its output bit is always 0.
PADDING_BOUND = np.iinfo(np.int32).max


def whole_words(array: np.ndarray, fill: int = 0) -> np.ndarray:
    """The last (output-channel) axis padded with `fill` up to whole 32-channel output words: zero weights, or
    PADDING_BOUND for thresholds, so the kernels run whole words (and channel pairs) without a tail."""
    pad = [(0, 0)] * (array.ndim - 1) + [(0, -array.shape[-1] % 32)]
    return np.ascontiguousarray(np.pad(array, pad, constant_values=fill))


def input_arguments(layer: InputLayer) -> tuple[np.ndarray, np.ndarray]:
    """The input conv's (weight [9, 3, C32], threshold [C32]), C padded to whole output words."""
    weight = layer.weight.reshape(layer.weight.shape[0], 9, 3).transpose(1, 2, 0)
    return whole_words(weight), whole_words(layer.threshold, PADDING_BOUND)


def conv_arguments(layer: ConvLayer, masked: bool | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The kernels' (sign plane, nonzero plane or None, bound) of one conv, Cout padded to whole output words: the
    binary form for a binary layer and the masked form otherwise, unless `masked` asks for one (tests run a binary
    layer in both)."""
    masked = not layer.binary if masked is None else masked
    word = np.uint64 if layer.pos.shape[-1] % 2 == 0 else np.uint32
    sign = whole_words(tap_major(layer.sign, word))
    if masked:
        return sign, whole_words(tap_major(layer.nonzero, word)), whole_words(layer.masked_bound, PADDING_BOUND)
    return sign, None, whole_words(layer.and_bound, PADDING_BOUND)


# conv3x3 weight planes up to this size (4 KiB a tap: input x output channels <= 32768) run the narrow kernel.
# Measured on mbunet-w32 at 192x144, 1 thread (Zen 4), binconv.conv3x3 -> conv3x3_narrow, median of alternating
# calls: in.1 1.03 -> 0.47 ms, up4.0 1.53 -> 0.84, up4.1 0.99 -> 0.55, up3.0 1.08 -> 0.68, down1.1 0.77 -> 0.33,
# down2.1 0.59 -> 0.34, and at this size up2.0 0.80 -> 0.68, down3.0 0.24 -> 0.21; above it (down3.1, down4.x,
# up1.x: 4-8 uint64 words a pixel, 256-512 outputs) neither kernel is clearly faster, and whole frames with every
# layer narrow measured no faster than with this limit (9.6 against 9.1-9.5 ms).
NARROW_PLANE_BYTES = 36 * 1024


def narrow_conv(sign: np.ndarray) -> bool:
    """Whether the conv3x3 with this sign plane runs binconv.conv3x3_narrow (else binconv.conv3x3)."""
    return sign.nbytes <= NARROW_PLANE_BYTES


def kernel_weights(layers: dict[str, Layer]) -> dict[str, object]:
    """Every prepared layer in its kernel's layout, keyed like the model file."""
    out: dict[str, object] = {}
    for name, layer in layers.items():
        if isinstance(layer, InputLayer):
            out[f"{name}.weight"], out[f"{name}.threshold"] = input_arguments(layer)
        elif isinstance(layer, ConvLayer):
            out.update(zip((f"{name}.pos", f"{name}.neg", f"{name}.threshold"), conv_arguments(layer)))
        elif isinstance(layer, OutputLayer):
            out[f"{name}.weight"], out[f"{name}.bias"] = layer.set_weight, layer.base
    return out


class CpuKernels:
    """program.KernelSet over the numba kernels; the weight arguments come from kernel_weights."""

    def __init__(self) -> None:
        from mbunet.cudakernels.cpu import binconv, fpconv, packed

        self.binconv, self.fpconv, self.packed = binconv, fpconv, packed

    def input_conv(self, frames, weight, threshold):
        return self.fpconv.input_conv(frames, weight, threshold)

    def conv3x3(self, x, pos, neg, threshold, cout):
        kernel = self.binconv.conv3x3_narrow if narrow_conv(pos) else self.binconv.conv3x3
        return kernel(x.view(pos.dtype), pos, pos if neg is None else neg, threshold, neg is not None)

    def pool(self, x):
        return self.packed.pool2x2(x)

    def conv_t2x2(self, x, pos, neg, threshold, cout):
        return self.binconv.conv_t2x2(x.view(pos.dtype), pos, pos if neg is None else neg, threshold,
                                      neg is not None)

    def concat(self, skip, up):
        return self.packed.concat(skip, up)

    def output(self, x, weight, bias):
        return self.fpconv.output_conv(x, weight, bias)

    def to_host(self, array):
        return array


@register_engine
class CpuEngine(Engine):
    name = "cpu"
    priority = 20

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "numba is not installed (pip install numba)"
        return super().unavailable(model)

    def load(self, model: ModelFile) -> None:
        import numba

        self.model = model
        self.steps = plan(model.arch)
        self.weights = kernel_weights(prepare(model))
        self.kernels = CpuKernels()
        h, w = model.arch.input_size
        self.run(np.zeros((1, h, w, 3), np.uint8))  # compile or load the cache now, not on the first frame
        self.threads = ThreadTuner(candidate_counts(numba.config.NUMBA_NUM_THREADS, usable_cores()))
        self.detail = self.threads.summary()

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        import numba

        frames = self.check_frames(frames)
        count = self.threads.next_count()
        numba.set_num_threads(count)  # for the parallel regions this thread starts from now on
        start = time.perf_counter()
        masks, logits, kept = self.run(frames, keep_bits)
        self.threads.record(count, (time.perf_counter() - start) / len(frames))
        self.detail = self.threads.summary()  # which counts ran (a few microseconds), for the bench row and the log
        if keep_logits:
            kept["out.logits"] = logits
        return masks, kept

    def run_layers(self, frames: np.ndarray, wrap) -> tuple[list, str | None]:
        import numba

        count = self.threads.best()  # the fastest count the tuner has measured, not recorded as a call
        numba.set_num_threads(count)
        execute(self.steps, self.weights, self.check_frames(frames), wrap(self.kernels))
        return self.steps, f"{count} thread{'s' if count > 1 else ''}"

    def run(self, frames: np.ndarray, keep_bits: bool = False):
        """(masks, logits, kept tensors) of checked frames with the current thread count."""
        return execute(self.steps, self.weights, frames, self.kernels, keep_bits)

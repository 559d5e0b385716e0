"""`bmma`: the bit network on binary Tensor Cores, a CUDA C++ library (cudakernels/bmma) loaded with ctypes.

load() describes arch.plan() to C++ as an array of mb_step (weights re-tiled and uploaded once, each conv with the
bound of the chosen form from pipeline.prepared); segment() is one ctypes call per batch: frames up, one CUDA graph
per batch size (every layer, no host round trip), masks back. The dot-product form follows the GPU: AND
(.and.popc, m16n8k256) on sm_80 and newer, Hopper included, XOR (.xor.popc, m8n8k128) on sm_75.
$MBUNET_BMMA_FORM=and|xor|auto overrides it (to measure both on one GPU).
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache

import numpy as np

from ..arch import plan
from ..errors import ConfigError
from ..modelfile import ModelFile
from ..prepared import ConvLayer, InputLayer, OutputLayer, prepare
from .base import Engine, register_engine
from .bmma_library import library_problem, open_library

MIN_CC = 75
FORM_ENV = "MBUNET_BMMA_FORM"
_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76  # CUdevice_attribute values


@lru_cache(maxsize=1)
def device_problem() -> str | None:
    """Why no GPU here can run binary MMA (None when GPU 0 can); asks the driver directly, no library build."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no CUDA device: the NVIDIA driver (libcuda.so.1) is not installed on this machine"
    count, dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    rc = cu.cuInit(0) or cu.cuDeviceGetCount(ctypes.byref(count))
    if rc or count.value == 0:
        return f"no CUDA device (driver: cuInit/cuDeviceGetCount returned {rc}, {count.value} devices)"
    rc = (cu.cuDeviceGet(ctypes.byref(dev), 0)
          or cu.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
          or cu.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev))
    if rc:
        return f"CUDA driver error {rc} reading GPU 0's compute capability"
    if major.value * 10 + minor.value < MIN_CC:
        return f"binary Tensor Cores need sm_{MIN_CC} or newer, GPU 0 is sm_{major.value}{minor.value}"
    return None


def requested_form(form: str | None = None) -> str:
    form = (form or os.environ.get(FORM_ENV) or "auto").lower()
    if form not in ("auto", "and", "xor"):
        raise ConfigError(f"bmma form must be auto, and or xor (${FORM_ENV}), got {form!r}")
    return form


def form_for(requested: str, cc: int) -> str:
    """The form the kernels use on a GPU of compute capability `cc` (75 for sm_75): "auto" is AND from sm_80 on and
    XOR on sm_75, which has only XOR; an explicit form is kept (the library refuses AND below sm_80)."""
    if requested == "auto":
        return "and" if cc >= 80 else "xor"
    return requested


@register_engine
class BmmaEngine(Engine):
    name = "bmma"
    priority = 40

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        return super().unavailable(model) or device_problem() or library_problem()

    def __init__(self, form: str | None = None) -> None:
        super().__init__()
        self.form = requested_form(form)
        self.form_used: str | None = None
        self._handle: ctypes.c_void_p | None = None

    def load(self, model: ModelFile) -> None:
        self.lib, choice = open_library()
        self.detail = f"library: {choice}"
        self.steps = plan(model.arch)
        device = self.lib.device()
        self.form_used = form_for(self.form, device.major * 10 + device.minor)
        structs, keep_alive = self._describe(model, self.form_used)
        self._handle = self.lib.create(structs, self.form_used)
        del keep_alive  # C++ copied and re-tiled the weights
        self.model = model

    def _describe(self, model: ModelFile, form: str) -> tuple[list, list[np.ndarray]]:
        """One mb_step per plan step, each conv with the bounds of `form`; returns the structs and the arrays their
        pointers reference."""
        from mbunet.cudakernels.bmma.lib import step_struct

        layers = prepare(model)
        index = {s.name: i for i, s in enumerate(self.steps)}
        structs, alive = [], []
        for s in self.steps:
            layer = layers.get(s.name)
            arrays: dict[str, np.ndarray] = {}
            if isinstance(layer, InputLayer):
                arrays = {"weight": layer.weight, "threshold": layer.threshold}
            elif isinstance(layer, ConvLayer):
                arrays = {"pos": layer.pos, "neg": layer.neg,
                          "bound": layer.and_bound if form == "and" else layer.xor_bound}
            elif isinstance(layer, OutputLayer):
                arrays = {"weight": layer.weight, "threshold": layer.bias}  # mb_step carries the bias there
            arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
            alive.extend(arrays.values())
            src = [index.get(n, -1) for n in s.inputs] + [-1]
            words = s.cin_words if s.op in ("pool", "concat") else s.cout_words
            structs.append(step_struct(s.op, src[0], src[1] if s.op == "concat" else -1, s.height, s.width,
                                       s.cin, s.cout, s.cin_words, s.cout if s.op == "output" else words, **arrays))
        return structs, alive

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frames = self.check_frames(frames)
        n, h, w, _ = frames.shape
        masks = np.empty((n, h, w), np.uint8)
        self.lib.run(self._handle, frames, masks)
        bits: dict[str, np.ndarray] = {}
        for i, s in enumerate(self.steps):
            if s.op == "output" and (keep_bits or keep_logits):
                bits["out.logits"] = self._fetch(i, (n, s.height, s.width, s.cout), np.int32)
            elif keep_bits:
                words = s.cin_words if s.op in ("pool", "concat") else s.cout_words
                bits[s.name] = self._fetch(i, (n, s.height, s.width, words), np.uint32)
        return masks, bits

    def _fetch(self, step: int, shape: tuple[int, ...], dtype) -> np.ndarray:
        out = np.empty(shape, dtype)
        self.lib.fetch(self._handle, step, out)
        return out

    def close(self) -> None:
        if self._handle is not None:
            self.lib.destroy(self._handle)
            self._handle = None

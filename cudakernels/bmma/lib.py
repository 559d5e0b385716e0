"""ctypes wrapper of the bmma library (api.h): argtypes/restype for every entry point, and the one place where
its status codes and thread-local error strings become MbunetError subclasses.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mbunet.errors import EngineUnavailable, KernelBuildError, MbunetError

from .build import ensure_built

OPS = {"input": 0, "conv3x3": 1, "pool": 2, "convT2x2": 3, "concat": 4, "output": 5}
FORMS = {"and": 1, "xor": 2}  # enum mb_form
FLAVOURS = ("b1-and", "b1-xor", "s8", "f16")  # enum mb_flavour order
_OK, _EINVAL, _ENODEV, _ECUDA, _EUNSUPPORTED = range(5)
_ERRORS: dict[int, type[MbunetError]] = {_EINVAL: MbunetError, _ENODEV: EngineUnavailable, _ECUDA: MbunetError,
                                         _EUNSUPPORTED: EngineUnavailable}

_u32p = ctypes.POINTER(ctypes.c_uint32)
_i32p = ctypes.POINTER(ctypes.c_int32)
_intp = ctypes.POINTER(ctypes.c_int)


class StepStruct(ctypes.Structure):
    """Mirror of `mb_step` in api.h (checked against mb_step_size() on load)."""

    _fields_ = [("op", ctypes.c_int32), ("src0", ctypes.c_int32), ("src1", ctypes.c_int32),
                ("height", ctypes.c_int32), ("width", ctypes.c_int32), ("cin", ctypes.c_int32),
                ("cout", ctypes.c_int32), ("cin_words", ctypes.c_int32), ("cout_words", ctypes.c_int32),
                ("pos", _u32p), ("neg", _u32p), ("weight", _i32p), ("threshold", _i32p), ("bound", _i32p)]


@dataclass(frozen=True)
class DeviceInfo:
    major: int
    minor: int
    sm_count: int
    name: str

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"


def _ptr(a: np.ndarray | None, kind):
    return None if a is None else a.ctypes.data_as(kind)


class BmmaLibrary:
    """The loaded .so; every method raises an MbunetError subclass on a non-zero status."""

    def __init__(self, path: Path) -> None:
        try:
            self._dll = ctypes.CDLL(str(path))
        except OSError as e:
            raise KernelBuildError(f"cannot load {path}: {e}") from e
        self.path = path
        d = self._dll
        d.mb_last_error.argtypes, d.mb_last_error.restype = [], ctypes.c_char_p
        d.mb_step_size.argtypes, d.mb_step_size.restype = [], ctypes.c_size_t
        d.mb_device.argtypes = [_intp, _intp, _intp, ctypes.c_char_p, ctypes.c_int]
        d.mb_create.argtypes = [ctypes.POINTER(StepStruct), ctypes.c_int, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_void_p)]
        d.mb_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_int,
                             ctypes.POINTER(ctypes.c_uint8)]
        d.mb_fetch.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        d.mb_destroy.argtypes = [ctypes.c_void_p]
        d.mb_mma_bench.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_double),
                                   ctypes.POINTER(ctypes.c_double)]
        for fn in (d.mb_device, d.mb_create, d.mb_run, d.mb_fetch, d.mb_destroy, d.mb_mma_bench):
            fn.restype = ctypes.c_int
        if d.mb_step_size() != ctypes.sizeof(StepStruct):
            raise KernelBuildError(f"{path}: mb_step is {d.mb_step_size()} bytes in C, "
                                   f"{ctypes.sizeof(StepStruct)} in lib.py (stale library?)")

    def _check(self, status: int, what: str) -> None:
        if status != _OK:
            msg = self._dll.mb_last_error().decode(errors="replace")
            raise _ERRORS.get(status, MbunetError)(f"bmma {what}: {msg}")

    def device(self) -> DeviceInfo:
        major, minor, sms = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        self._check(self._dll.mb_device(major, minor, sms, name, len(name)), "device")
        return DeviceInfo(major.value, minor.value, sms.value, name.value.decode(errors="replace"))

    def create(self, steps: list[StepStruct], form: str) -> ctypes.c_void_p:
        """Upload a network whose conv bounds are those of `form` ("and" or "xor"); returns its handle."""
        arr = (StepStruct * len(steps))(*steps)
        handle = ctypes.c_void_p()
        self._check(self._dll.mb_create(arr, len(steps), FORMS[form], ctypes.byref(handle)), "load")
        return handle

    def run(self, handle: ctypes.c_void_p, frames: np.ndarray, masks: np.ndarray) -> None:
        self._check(self._dll.mb_run(handle, _ptr(frames, ctypes.POINTER(ctypes.c_uint8)), frames.shape[0],
                                     _ptr(masks, ctypes.POINTER(ctypes.c_uint8))), "run")

    def fetch(self, handle: ctypes.c_void_p, step: int, out: np.ndarray) -> None:
        self._check(self._dll.mb_fetch(handle, step, out.ctypes.data, out.nbytes), "fetch")

    def destroy(self, handle: ctypes.c_void_p) -> None:
        self._check(self._dll.mb_destroy(handle), "close")

    def mma_bench(self, flavour: str, iters: int) -> tuple[float, float]:
        """(kernel ms, tera-ops/s) of one MMA flavour's timing loop."""
        ms, tops = ctypes.c_double(), ctypes.c_double()
        self._check(self._dll.mb_mma_bench(FLAVOURS.index(flavour), iters, ctypes.byref(ms), ctypes.byref(tops)),
                    f"mma-bench {flavour}")
        return ms.value, tops.value


@lru_cache(maxsize=None)
def load_library(path: Path | None = None) -> BmmaLibrary:
    """The library at `path`, or the one for the current sources (built on first use)."""
    return BmmaLibrary(Path(path) if path else ensure_built())


def step_struct(op: str, src0: int, src1: int, height: int, width: int, cin: int, cout: int, cin_words: int,
                cout_words: int, pos: np.ndarray | None = None, neg: np.ndarray | None = None,
                weight: np.ndarray | None = None, threshold: np.ndarray | None = None,
                bound: np.ndarray | None = None) -> StepStruct:
    """One mb_step; arrays must be C-contiguous uint32/int32 and stay alive until create() returns."""
    for a, dt in ((pos, np.uint32), (neg, np.uint32), (weight, np.int32), (threshold, np.int32), (bound, np.int32)):
        if a is not None and (a.dtype != dt or not a.flags.c_contiguous):
            raise MbunetError(f"bmma step {op}: expected C-contiguous {np.dtype(dt)} arrays, got {a.dtype}")
    return StepStruct(OPS[op], src0, src1, height, width, cin, cout, cin_words, cout_words,
                      _ptr(pos, _u32p), _ptr(neg, _u32p), _ptr(weight, _i32p), _ptr(threshold, _i32p),
                      _ptr(bound, _i32p))

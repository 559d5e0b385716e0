"""What the NVIDIA driver on this machine can run: its CUDA version, GPU 0's compute capability, and which build
of numba-cuda (the `cu12` or `cu13` extra) fits it.

Asked of NVML first (nvidia-ml-py, a dependency) and of the driver API (libcuda.so.1) where NVML is missing, as on
Jetson, whose JetPack has no NVML. Neither needs numba-cuda or a toolkit, so `doctor` can say what to install on a
machine that has only the driver.
"""
from __future__ import annotations

import ctypes
from importlib.metadata import PackageNotFoundError, version

_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76  # CUdevice_attribute values
#: numba-cuda's extras and the driver CUDA major version each needs (cuda-bindings of that major)
EXTRAS = {12: "cu12", 13: "cu13"}


def _libcuda():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the installed driver supports, as (major, minor); None without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            encoded = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML (Jetson, no driver) or an old one: the driver API answers the same question
        cu = _libcuda()
        value = ctypes.c_int()
        if cu is None or cu.cuDriverGetVersion(ctypes.byref(value)) != 0 or value.value <= 0:
            return None
        encoded = value.value
    return encoded // 1000, encoded % 1000 // 10


def gpu0_capability() -> tuple[int, int] | None:
    """GPU 0's compute capability from the driver API; None without a driver or a GPU."""
    cu = _libcuda()
    if cu is None:
        return None
    count, dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if (cu.cuInit(0) or cu.cuDeviceGetCount(ctypes.byref(count)) or count.value == 0
            or cu.cuDeviceGet(ctypes.byref(dev), 0)
            or cu.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
            or cu.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev)):
        return None
    return major.value, minor.value


def fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def extra_for(driver: tuple[int, int]) -> str | None:
    """The numba-cuda extra a driver of this CUDA version runs: the newest whose major it reaches."""
    fits = [extra for major, extra in EXTRAS.items() if driver[0] >= major]
    return fits[-1] if fits else None


def installed_cuda_major() -> int | None:
    """The CUDA major version the installed numba-cuda was set up for (its cuda-bindings); None if not installed."""
    try:
        version("numba-cuda")
        return int(version("cuda-bindings").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None


def extra_advice(driver: tuple[int, int] | None) -> str:
    """One line: the extra that fits this driver and the command to get it (or why none does)."""
    if driver is None:
        return "no NVIDIA driver: GPU engines unavailable; the CPU install (pip install mbunet) is what fits"
    extra = extra_for(driver)
    if extra is None:
        return (f"driver supports CUDA {fmt(driver)}: numba-cuda needs a CUDA 12 driver (R525) or newer; "
                f"update the driver")
    return f"driver supports CUDA {fmt(driver)}: the {extra} extra fits: pip install 'mbunet[{extra}]'"


def numba_cuda_mismatch(driver: tuple[int, int] | None) -> str | None:
    """Why the installed numba-cuda cannot run on this driver (None when it can, or when nothing is installed)."""
    installed = installed_cuda_major()
    if driver is None or installed is None or installed <= driver[0]:
        return None
    extra = extra_for(driver)
    fix = f"pip install 'mbunet[{extra}]'" if extra else "update the driver to CUDA 12 (R525) or newer"
    return (f"numba-cuda is installed for CUDA {installed} (cuda-bindings {installed}.x), this driver supports "
            f"CUDA {fmt(driver)}: {fix}")

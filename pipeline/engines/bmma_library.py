"""Which bmma library this machine loads, and why: a shipped one (CI builds one with CUDA 12 and one with CUDA 13,
cudakernels/bmma/prebuilt.py) when the driver and GPU can run it, else a local nvcc build (cached per source hash).

CUDA's compatibility rules decide:
- a library from toolkit X.Y runs on a driver of CUDA major X or newer (minor-version compatibility: the static
  cudart of any 12.x needs only a 12.0 driver, R525), never on an older major;
- the GPU runs its SASS when the library holds SASS of the same major and an equal or lower minor (sm_86 code runs
  on sm_87 and sm_89), else the PTX, which the driver compiles only when it is at least as new as X.Y and the GPU at
  least the PTX's arch;
- the library must come from the current sources (an edited kernel invalidates the shipped files) and this
  machine's architecture (only x86_64 is shipped: on a Jetson the engine builds with JetPack's nvcc on first use).
Among the libraries that fit, the newest toolkit wins. Every decision carries a one-line reason, shown by
`doctor`, the bench rows and the run log.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..cudadriver import driver_cuda_version, fmt, gpu0_capability
from ..errors import KernelBuildError


@dataclass(frozen=True)
class Choice:
    path: Path | None  # the shipped library; None: a local build (the cached file, once built)
    label: str  # "shipped CUDA 12.4 bmma-cuda12.so" or "local nvcc build"
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


def misfit(lib, driver: tuple[int, int] | None, cc: tuple[int, int] | None, sources: str,
           machine: str) -> str | None:
    """Why shipped library `lib` (prebuilt.Shipped) cannot run here (None when it can)."""
    if lib.machine != machine:
        return f"built for {lib.machine}, this machine is {machine}"
    if lib.source_hash != sources:
        return "built from other kernel sources"
    if driver is not None and driver[0] < lib.cuda[0]:
        return f"needs a CUDA {lib.cuda[0]} driver, this one supports CUDA {fmt(driver)}"
    if cc is None or sass_for(lib, cc):
        return None
    ptx = int(lib.ptx.removeprefix("compute_"))
    if cc[0] * 10 + cc[1] < ptx:
        return f"holds no code that runs on sm_{cc[0]}{cc[1]}"
    if driver is not None and driver < lib.cuda:
        return (f"sm_{cc[0]}{cc[1]} needs its {lib.ptx} PTX compiled by a CUDA {fmt(lib.cuda)} driver or newer, "
                f"this one supports CUDA {fmt(driver)}")
    return None


def sass_for(lib, cc: tuple[int, int]) -> str | None:
    """The SASS arch of `lib` that GPU `cc` runs: same major, highest minor not above the GPU's."""
    same_major = [a for a in lib.archs if int(a[3:-1]) == cc[0] and int(a[-1]) <= cc[1]]
    return max(same_major, key=lambda a: int(a[-1]), default=None)


def choose(libs: list, driver: tuple[int, int] | None, cc: tuple[int, int] | None, sources: str,
           machine: str) -> Choice:
    """The shipped library to load (newest toolkit among those that fit), or a local build with the reason."""
    where = (f"driver CUDA {fmt(driver)}" if driver else "no driver") + (f", sm_{cc[0]}{cc[1]}" if cc else "")
    libs = [lib for lib in libs if lib.machine == machine]
    if not libs:
        return Choice(None, "local nvcc build", f"no library is shipped for {machine}" + (
            "" if machine == "x86_64" else " (on a Jetson, JetPack's nvcc builds it)"))
    refused = []
    for lib in sorted(libs, key=lambda s: s.cuda, reverse=True):
        why = misfit(lib, driver, cc, sources, machine)
        if why is None:
            code = "no GPU to match" if cc is None else (
                f"{sass_for(lib, cc)} SASS" if sass_for(lib, cc) else f"{lib.ptx} PTX, compiled by the driver")
            return Choice(lib.path, f"shipped {lib.name}", f"{where}; {code}")
        refused.append(f"{lib.path.name} {why}")
    return Choice(None, "local nvcc build", f"no shipped library fits ({where}): {'; '.join(refused)}")


def local_build_problem(driver: tuple[int, int] | None) -> str | None:
    """Why no local build can serve this driver: no nvcc, or one newer than the driver (None when one can)."""
    from mbunet.cudakernels.bmma.build import find_nvcc, library_path, nvcc_version

    if library_path().is_file():
        return None
    try:
        release = nvcc_version(find_nvcc())
    except KernelBuildError as e:  # names what was tried
        return str(e)
    if driver is not None and release[0] > driver[0]:
        return (f"the local nvcc {fmt(release)} builds for CUDA {release[0]} drivers, this one supports CUDA "
                f"{fmt(driver)}: update the driver or put a CUDA {driver[0]} nvcc first on PATH")
    return None


def plan() -> Choice:
    """What `bmma` would load here, without building or loading anything."""
    from mbunet.cudakernels.bmma.build import ARCHS, source_hash
    from mbunet.cudakernels.bmma.prebuilt import shipped

    driver = driver_cuda_version()
    try:
        libs = shipped()
    except KernelBuildError as e:  # a damaged install: say so and build locally
        return Choice(None, "local nvcc build", str(e))
    return choose(libs, driver, gpu0_capability(), source_hash(ARCHS), platform.machine())


def library_problem() -> str | None:
    """Why no bmma library can be had here (None when a shipped one fits or a local build can be made)."""
    choice = plan()
    why = None if choice.path is not None else local_build_problem(driver_cuda_version())
    return None if why is None else f"{choice.reason}; and {why}"


@lru_cache(maxsize=1)
def open_library():
    """(BmmaLibrary, Choice): the planned shipped library, or a local build when none fits or it does not load."""
    from mbunet.cudakernels.bmma.build import ensure_built
    from mbunet.cudakernels.bmma.lib import load_library

    choice = plan()
    if choice.path is not None:
        try:
            return load_library(choice.path), choice
        except KernelBuildError as e:  # e.g. a glibc older than the build machine's: the local build still can
            choice = Choice(None, "local nvcc build", f"{choice.label} did not load ({e})")
    why = local_build_problem(driver_cuda_version())
    if why is not None:
        raise KernelBuildError(f"bmma: {choice.reason}; and {why}")
    path = ensure_built()
    return load_library(path), Choice(path, "local nvcc build", choice.reason)

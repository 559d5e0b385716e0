"""Build the bmma shared library with nvcc, cached per machine and per source hash.

One fatbin: SASS for every arch in ARCHS plus PTX of the newest (JIT-compiled by the driver on newer GPUs),
`-cudart static` so the .so needs only the driver at run time. The cache key hashes the sources and the nvcc
command line, so an edited kernel or another arch list builds a new file and never reuses a stale one.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from mbunet.errors import KernelBuildError

ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90")
SOURCE_DIR = Path(__file__).resolve().parent
MAIN_SOURCE = "bmma.cu"
BUILD_TIMEOUT_S = 600


def cache_dir() -> Path:
    """~/.cache/mbunet, or $MBUNET_CACHE."""
    return Path(os.environ.get("MBUNET_CACHE", Path.home() / ".cache" / "mbunet"))


def normalise_archs(archs: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Accept "sm_90", "90" or "9.0"; refuse anything below sm_75 (no binary Tensor Cores)."""
    if not archs:
        return ARCHS
    out = []
    for a in archs:
        m = re.fullmatch(r"(?:sm_|compute_)?(\d)\.?(\d)", a.strip())
        if not m or int(m.group(1) + m.group(2)) < 75:
            raise KernelBuildError(f"bad --arch {a!r}: expected sm_75 or newer, like sm_80 or 90")
        out.append(f"sm_{m.group(1)}{m.group(2)}")
    return tuple(sorted(set(out), key=lambda s: int(s[3:])))


def nvcc_flags(archs: tuple[str, ...]) -> list[str]:
    flags = ["-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC", "-cudart", "static", "-lineinfo"]
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a[3:]},code={a}"]
    newest = archs[-1][3:]
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return flags


def sources() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.iterdir() if p.suffix in (".cu", ".cuh", ".h"))


def source_hash(archs: tuple[str, ...]) -> str:
    h = hashlib.sha256(" ".join(nvcc_flags(archs)).encode())
    for p in sources():
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def library_path(archs: list[str] | tuple[str, ...] | None = None) -> Path:
    """Where the library for these archs and the current sources lives (built or not)."""
    return cache_dir() / f"bmma-{source_hash(normalise_archs(archs))}.so"


def find_nvcc() -> str:
    """$NVCC, nvcc on PATH, or $CUDA_HOME/bin/nvcc; KernelBuildError naming what was tried."""
    candidates = [os.environ.get("NVCC"), shutil.which("nvcc"),
                  str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise KernelBuildError("nvcc not found (not $NVCC, not on PATH, not in $CUDA_HOME/bin): install the CUDA "
                           "toolkit to build the bmma library")


def nvcc_version(nvcc: str) -> tuple[int, int]:
    """The CUDA release of an nvcc, e.g. (12, 4); KernelBuildError when it does not say."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KernelBuildError(f"cannot run {nvcc} --version: {e}") from e
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        raise KernelBuildError(f"{nvcc} --version names no CUDA release")
    return int(m.group(1)), int(m.group(2))


def build(archs: list[str] | tuple[str, ...] | None = None, force: bool = False) -> Path:
    """Compile (unless cached) and return the library path; KernelBuildError with nvcc's first error line."""
    archs = normalise_archs(archs)
    target = library_path(archs)
    if target.is_file() and not force:
        return target
    return compile_library(find_nvcc(), archs, target)


def compile_library(nvcc: str, archs: tuple[str, ...], target: Path) -> Path:
    """Run nvcc for `archs` into `target`; KernelBuildError with nvcc's first error line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.so")  # concurrent builds never see half a file
    cmd = [nvcc, *nvcc_flags(archs), "-o", str(tmp), str(SOURCE_DIR / MAIN_SOURCE)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise KernelBuildError(f"nvcc took more than {BUILD_TIMEOUT_S} s building {target.name}") from e
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines() or ["?"]
        raise KernelBuildError(f"nvcc failed ({proc.returncode}): {errors[0].strip()}")
    os.replace(tmp, target)
    return target


def ensure_built() -> Path:
    """The library for every arch, building it on first use."""
    return build(ARCHS)

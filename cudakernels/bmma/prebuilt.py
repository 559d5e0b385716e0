"""The bmma libraries shipped inside the package, so `bmma` runs on x86_64 without a compiler.

One library per CUDA major version (built by CI, .ci/build-prebuilt, before the wheel; `mbunet build-kernels
--prebuilt --nvcc PATH`), each with the same SASS and PTX as a local build. A JSON file beside each .so records
the nvcc release that built it, its archs, its machine and the hash of the sources and flags, which is what the
engine's chooser (mbunet.engines.bmma_library) needs to pick one the driver can run. The files are package data
(setup.cfg), ignored by git.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

from mbunet.errors import KernelBuildError

from .build import ARCHS, SOURCE_DIR, compile_library, nvcc_version, source_hash

PREBUILT_DIR = SOURCE_DIR / "prebuilt"


@dataclass(frozen=True)
class Shipped:
    path: Path
    cuda: tuple[int, int]  # release of the nvcc that built it
    archs: tuple[str, ...]  # SASS inside
    ptx: str  # the one PTX inside, e.g. compute_90
    machine: str  # platform.machine() of the host code
    source_hash: str  # build.source_hash(archs) when it was built

    @property
    def name(self) -> str:
        return f"CUDA {self.cuda[0]}.{self.cuda[1]} {self.path.name}"


def _read(meta: Path) -> Shipped:
    try:
        d = json.loads(meta.read_text())
        return Shipped(meta.with_name(d["library"]), tuple(d["cuda"]), tuple(d["archs"]), d["ptx"], d["machine"],
                       d["source_hash"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KernelBuildError(f"unreadable shipped-library record {meta.name}: {type(e).__name__}: {e}") from e


def shipped(directory: Path | None = None) -> list[Shipped]:
    """The shipped libraries whose .so is present, newest CUDA first."""
    directory = directory or PREBUILT_DIR
    found = [_read(meta) for meta in sorted(directory.glob("bmma-cuda*.json"))] if directory.is_dir() else []
    return sorted((s for s in found if s.path.is_file()), key=lambda s: s.cuda, reverse=True)


def build_prebuilt(nvcc: str, directory: Path | None = None, force: bool = False) -> tuple[Shipped, bool]:
    """Build the shipped library of this nvcc's CUDA major into `directory`; (its record, whether it was built).

    Skipped when the one there was built by the same release from the same sources."""
    directory = directory or PREBUILT_DIR
    cuda = nvcc_version(nvcc)
    meta = directory / f"bmma-cuda{cuda[0]}.json"
    want = Shipped(meta.with_suffix(".so"), cuda, ARCHS, f"compute_{ARCHS[-1][3:]}", platform.machine(),
                   source_hash(ARCHS))
    if not force and meta.is_file() and want.path.is_file() and _read(meta) == want:
        return want, False
    meta.unlink(missing_ok=True)  # never a record beside a half-replaced library
    compile_library(nvcc, ARCHS, want.path)
    meta.write_text(json.dumps({"library": want.path.name, "cuda": list(cuda), "archs": list(ARCHS), "ptx": want.ptx,
                                "machine": want.machine, "source_hash": want.source_hash}, indent=1) + "\n")
    return want, True

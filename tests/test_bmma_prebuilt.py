"""The bmma libraries shipped in the package and the choice among them, without a GPU: the chooser on fake driver
versions and compute capabilities, the numba-cuda extra `doctor` names for a driver, both shipped libraries with
SASS for every arch, PTX and the entry points, and every fallback as one line. With a GPU (marked gpu): each
shipped library that fits loads and is bit-exact with `reference`.

The shipped libraries exist after `.ci/build-prebuilt`; the tests that inspect them skip without them, and fail
instead under MBUNET_REQUIRE_PREBUILT=1 (CI), where a wheel without them must not pass.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import random_frames
from mbunet import cudadriver, doctor
from mbunet.arch import Architecture
from mbunet.cudakernels.bmma import build, prebuilt
from mbunet.cudakernels.bmma.lib import load_library
from mbunet.cudakernels.bmma.prebuilt import Shipped
from mbunet.engines import bmma as bmma_engine
from mbunet.engines import bmma_library as chooser
from mbunet.engines import cuda as cuda_engine
from mbunet.engines.base import create_engine
from mbunet.errors import KernelBuildError
from test_bmma_build import ENTRY_POINTS, _cuda_tool, _mma_per_kernel, _tool_output

HASH = "0123456789abcdef"
X86 = "x86_64"


def _fake(major: int, minor: int, **kw) -> Shipped:
    fields = dict(path=Path(f"/fake/bmma-cuda{major}.so"), cuda=(major, minor), archs=build.ARCHS,
                  ptx="compute_90", machine=X86, source_hash=HASH)
    return Shipped(**{**fields, **kw})


LIBS = [_fake(12, 4), _fake(13, 0)]


def _one_line(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text, text


# ------------------------------------------------------------------------------------------------ the chooser
@pytest.mark.parametrize("driver,cc,library,code", [
    ((12, 4), (8, 6), "bmma-cuda12.so", "sm_86 SASS"),        # an R550 desktop driver: the CUDA 12 build
    ((12, 0), (7, 5), "bmma-cuda12.so", "sm_75 SASS"),        # R525, the oldest CUDA 12 driver: minor-version compat
    ((13, 0), (9, 0), "bmma-cuda13.so", "sm_90 SASS"),        # R580: the newest toolkit that fits wins
    ((13, 1), (8, 7), "bmma-cuda13.so", "sm_87 SASS"),
    ((12, 6), (8, 7), "bmma-cuda12.so", "sm_87 SASS"),        # Orin's arch on a CUDA 12.6 driver
    ((12, 8), (8, 8), "bmma-cuda12.so", "sm_87 SASS"),        # same major, higher minor: the sm_87 SASS runs
    ((12, 8), (12, 0), "bmma-cuda12.so", "compute_90 PTX"),   # Blackwell: the driver compiles the PTX
    ((13, 0), (10, 0), "bmma-cuda13.so", "compute_90 PTX"),
])
def test_chooser_picks_a_library_the_driver_runs(driver, cc, library, code):
    choice = chooser.choose(LIBS, driver, cc, HASH, X86)
    assert choice.path.name == library and code in choice.reason
    _one_line(str(choice))


@pytest.mark.parametrize("driver,cc,libs,expected", [
    ((11, 8), (8, 6), LIBS, "needs a CUDA 12 driver, this one supports CUDA 11.8"),
    ((12, 2), (12, 0), LIBS, "compute_90 PTX compiled by a CUDA 12.4 driver or newer"),  # PTX newer than the driver
    ((12, 4), (7, 2), LIBS, "holds no code that runs on sm_72"),                         # Xavier: no binary MMA
    ((12, 4), (8, 6), [_fake(12, 4, source_hash="other")], "built from other kernel sources"),
    ((12, 4), (8, 6), [], "no library is shipped for x86_64"),
])
def test_chooser_falls_back_to_a_local_build_saying_why(driver, cc, libs, expected):
    choice = chooser.choose(libs, driver, cc, HASH, X86)
    assert choice.path is None and choice.label == "local nvcc build" and expected in choice.reason
    _one_line(str(choice))


def test_jetson_builds_with_jetpacks_nvcc():
    choice = chooser.choose(LIBS, (12, 6), (8, 7), HASH, "aarch64")
    assert choice.path is None and "no library is shipped for aarch64" in choice.reason
    assert "JetPack's nvcc builds it" in choice.reason
    assert chooser.misfit(LIBS[0], (12, 6), (8, 7), HASH, "aarch64") == "built for x86_64, this machine is aarch64"


# ------------------------------------------------------------------------------------- numba-cuda extras, doctor
@pytest.mark.parametrize("driver,extra", [((11, 8), None), ((12, 0), "cu12"), ((12, 6), "cu12"), ((12, 9), "cu12"),
                                          ((13, 0), "cu13"), ((13, 2), "cu13")])
def test_extra_for_driver(driver, extra):
    assert cudadriver.extra_for(driver) == extra
    advice = cudadriver.extra_advice(driver)
    _one_line(advice)
    assert (f"pip install 'mbunet[{extra}]'" in advice) if extra else "update the driver" in advice


@pytest.mark.parametrize("driver,installed,line", [
    ((12, 4), 13, "the cu12 extra fits: pip install 'mbunet[cu12]'"),
    ((12, 4), 12, "the cu12 extra fits: pip install 'mbunet[cu12]'"),
    ((13, 0), 13, "the cu13 extra fits: pip install 'mbunet[cu13]'"),
    (None, None, "no NVIDIA driver"),
])
def test_doctor_names_the_extra_in_one_line(monkeypatch, driver, installed, line):
    monkeypatch.setattr(cudadriver, "driver_cuda_version", lambda: driver)
    monkeypatch.setattr(cudadriver, "installed_cuda_major", lambda: installed)
    check = doctor._cuda_driver()
    _one_line(check.detail)
    if installed is not None and driver is not None and installed > driver[0]:
        assert not check.ok and "numba-cuda is installed for CUDA 13" in check.detail
        assert "pip install 'mbunet[cu12]'" in check.detail
    else:
        assert line in check.detail and check.ok == (driver is not None)


def test_cuda_engine_says_which_extra_when_numba_cuda_is_missing_or_wrong(monkeypatch):
    monkeypatch.setattr(cudadriver, "driver_cuda_version", lambda: (12, 4))
    monkeypatch.setattr(cudadriver, "installed_cuda_major", lambda: None)
    why = cuda_engine.device_problem()
    _one_line(why)
    assert "numba-cuda is not installed" in why and "pip install 'mbunet[cu12]'" in why
    monkeypatch.setattr(cudadriver, "installed_cuda_major", lambda: 13)
    monkeypatch.setattr(cuda_engine, "simulator_enabled", lambda: False)
    why = cuda_engine.device_problem()
    _one_line(why)
    assert "installed for CUDA 13" in why and "supports CUDA 12.4" in why


# -------------------------------------------------------------------------------------------- fallbacks, one line
@pytest.fixture
def no_gpu_facts(monkeypatch, tmp_path):
    """A CUDA 12.4 driver with an sm_86 GPU, an empty shipped folder, an empty cache, and no nvcc anywhere."""
    monkeypatch.setattr(chooser, "driver_cuda_version", lambda: (12, 4))
    monkeypatch.setattr(chooser, "gpu0_capability", lambda: (8, 6))
    monkeypatch.setattr(prebuilt, "PREBUILT_DIR", tmp_path / "prebuilt")
    (tmp_path / "prebuilt").mkdir()
    monkeypatch.setenv("MBUNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NVCC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    chooser.open_library.cache_clear()
    yield tmp_path / "prebuilt"
    chooser.open_library.cache_clear()


def _ship(directory: Path, so: bytes, major: int = 12) -> Path:
    """A shipped pair in `directory` built 'from the current sources': `so` is the library's bytes."""
    lib = directory / f"bmma-cuda{major}.so"
    lib.write_bytes(so)
    (directory / f"bmma-cuda{major}.json").write_text(json.dumps(
        {"library": lib.name, "cuda": [major, 4], "archs": list(build.ARCHS), "ptx": "compute_90",
         "machine": os.uname().machine, "source_hash": build.source_hash(build.ARCHS)}))
    return lib


def test_nothing_shipped_and_no_nvcc_is_one_line(no_gpu_facts):
    why = chooser.library_problem()
    _one_line(why)
    assert "no library is shipped" in why and "nvcc not found" in why
    with pytest.raises(KernelBuildError) as info:
        chooser.open_library()
    _one_line(str(info.value))


def test_a_shipped_library_that_does_not_load_falls_back_in_one_line(no_gpu_facts):
    _ship(no_gpu_facts, b"not an ELF file")
    assert chooser.plan().path is not None  # it fits on paper: the load is what fails
    with pytest.raises(KernelBuildError) as info:
        chooser.open_library()
    _one_line(str(info.value))
    assert "did not load" in str(info.value) and "nvcc not found" in str(info.value)


def test_a_damaged_record_is_one_line(no_gpu_facts):
    (no_gpu_facts / "bmma-cuda12.json").write_text("{")
    choice = chooser.plan()
    assert choice.path is None and "unreadable shipped-library record bmma-cuda12.json" in choice.reason
    _one_line(str(choice))


def test_a_local_nvcc_newer_than_the_driver_is_refused_in_one_line(no_gpu_facts, monkeypatch):
    monkeypatch.setattr(build, "find_nvcc", lambda: "/opt/cuda-13/bin/nvcc")
    monkeypatch.setattr(build, "nvcc_version", lambda nvcc: (13, 0))
    why = chooser.library_problem()
    _one_line(why)
    assert "the local nvcc 13.0 builds for CUDA 13 drivers, this one supports CUDA 12.4" in why


# ------------------------------------------------------------------------------------------ the shipped libraries
def _shipped_or_skip() -> list[Shipped]:
    libs = prebuilt.shipped()
    majors = sorted(lib.cuda[0] for lib in libs)
    if majors != [12, 13]:
        message = f"shipped bmma libraries for CUDA {majors or 'none'}, expected 12 and 13: run .ci/build-prebuilt"
        if os.environ.get("MBUNET_REQUIRE_PREBUILT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return libs


@pytest.mark.parametrize("major", [12, 13])
def test_shipped_library_holds_sass_for_every_arch_ptx_and_entry_points(major):
    lib = next(s for s in _shipped_or_skip() if s.cuda[0] == major)
    assert lib.source_hash == build.source_hash(build.ARCHS), "shipped library is stale: run .ci/build-prebuilt"
    assert lib.archs == build.ARCHS and lib.ptx == "compute_90" and lib.machine == os.uname().machine
    elf = _tool_output("cuobjdump", "--list-elf", str(lib.path))
    assert {line.rsplit(".", 2)[-2] for line in elf.splitlines() if ".cubin" in line} == set(build.ARCHS)
    assert "sm_90.ptx" in _tool_output("cuobjdump", "--list-ptx", str(lib.path))
    if shutil.which("nm"):
        dynsyms = subprocess.run(["nm", "-D", "--defined-only", str(lib.path)], capture_output=True, text=True).stdout
        assert set(ENTRY_POINTS) <= {line.split()[-1] for line in dynsyms.splitlines() if line.strip()}


@pytest.mark.slow
@pytest.mark.parametrize("major", [12, 13])
def test_shipped_library_uses_binary_tensor_cores(major):
    lib = next(s for s in _shipped_or_skip() if s.cuda[0] == major)
    if _cuda_tool("nvdisasm") is None:
        pytest.skip("nvdisasm not installed (pip install nvidia-cuda-nvdisasm)")
    per_kernel = _mma_per_kernel(_tool_output("cuobjdump", "-sass", "-arch", "sm_80", str(lib.path)))
    assert set().union(*(v for k, v in per_kernel.items() if "bconv" in k)) >= {"BMMA.168256.AND.POPC"}


def test_shipped_library_loads_here_and_reports_itself(monkeypatch):
    """Without a GPU the library still loads (the driver is only asked at the first call) and says which it is."""
    libs = _shipped_or_skip()
    monkeypatch.setattr(chooser, "driver_cuda_version", lambda: (13, 0))
    monkeypatch.setattr(chooser, "gpu0_capability", lambda: (8, 6))
    chooser.open_library.cache_clear()
    try:
        lib, choice = chooser.open_library()
    finally:
        chooser.open_library.cache_clear()
    assert choice.path == lib.path == libs[0].path and choice.label.startswith("shipped CUDA 13")
    check = doctor._bmma_library()
    assert check.ok and check.detail.startswith("shipped CUDA 13")


# ------------------------------------------------------------------------------------------------ with a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("major", [12, 13])
def test_each_shipped_library_that_fits_is_bit_exact_with_reference(major, monkeypatch):
    why = bmma_engine.BmmaEngine.unavailable()
    if why is not None:
        pytest.skip(f"bmma cannot run here: {why}")
    lib = next(s for s in _shipped_or_skip() if s.cuda[0] == major)
    driver, cc = cudadriver.driver_cuda_version(), cudadriver.gpu0_capability()
    misfit = chooser.misfit(lib, driver, cc, build.source_hash(build.ARCHS), os.uname().machine)
    if misfit:
        pytest.skip(f"{lib.path.name} cannot run here: {misfit}")
    choice = chooser.Choice(lib.path, f"shipped {lib.name}", "forced by the test")
    monkeypatch.setattr(bmma_engine, "open_library", lambda: (load_library(lib.path), choice))
    from mbunet.random_model import random_quantized_model

    model = random_quantized_model(Architecture(width=7, classes=3, input_size=(48, 80)), seed=2)
    frames = random_frames(2, 48, 80, seed=3)
    engine = create_engine("bmma", model)
    try:
        masks, bits = engine.segment_bits(frames)
    finally:
        engine.close()
    ref_masks, ref_bits = create_engine("reference", model).segment_bits(frames)
    assert engine.detail == f"library: {choice}"
    for name in ref_bits:
        np.testing.assert_array_equal(bits[name], ref_bits[name], err_msg=name)
    np.testing.assert_array_equal(masks, ref_masks)

"""The bmma library without a GPU: nvcc builds every target, the symbols are there, BMMA/IMMA instructions are
in the SASS, loading it here gives error strings (not crashes), and the engine says why it cannot run."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mbunet.app.cli import main as cli_main
from mbunet.cudakernels.bmma import build
from mbunet.cudakernels.bmma.lib import FLAVOURS, OPS, StepStruct, load_library
from mbunet.arch import Architecture, plan
from mbunet.engines.bmma import BmmaEngine, device_problem, requested_form
from mbunet.errors import ConfigError, EngineUnavailable, KernelBuildError
from mbunet.prepared import prepare
from mbunet.random_model import random_quantized_model

ENTRY_POINTS = ("mb_last_error", "mb_step_size", "mb_device", "mb_create", "mb_run", "mb_fetch", "mb_destroy",
                "mb_mma_bench")
NO_GPU = device_problem()


def _cuda_tool(name: str) -> str | None:
    """cuobjdump/nvdisasm from PATH, the CUDA toolkit, or the nvidia-cuda-cuobjdump/-nvdisasm wheels."""
    found = shutil.which(name) or shutil.which(name, path="/usr/local/cuda/bin")
    if found:
        return found
    try:
        import nvidia
    except ImportError:
        return None
    for base in nvidia.__path__:
        cand = Path(base) / "cu13" / "bin" / name
        if cand.is_file():
            return str(cand)
    return None


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bmma-cache")


@pytest.fixture(scope="session")
def built(cache) -> Path:
    """One full build (every arch) into a fresh cache for this session: the real compile (10-25 s on 2 cores)."""
    if shutil.which("nvcc") is None and not os.environ.get("NVCC"):
        pytest.skip("nvcc not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MBUNET_CACHE", str(cache))
        return build.build()


def _tool_output(tool: str, *args: str) -> str:
    path = _cuda_tool(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (pip install nvidia-cuda-{tool})")
    env = dict(os.environ, PATH=f"{Path(path).parent}:{os.environ.get('PATH', '')}")
    return subprocess.run([path, *args], capture_output=True, text=True, check=True, env=env).stdout


@pytest.mark.slow
def test_fatbin_holds_sass_for_every_arch_and_ptx_for_the_newest(built):
    elf = _tool_output("cuobjdump", "--list-elf", str(built))
    for arch in build.ARCHS:
        assert f".{arch}.cubin" in elf, arch
    assert "sm_90.ptx" in _tool_output("cuobjdump", "--list-ptx", str(built))  # PTX of compute_90


def _mma_per_kernel(sass: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    kernel = ""
    for line in sass.splitlines():
        if "Function :" in line:
            kernel = line.split("Function :")[1].strip()
        for tok in line.replace(";", " ").split():
            if tok.startswith(("BMMA", "IMMA", "HMMA.16816")):
                found.setdefault(kernel, set()).add(tok)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("arch,conv_mma", [
    ("sm_75", {"BMMA.88128.XOR.POPC"}),                                    # Turing: XOR form only
    ("sm_80", {"BMMA.168256.AND.POPC", "BMMA.168256.XOR.POPC"}),
    ("sm_86", {"BMMA.168256.AND.POPC", "BMMA.168256.XOR.POPC"}),
    ("sm_89", {"BMMA.168256.AND.POPC", "BMMA.168256.XOR.POPC"}),
    ("sm_90", {"BMMA.168256.AND.POPC"}),                                   # Hopper: XOR emulated with AND
])
def test_sass_uses_binary_tensor_cores(built, arch, conv_mma):
    if _cuda_tool("nvdisasm") is None:
        pytest.skip("nvdisasm not installed (pip install nvidia-cuda-nvdisasm)")
    per_kernel = _mma_per_kernel(_tool_output("cuobjdump", "-sass", "-arch", arch, str(built)))
    conv = set().union(*(v for k, v in per_kernel.items() if "bconv" in k))
    assert conv == conv_mma
    if arch != "sm_75":  # the int8/fp16 bench loops exist from sm_80 on
        bench = set().union(*(v for k, v in per_kernel.items() if "bench" in k))
        assert {"IMMA.16832.S8.S8", "HMMA.16816.F32"} <= bench


@pytest.mark.slow
def test_exported_entry_points(built):
    if shutil.which("nm"):
        dynsyms = subprocess.run(["nm", "-D", "--defined-only", str(built)], capture_output=True, text=True).stdout
        exported = {line.split()[-1] for line in dynsyms.splitlines() if line.strip()}
        assert set(ENTRY_POINTS) <= exported
    dll = ctypes.CDLL(str(built))
    for name in ENTRY_POINTS:
        assert hasattr(dll, name)


@pytest.mark.slow
def test_step_struct_layout_matches_c(built):
    lib = load_library(built)
    assert lib._dll.mb_step_size() == ctypes.sizeof(StepStruct)


@pytest.mark.slow
@pytest.mark.skipif(NO_GPU is None, reason="a CUDA device is present: the no-GPU path cannot be observed")
def test_without_gpu_every_call_returns_an_error_string(built):
    lib = load_library(built)
    with pytest.raises(EngineUnavailable, match="CUDA error"):
        lib.device()
    with pytest.raises(EngineUnavailable, match="CUDA error"):
        lib.create([StepStruct()], "and")
    for flavour in FLAVOURS:
        with pytest.raises(EngineUnavailable, match="CUDA error"):
            lib.mma_bench(flavour, 10)
    lib._dll.mb_destroy(None)  # a null handle is a no-op, not a crash


@pytest.mark.skipif(NO_GPU is None, reason="a CUDA device is present")
def test_engine_unavailable_says_why():
    why = BmmaEngine.unavailable()
    assert why and "no CUDA device" in why
    fp = random_quantized_model(Architecture(width=4, input_size=(16, 16)))
    fp.arch = Architecture(width=4, input_size=(16, 16), quantized=False)
    assert "not fp" in BmmaEngine.unavailable(fp)


def test_missing_nvcc_is_a_one_line_kernel_build_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NVCC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setenv("MBUNET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(KernelBuildError, match="nvcc not found") as info:
        build.build()
    assert "\n" not in str(info.value)


def test_bad_arch_is_refused():
    assert build.normalise_archs(["90", "sm_80", "8.6", "sm_80"]) == ("sm_80", "sm_86", "sm_90")
    with pytest.raises(KernelBuildError, match="sm_70"):
        build.normalise_archs(["sm_70"])


def test_cache_key_follows_sources_and_archs(tmp_path, monkeypatch):
    for p in build.sources():
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path)
    before = build.source_hash(build.ARCHS)
    assert build.source_hash(("sm_80",)) != before
    (tmp_path / "bconv.cuh").write_text((tmp_path / "bconv.cuh").read_text() + "\n// edited\n")
    assert build.source_hash(build.ARCHS) != before


@pytest.mark.slow
def test_cli_prints_the_library_path_last(capsys, built, monkeypatch):
    monkeypatch.setenv("MBUNET_CACHE", str(built.parent))
    assert cli_main(["build-kernels"]) == 0  # cached by the session build: same sources, same archs
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(built)


def test_form_override_is_validated(monkeypatch):
    monkeypatch.setenv("MBUNET_BMMA_FORM", "XOR")
    assert requested_form() == "xor"
    monkeypatch.setenv("MBUNET_BMMA_FORM", "nand")
    with pytest.raises(ConfigError, match="nand"):
        requested_form()


def test_network_description_follows_the_plan():
    """The mb_step array built for C++ (no GPU needed): ops, sources, sizes and weight pointers per step."""
    arch = Architecture(width=5, classes=3, input_size=(32, 48)).with_masked({"up-CT1", "down-C2"})
    model = random_quantized_model(arch, seed=3)
    engine = BmmaEngine()
    engine.steps = plan(arch)
    names = [s.name for s in engine.steps]
    layers = prepare(model)
    for form in ("xor", "and"):
        structs, alive = engine._describe(model, form)
        for st, s in zip(structs, engine.steps):
            conv = s.op in ("conv3x3", "convT2x2")
            if conv:  # the host's bounds of the form asked for, [groups][cout] (pipeline.prepared)
                groups = 1 if s.op == "conv3x3" else 4
                got = np.ctypeslib.as_array(st.bound, (groups * s.cout,)).reshape(groups, s.cout)
                np.testing.assert_array_equal(got, getattr(layers[s.name], f"{form}_bound"), err_msg=form)
    for st, s in zip(structs, engine.steps):
        conv = s.op in ("conv3x3", "convT2x2")
        assert st.op == OPS[s.op] and (st.height, st.width) == (s.height, s.width)
        assert st.src0 == (names.index(s.inputs[0]) if s.inputs[0] != "frames" else -1)
        assert st.src1 == (names.index(s.inputs[1]) if s.op == "concat" else -1)
        assert bool(st.pos) == conv and bool(st.threshold) == (s.op in ("input", "output")) and bool(st.bound) == conv
        if s.op == "concat":
            assert st.cout_words == st.cin_words == s.cin_words
        elif s.op == "output":
            assert st.cout_words == arch.classes
    first_conv = structs[1]
    pos = model.arrays["in.1.pos"]
    assert ctypes.addressof(first_conv.pos.contents) == pos.ctypes.data or any(
        ctypes.addressof(first_conv.pos.contents) == a.ctypes.data for a in alive)

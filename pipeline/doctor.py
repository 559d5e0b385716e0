"""What this machine has for mbunet: libraries, video backends, CUDA devices, nvcc, engines, power sources."""
from __future__ import annotations

import importlib
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _version(module: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # an optional library may be missing or broken: report, never crash
        return Check(module, False, f"not importable ({type(e).__name__}: {e})")
    return Check(module, True, getattr(mod, "__version__", "installed"))


def _opencv() -> Check:
    try:
        import cv2
    except ImportError as e:
        return Check("opencv", False, str(e))
    info = cv2.getBuildInformation()
    backends = []
    for name in ("FFMPEG", "GStreamer", "V4L/V4L2"):
        m = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", info, re.M)
        backends.append(f"{name}: {m.group(1) if m else 'NO'}")
    return Check("opencv", True, f"{cv2.__version__} ({', '.join(backends)})")


def _numba_cuda() -> Check:
    try:
        from importlib.metadata import version

        ver = version("numba-cuda")
    except Exception:
        return Check("numba-cuda", False, "not installed (`cuda driver` above says which extra fits)")
    try:
        from numba import cuda

        if not cuda.is_available():
            return Check("numba-cuda", True, f"{ver}; no CUDA GPU/driver visible")
        devs = [f"{d.name.decode() if isinstance(d.name, bytes) else d.name} sm_{d.compute_capability[0]}"
                f"{d.compute_capability[1]}" for d in cuda.gpus]
        return Check("numba-cuda", True, f"{ver}; devices: {', '.join(devs)}")
    except Exception as e:
        return Check("numba-cuda", False, f"{ver}; CUDA check failed: {e}")


def _cuda_driver() -> Check:
    """The driver's CUDA version and the numba-cuda extra that fits it, in one line."""
    from .cudadriver import driver_cuda_version, extra_advice, extra_for, numba_cuda_mismatch

    driver = driver_cuda_version()
    mismatch = numba_cuda_mismatch(driver)
    return Check("cuda driver", driver is not None and extra_for(driver) is not None and mismatch is None,
                 mismatch or extra_advice(driver))


def _bmma_library() -> Check:
    """Which bmma library the engine would load here and why, without building or loading it."""
    from .engines.bmma_library import library_problem, plan

    choice = plan()
    why = library_problem() if choice.path is None else None
    built_later = "" if choice.path else "; nvcc builds it on first use"
    return Check("bmma lib", why is None, why or f"{choice}{built_later}")


def _nvcc() -> Check:
    path = shutil.which("nvcc")
    if not path:
        return Check("nvcc", False, "not on PATH: the bmma library cannot be built here")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    rel = re.search(r"release ([\d.]+)", out)
    return Check("nvcc", True, f"{rel.group(1) if rel else '?'} at {path}")


def _torch_cuda() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", False, "not installed: torch-fp32/fp16 baselines and training unavailable")
    if torch.cuda.is_available():
        cc = torch.cuda.get_device_capability()
        return Check("torch", True, f"{torch.__version__}; CUDA {torch.version.cuda}, "
                                    f"{torch.cuda.get_device_name()} sm_{cc[0]}{cc[1]}")
    return Check("torch", True, f"{torch.__version__}; no CUDA device")


def environment_checks() -> list[Check]:
    return [Check("python", True, f"{platform.python_version()} ({platform.machine()}, {platform.system()})"),
            _version("numpy"), _version("numba"), _cuda_driver(), _numba_cuda(), _torch_cuda(), _opencv(), _nvcc(),
            _bmma_library()]


def engine_checks() -> list[Check]:
    """Every registered engine, and why it cannot run here when it cannot."""
    from .engines.base import engine_class, list_engines

    rows = []
    for name in list_engines():
        why = engine_class(name).unavailable(None)
        rows.append(Check(name, why is None, "available" if why is None else why))
    return rows


def power_check(sysfs_root: str | None = None) -> Check:
    from .power import open_power_meter

    meter = open_power_meter(sysfs_root)
    try:
        return Check("power", meter.available, meter.source)
    finally:
        meter.close()


def video_io_checks() -> list[Check]:
    """GStreamer through PyGObject (what it decodes and encodes with), and which path each kind of source takes
    here and why: the same choice `mbunet run` makes (pipeline.gst.choose)."""
    from .errors import SourceError
    from .gst import runtime
    from .gst.choose import choose
    from .uri import parse_uri

    problem = runtime.problem()
    if problem is None:
        rows = [Check("gstreamer", True, f"{runtime.version()}; {_gst_elements(runtime)}")]
    else:
        rows = [Check("gstreamer", False, problem)]
    examples = {"csi://": "csi://0", "gst pipeline": "videotestsrc ! appsink", "v4l2://": "/dev/video0",
                "v4l2 format": "v4l2:///dev/video0?format=mjpeg", "files": "clip.mp4", "rtsp://": "rtsp://cam/s"}
    for label, example in examples.items():
        try:
            choice = choose(parse_uri(example))
        except SourceError as e:
            rows.append(Check(label, False, str(e).split(": ", 1)[1]))
            continue
        absent = runtime.missing(["nvarguscamerasrc"]) if label == "csi://" and choice.gst else None
        rows.append(Check(label, absent is None, choice.reason + (f"; {absent}" if absent else "")))
    return rows


def _gst_elements(runtime) -> str:
    def first(*elements: str) -> str:
        return next((e for e in elements if runtime.have(e)), f"none ({runtime.missing(elements[-1:])})")

    server = runtime.problem("GstRtspServer")
    return (f"decode {first('nvv4l2decoder', 'avdec_h264')}, encode {first('nvv4l2h264enc', 'x264enc')}, "
            f"rtsp:// output {'yes' if server is None else 'no: ' + server}")

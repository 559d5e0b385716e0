"""Which sources go through GStreamer (PyGObject) and which through OpenCV, and why: `mbunet doctor` prints the
same reasons the run logs.

--input-backend auto (the default): GStreamer pipelines and CSI cameras through PyGObject (the OpenCV wheels have no
GStreamer; an OpenCV built with it is the fallback); files and RTSP through PyGObject where the hardware decoder
nvv4l2decoder is installed (Jetson), else OpenCV's FFmpeg; a V4L2 camera through PyGObject when its URI asks for a
format (v4l2:///dev/video0?format=mjpeg), else OpenCV's V4L2. `gst` and `opencv` force one for the schemes both read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..uri import Uri
from . import runtime

BACKENDS = ("auto", "opencv", "gst")
#: the input schemes GStreamer reads here; the other network schemes (udp, rtp, http) are OpenCV's
SCHEMES = ("gst", "csi", "v4l2", "file", "rtsp", "rtsps")
HARDWARE_DECODER = "nvv4l2decoder"


@dataclass(frozen=True)
class Choice:
    gst: bool     # True: pipeline.gst.source.GstSource; False: the OpenCV-based source of sources.py
    reason: str


def on_jetson() -> bool:
    """L4T (JetPack) marks its root file system with this file; the Jetson hardware codecs exist only there."""
    return Path("/etc/nv_tegra_release").exists()


def choose(uri: Uri, requested: str = "auto") -> Choice:
    """The backend for `uri`; SourceError when the requested or the only possible one cannot run here."""
    if requested not in BACKENDS:
        raise SourceError(f"input backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if uri.scheme not in SCHEMES:
        if requested == "gst":
            raise SourceError(f"{uri}: --input-backend gst reads {', '.join(s + '://' for s in SCHEMES)}; for "
                              f"{uri.scheme}:// write a GStreamer pipeline ending in appsink")
        return Choice(False, "OpenCV")
    if requested == "opencv":
        return Choice(False, "OpenCV (--input-backend opencv)")
    if requested == "auto" and uri.scheme in ("file", "rtsp", "rtsps") and not on_jetson():
        # GStreamer is not even loaded here: its plugins share the process with numba's LLVM, and on a desktop
        # (where nvv4l2decoder does not exist) that costs start-up time and, with some plugin sets, a crash later
        return Choice(False, "OpenCV's FFmpeg, software decode (not a Jetson: no nvv4l2decoder; "
                             "--input-backend gst decodes with GStreamer)")
    problem = runtime.problem()
    if requested == "gst":
        if problem:
            raise SourceError(f"{uri}: --input-backend gst: {problem}")
        return Choice(True, "GStreamer through PyGObject (--input-backend gst)")
    if uri.scheme in ("gst", "csi"):
        if problem is None:
            return Choice(True, "GStreamer through PyGObject")
        from ..sources import gstreamer_available

        if gstreamer_available():
            return Choice(False, f"OpenCV's GStreamer ({problem})")
        raise SourceError(f"{uri}: needs GStreamer, which this OpenCV lacks: {problem}")
    if uri.scheme == "v4l2":
        if "format" not in uri.options:
            return Choice(False, "OpenCV's V4L2")
        if problem:
            raise SourceError(f"{uri}: ?format= needs GStreamer: {problem}")
        return Choice(True, "GStreamer through PyGObject (a capture format was asked for)")
    if problem is None and runtime.have(HARDWARE_DECODER):
        return Choice(True, f"GStreamer through PyGObject: hardware decoder {HARDWARE_DECODER}")
    why = problem or f"no hardware decoder ({HARDWARE_DECODER})"
    return Choice(False, f"OpenCV's FFmpeg, software decode ({why}; --input-backend gst decodes with GStreamer)")

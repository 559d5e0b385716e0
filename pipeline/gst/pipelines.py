"""GStreamer pipeline descriptions for mbunet's sources and network outputs, as gst-launch strings.

Plain text, built from what is installed (`have(element)`), so tests check the Jetson variants on any machine.
Hardware is used where present: nvarguscamerasrc and nvvidconv for CSI cameras, nvv4l2decoder (picked by decodebin,
where JetPack ranks it first) with nvvidconv to bring its NVMM frames to system memory, nvv4l2h264enc/h265enc for
encoding; elsewhere the software elements (avdec_* through decodebin, jpegdec, x264enc, x265enc).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: the appsink mbunet pulls frames from, in its own pipelines and appended to a user's
SINK_NAME = "mbunet_sink"
SRC_NAME = "mbunet_src"
TO_BGR = "videoconvert ! video/x-raw,format=BGR"
CODECS = ("h264", "h265")
DEFAULT_BITRATE = 4_000_000  # bits/s, as jetson-utils' videoOutput
RTP_PAYLOAD_TYPE = 96


@dataclass(frozen=True)
class Encoding:
    """What a network output encodes: codec (h264, h265), bitrate in bits/s, a keyframe every `gop` frames (0 = one
    a second at the stream's rate, so a receiver that joins waits at most that long for a picture)."""

    codec: str = "h264"
    bitrate: int = DEFAULT_BITRATE
    gop: int = 0


def quote(value: str) -> str:
    """A property value for gst-launch syntax (paths and URLs with spaces or quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def appsink(live: bool) -> str:
    """Live sources keep only the newest frame (a slow engine never makes the camera lag behind); files wait.
    sync=false: frames are handed over as they come, --input-rate paces when asked."""
    return f"appsink name={SINK_NAME} sync=false " + ("drop=true max-buffers=1" if live else "drop=false max-buffers=4")


def csi(sensor: str, width: int, height: int, rate: float) -> str:
    """A Jetson MIPI CSI camera; width/height/rate pick the sensor mode (1280x720 at 30 by default)."""
    w, h, fps = width or 1280, height or 720, int(rate or 30)
    return (f"nvarguscamerasrc sensor-id={sensor or 0} ! video/x-raw(memory:NVMM),width={w},height={h},"
            f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! {TO_BGR} ! {appsink(True)}")


def v4l2(device: str, width: int, height: int, rate: float, fmt: str, have: Callable[[str], bool]) -> str:
    """A V4L2 camera, raw (fmt "raw") or MJPEG (fmt "mjpeg", decoded by nvjpegdec on Jetson, jpegdec elsewhere)."""
    device = f"/dev/video{device}" if device.isdigit() else device
    size = "".join(f",{k}={v}" for k, v in (("width", width), ("height", height)) if v)
    size += f",framerate={int(rate)}/1" if rate else ""
    if fmt == "mjpeg":
        decode = f"image/jpeg{size} ! {'nvjpegdec ! video/x-raw' if have('nvjpegdec') else 'jpegdec'} ! "
    else:
        decode = f"video/x-raw{size} ! "
    return f"v4l2src device={quote(device)} ! {decode}{TO_BGR} ! {appsink(True)}"


def decoded(have: Callable[[str], bool]) -> str:
    """decodebin and what follows it up to BGR: through nvvidconv where the hardware decoder is installed."""
    return "decodebin ! " + ("nvvidconv ! video/x-raw,format=BGRx ! " if have("nvv4l2decoder") else "") + TO_BGR


def file(path: str, have: Callable[[str], bool]) -> str:
    return f"filesrc location={quote(path)} ! {decoded(have)} ! {appsink(False)}"


def rtsp(url: str, latency_ms: int, transport: str, have: Callable[[str], bool]) -> str:
    """An RTSP camera with a `latency_ms` jitter buffer (rtspsrc's 2000 ms default is what makes jetson-inference's
    RTSP lag); late packets are dropped rather than waited for."""
    return (f"rtspsrc location={quote(url)} latency={latency_ms} protocols={transport} drop-on-latency=true "
            f"! {decoded(have)} ! {appsink(True)}")


def user(description: str, live: bool) -> str:
    """A user's pipeline ending in appsink, with BGR conversion before it and mbunet's appsink settings."""
    head, _, last = description.rpartition("!")
    if not head or last.split()[:1] != ["appsink"]:
        raise ValueError("a GStreamer pipeline must end in appsink (... ! appsink)")
    # the user's own appsink properties stay; name and the frame-handling ones are mbunet's (later ones win)
    return f"{head.strip()} ! {TO_BGR} ! {last.strip()} {appsink(live).removeprefix('appsink ')}"


def encoder(enc: Encoding, fps: float, have: Callable[[str], bool]) -> str:
    """BGR frames -> an H.264/H.265 byte stream with SPS/PPS (VPS) before every keyframe, for receivers that join
    late; hardware (nvv4l2*enc) where installed, x264enc/x265enc otherwise, tuned for latency."""
    if enc.codec not in CODECS:
        raise ValueError(f"output codec must be one of {', '.join(CODECS)}, got {enc.codec!r}")
    gop = max(1, enc.gop or round(fps or 30))
    hardware = f"nvv4l2{enc.codec}enc"
    if have(hardware):
        head = (f"videoconvert ! nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! {hardware} bitrate={enc.bitrate} "
                f"iframeinterval={gop} idrinterval={gop} insert-sps-pps=true maxperf-enable=true")
    else:
        head = (f"videoconvert ! video/x-raw,format=I420 ! x{enc.codec[1:]}enc bitrate={max(1, enc.bitrate // 1000)} "
                f"key-int-max={gop} speed-preset=ultrafast tune=zerolatency")
    return f"{head} ! {enc.codec}parse config-interval=-1"


def payloader(enc: Encoding, name: str = "") -> str:
    return (f"rtp{enc.codec}pay{f' name={name}' if name else ''} pt={RTP_PAYLOAD_TYPE}")


def appsrc() -> str:
    """Where mbunet pushes annotated frames; the caps are set on the first frame (its size)."""
    return f"appsrc name={SRC_NAME} is-live=true format=time do-timestamp=true"


def rtp_output(host: str, port: int, enc: Encoding, fps: float, have: Callable[[str], bool]) -> str:
    return (f"{appsrc()} ! {encoder(enc, fps, have)} ! {payloader(enc)} "
            f"! udpsink host={host} port={port} sync=false async=false")


def rtsp_media(enc: Encoding, fps: float, have: Callable[[str], bool]) -> str:
    """The media an RTSP server builds per (shared) stream: gst-rtsp-server wants the payloader named pay0."""
    return f"( {appsrc()} ! {encoder(enc, fps, have)} ! {payloader(enc, 'pay0')} )"


def sdp(host: str, port: int, codec: str) -> str:
    """The session description VLC, ffmpeg or gst (sdpdemux) need to receive the RTP stream; the parameter sets
    travel in-band, so none are listed here."""
    name = {"h264": "H264", "h265": "H265"}[codec]
    fmtp = f"a=fmtp:{RTP_PAYLOAD_TYPE} packetization-mode=1\n" if codec == "h264" else ""
    return (f"v=0\no=- 0 0 IN IP4 {host}\ns=mbunet\nc=IN IP4 {host}\nt=0 0\n"
            f"m=video {port} RTP/AVP {RTP_PAYLOAD_TYPE}\na=rtpmap:{RTP_PAYLOAD_TYPE} {name}/90000\n{fmtp}")

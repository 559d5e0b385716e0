"""Network outputs through GStreamer: `rtp://HOST:PORT` (H.264/H.265 over RTP/UDP, payload type 96, with an .sdp file
for the receiver) and `rtsp://@:PORT/NAME` (an RTSP server that plays the overlay to any number of clients).

Both encode on the hardware encoder where installed (nvv4l2h264enc/h265enc), x264enc/x265enc otherwise, with the
parameter sets repeated before every keyframe and a keyframe a second, so a ground station that joins late or loses
packets has a picture within a second. Frames are pushed from the sinks thread; a network output never blocks the
run: when the encoder falls behind, frames are dropped and counted (`dropped`).
"""
from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SinkError
from ..preprocess import letterbox
from ..sinks import FrameSink, encodable_size
from ..uri import Uri
from . import pipelines, runtime

#: frames an encoder may have queued before new ones are dropped
BACKLOG_FRAMES = 4


class _Pusher:
    """Frames of one size into appsrc elements: the size and caps come from the first frame, later frames of
    another size are letterboxed into it (as video files do)."""

    def __init__(self, gi, fps: float) -> None:
        self.gi, self.fps = gi, fps if fps and fps > 0 else 30.0
        self.size: tuple[int, int] | None = None
        self.caps = None
        self.dropped = 0

    def frame(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if self.size is None:
            self.size = encodable_size(w, h)  # the encoders take even sizes of at least 16 px
            rate = Fraction(self.fps).limit_denominator(1001)
            self.caps = self.gi.Gst.Caps.from_string(
                f"video/x-raw,format=BGR,width={self.size[0]},height={self.size[1]},"
                f"framerate={rate.numerator}/{rate.denominator}")
        if (w, h) != self.size:
            image = letterbox(image, (self.size[1], self.size[0]))
        return np.ascontiguousarray(image)

    def push(self, appsrc, image: np.ndarray) -> bool:
        """Push one frame (already through `frame`); False when the element refused it."""
        if appsrc.get_property("caps") is None:
            appsrc.set_property("caps", self.caps)
        if appsrc.get_property("current-level-bytes") > BACKLOG_FRAMES * image.nbytes:
            self.dropped += 1
            return True
        flow = appsrc.emit("push-buffer", self.gi.Gst.Buffer.new_wrapped(image.tobytes()))
        return flow == self.gi.Gst.FlowReturn.OK


def _load(uri: Uri, *namespaces: str):
    try:
        return runtime.load(*namespaces)
    except ImportError as e:
        raise SinkError(f"{uri}: {e}") from None


def _parse(uri: Uri, description: str, gi):
    try:
        return runtime.parse(description, gi)
    except ValueError as e:
        raise SinkError(f"{uri}: {e}") from None


def _port(uri: Uri, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SinkError(f"{uri}: needs a port number 1-65535, got {text or 'none'!r}")
    return int(text)


class RtpSink(FrameSink):
    """H.264/H.265 over RTP/UDP to HOST:PORT; writes <run_dir>/rtp-PORT.sdp at once, so a receiver can start first."""

    def __init__(self, uri: Uri, fps: float, enc: pipelines.Encoding, run_dir: str | Path) -> None:
        host, _, port = uri.location.rpartition(":")
        if not host:
            raise SinkError(f"{uri}: expected rtp://HOST:PORT (the receiver's address)")
        self.uri, self.host, self.port = uri, host, _port(uri, port)
        self.gi = _load(uri)
        try:
            description = pipelines.rtp_output(host, self.port, enc, fps, runtime.have)
        except ValueError as e:
            raise SinkError(f"{uri}: {e}") from None
        self.sdp_path = Path(run_dir) / f"rtp-{self.port}.sdp"
        try:
            self.sdp_path.write_text(pipelines.sdp(host, self.port, enc.codec), encoding="ascii")
        except OSError as e:
            raise SinkError(f"{self.sdp_path}: cannot write the SDP file ({e.strerror})") from e
        self._pipeline = _parse(uri, description, self.gi)
        self._src = self._pipeline.get_by_name(pipelines.SRC_NAME)
        self._pusher = _Pusher(self.gi, fps)
        if self._pipeline.set_state(self.gi.Gst.State.PLAYING) == self.gi.Gst.StateChangeReturn.FAILURE:
            self._raise("cannot start")
        self.frames = 0

    @property
    def dropped(self) -> int:
        return self._pusher.dropped

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        if self._pipeline is None:
            raise SinkError(f"{self.uri}: written after it was closed")
        if not self._pusher.push(self._src, self._pusher.frame(image)):
            self._raise("the encoder refused a frame")
        self.frames += 1

    def _raise(self, otherwise: str) -> None:
        msg = self._pipeline.get_bus().pop_filtered(self.gi.Gst.MessageType.ERROR)
        reason = f"{msg.src.get_name()}: {msg.parse_error()[0].message}" if msg else otherwise
        self.close()
        raise SinkError(f"{self.uri}: {reason}")

    def close(self) -> None:
        """Send what the encoder still holds (end of stream, at most 2 s), then stop."""
        if self._pipeline is None:
            return
        Gst = self.gi.Gst
        if self.frames:
            self._src.emit("end-of-stream")
            self._pipeline.get_bus().timed_pop_filtered(2 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        self._pipeline.set_state(Gst.State.NULL)
        self._pipeline = self._src = None


class RtspServerSink(FrameSink):
    """An RTSP server on [ADDRESS]:PORT serving the overlay at /NAME (rtsp://@:8554/live listens on every address).

    All clients share one encoder (gst-rtsp-server's shared media); with no client, frames are not encoded. The
    server runs its own GLib main loop in a thread.
    """

    def __init__(self, uri: Uri, fps: float, enc: pipelines.Encoding) -> None:
        address, _, rest = uri.location.partition(":")
        port, _, name = rest.partition("/")
        self.uri, self.port, self.mount = uri, _port(uri, port), "/" + (name or "live")
        self.gi = gi = _load(uri, "GstRtspServer")
        try:
            media = pipelines.rtsp_media(enc, fps, runtime.have)
        except ValueError as e:
            raise SinkError(f"{uri}: {e}") from None
        _parse(uri, media.strip("() "), gi).set_state(gi.Gst.State.NULL)  # a missing element fails here, not per client
        self._pusher = _Pusher(gi, fps)
        self._sources: list = []
        self._lock = threading.Lock()
        self._server = gi.GstRtspServer.RTSPServer()
        self._server.set_address("0.0.0.0" if address in ("", "@") else address)
        self._server.set_service(str(self.port))
        factory = gi.GstRtspServer.RTSPMediaFactory()
        factory.set_launch(media)
        factory.set_shared(True)
        factory.connect("media-configure", self._configure)
        self._server.get_mount_points().add_factory(self.mount, factory)
        self._context = gi.GLib.MainContext.new()
        self._listening = self._server.attach(self._context)
        if self._listening == 0:
            raise SinkError(f"{uri}: cannot listen on port {self.port} (in use, or the address is not this machine's)")
        self._loop = gi.GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="mbunet-rtsp-server", daemon=True)
        self._thread.start()
        self.frames = 0

    @property
    def dropped(self) -> int:
        return self._pusher.dropped

    def _configure(self, factory, media) -> None:
        """A client asked for the stream: its media's appsrc now takes frames until the media is torn down."""
        src = media.get_element().get_child_by_name(pipelines.SRC_NAME)
        with self._lock:
            self._sources.append(src)
        media.connect("unprepared", lambda _media: self._forget(src))

    def _forget(self, src) -> None:
        with self._lock:
            if src in self._sources:
                self._sources.remove(src)

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        frame = self._pusher.frame(image)
        with self._lock:
            sources = list(self._sources)
        for src in sources:  # a refused push means that client's media is going away: it is forgotten then
            self._pusher.push(src, frame)
        self.frames += 1

    def close(self) -> None:
        if self._loop is None:
            return
        with self._lock:
            sources, self._sources = self._sources, []
        for src in sources:
            src.emit("end-of-stream")
        self._server.client_filter(lambda _server, _client: self.gi.GstRtspServer.RTSPFilterResult.REMOVE)
        self._context.find_source_by_id(self._listening).destroy()  # the port is free again when close returns
        deadline = time.monotonic() + 5
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._loop.quit()  # again until it ends: a quit before the thread entered run() is forgotten by run()
            self._thread.join(0.05)
        self._loop = None


def open_network_output(uri: Uri, fps: float, enc: pipelines.Encoding, run_dir: str | Path) -> FrameSink:
    """The sink for an rtp:// or rtsp:// output URI; ?codec=h265&bitrate=BPS override the run's encoding."""
    try:
        enc = pipelines.Encoding(uri.option("codec", enc.codec), int(uri.option("bitrate", str(enc.bitrate))), enc.gop)
    except ValueError as e:
        raise SinkError(f"{uri}: bitrate must be a whole number of bits/s ({e})") from None
    if uri.scheme == "rtp":
        return RtpSink(uri, fps, enc, run_dir)
    return RtspServerSink(uri, fps, enc)

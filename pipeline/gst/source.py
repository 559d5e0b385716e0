"""Frames from GStreamer through PyGObject: CSI and V4L2 cameras, files and RTSP decoded by GStreamer (hardware
decoders where installed), and a user's pipeline ending in appsink.

Failures follow sources.py: what is not there now (a camera absent or busy, an RTSP server down or silent) is
SourceUnavailable, which a reconnecting run waits for; a wrong pipeline or a missing plugin is a SourceError that ends
the run with one line naming what to install.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SourceError, SourceUnavailable
from ..sources import Capture, FrameSource, SourceOptions, Status, _check_file
from ..uri import Uri
from . import pipelines, runtime

#: GStreamer error domains of a resource that may come back (device, server, network), not of a wrong pipeline
_TRANSIENT_DOMAINS = ("gst-resource-error-quark",)


class GstSource(FrameSource):
    """One GStreamer pipeline ending in mbunet's appsink; reopened from its description on reconnect."""

    def __init__(self, uri: Uri, options: SourceOptions) -> None:
        super().__init__(uri, options)
        try:
            self._gi = runtime.load()
        except ImportError as e:
            raise SourceError(f"{uri}: {e}") from None
        self.description, self.live = self._describe()
        self._pipeline = self._sink = self._first = None
        self._fps: float | None = None

    def _describe(self) -> tuple[str, bool]:
        """The pipeline text and whether the source is live."""
        scheme, loc, o = self.uri.scheme, self.uri.location, self.options
        if scheme == "csi":
            return pipelines.csi(loc, o.width, o.height, o.rate), True
        if scheme == "v4l2":
            fmt = self.uri.option("format", "raw")
            if fmt not in ("raw", "mjpeg"):
                raise SourceError(f"{self.uri}: format must be raw or mjpeg, got {fmt!r}")
            return pipelines.v4l2(loc, o.width, o.height, o.rate, fmt, runtime.have), True
        if scheme == "file":
            _check_file(Path(loc))
            return pipelines.file(loc, runtime.have), False
        if scheme in ("rtsp", "rtsps"):
            return pipelines.rtsp(loc, o.rtsp_latency_ms, o.rtsp_transport, runtime.have), True
        live = self._is_live(self._parse(loc))
        try:
            return pipelines.user(loc, live), live
        except ValueError as e:
            raise SourceError(f"{self.uri}: {e}") from None

    def _parse(self, description: str):
        try:
            return runtime.parse(description, self._gi)
        except ValueError as e:
            raise SourceError(f"{self.uri}: {e}") from None

    def _is_live(self, pipeline) -> bool:
        """A pipeline is live when a source element says so (cameras, udpsrc, videotestsrc is-live=true); a source
        that is a bin (rtspsrc) is a network stream, hence live."""
        sources = [e for e in pipeline.children if not e.sinkpads]
        pipeline.set_state(self._gi.Gst.State.NULL)
        return any(e.is_live if isinstance(e, self._gi.GstBase.BaseSrc) else True for e in sources)

    def open(self) -> None:
        self.close()
        Gst = self._gi.Gst
        self._pipeline = self._parse(self.description)
        self._sink = self._pipeline.get_by_name(pipelines.SINK_NAME)
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._fail("cannot start the pipeline")
        # the first frame proves the source works: a camera that is absent, a server that is silent fail here
        self._first = self._pull(self.options.open_timeout_s)
        if self._first is None:
            if self._sink.get_property("eos"):
                self._fail("ended before its first frame")
            self._fail(f"no frame within {self.options.open_timeout_s:g} s", transient=True)
        ok, num, den = self._first.get_caps().get_structure(0).get_fraction("framerate")
        self._fps = num / den if ok and num and den else None

    def _fail(self, otherwise: str, transient: bool = False) -> None:
        """Close and raise: the pipeline's own error when it posted one, else `otherwise`."""
        error = self._bus_error()
        self.close()
        if error is not None:
            message, transient = error
        else:
            message = otherwise
        if transient and self.live:
            raise SourceUnavailable(f"{self.uri}: {message}")
        raise SourceError(f"{self.uri}: {message}")

    def _bus_error(self) -> tuple[str, bool] | None:
        """The first error the pipeline posted, as (one line, may come back), or None."""
        msg = self._pipeline.get_bus().pop_filtered(self._gi.Gst.MessageType.ERROR) if self._pipeline else None
        if msg is None:
            return None
        err, _debug = msg.parse_error()
        line = f"{msg.src.get_name()}: {err.message}"
        if "missing a plug-in" in err.message:
            line += " (apt-get install gstreamer1.0-libav gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)"
        return line, err.domain in _TRANSIENT_DOMAINS

    def _pull(self, timeout_s: float):
        return self._sink.emit("try-pull-sample", int(timeout_s * 1e9))

    def read(self) -> Capture:
        if self._pipeline is None:
            return Capture(Status.ERROR)
        sample, self._first = self._first or self._pull(self.options.read_timeout_s), None
        if sample is not None:
            image = self._image(sample)
            if image is None:
                self.corrupt += 1
                return Capture(Status.TIMEOUT)
            return Capture(Status.OK, self._sized(image))
        error = self._bus_error()
        if self.live:  # an error, an ended stream or silence: lost (Reconnecting reopens it)
            ended = self._sink.get_property("eos") and self.uri.scheme == "gst"
            return Capture(Status.EOS if ended and error is None else Status.ERROR)
        if error is not None:
            self.problem = f"{self.uri.location}: decoding stopped ({error[0]})"
            return Capture(Status.EOS)
        return Capture(Status.EOS if self._sink.get_property("eos") else Status.TIMEOUT)

    def _image(self, sample) -> np.ndarray | None:
        """The BGR frame of a sample (rows may be padded to 4 bytes); None for one of no usable size."""
        caps = sample.get_caps().get_structure(0)
        w, h = caps.get_value("width"), caps.get_value("height")
        buf = sample.get_buffer()
        data = np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8)
        if not (w and h) or data.size < h * w * 3:
            return None
        stride = data.size // h
        return data[: h * stride].reshape(h, stride)[:, : w * 3].reshape(h, w, 3).copy()

    def rewind(self) -> None:
        """Back to the first frame (--loop)."""
        self.open()

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(self._gi.Gst.State.NULL)
            self._pipeline = self._sink = self._first = None

    @property
    def fps(self) -> float | None:
        return self._fps

    def describe(self) -> str:
        return f"{self.uri.scheme} through GStreamer (PyGObject): {self.description}"

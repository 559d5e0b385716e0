"""Frame sources: `open_source(uri, options)` -> a FrameSource that yields BGR uint8 frames.

Every `read()` returns a `Capture` with a status in the jetson-utils sense: OK (a frame), TIMEOUT (nothing in
time, try again), EOS (a file or sequence ended) or ERROR (the device or stream is gone). Corrupt images are
skipped and counted in `corrupt`; gray, BGRA and 16-bit frames are converted to BGR uint8. Live sources (cameras,
network streams) are wrapped in `Reconnecting`, which opens and reopens them with exponential back-off instead of
ending the run, from the first open on: a drone's camera or RTSP server is often not up when the run starts.
"""
from __future__ import annotations

import glob
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SourceError, SourceUnavailable
from .preprocess import to_bgr8
from .uri import IMAGE_SUFFIXES, Uri, parse_uri

#: a file that yields fewer than this share of its declared frames is reported as truncated
TRUNCATED_BELOW = 0.9


class Status(Enum):
    OK = "ok"
    TIMEOUT = "timeout"
    EOS = "eos"
    ERROR = "error"


@dataclass
class Capture:
    status: Status
    image: np.ndarray | None = None


@dataclass(frozen=True)
class SourceOptions:
    """What the user asked of a source (0 = the source's own value); timeouts in seconds."""

    width: int = 0
    height: int = 0
    rate: float = 0.0
    loop: bool = False
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"
    rtsp_latency_ms: int = 200  # RTSP jitter buffer through GStreamer (OpenCV's FFmpeg has none to set)
    backend: str = "auto"       # auto, opencv or gst: see pipeline.gst.choose


class FrameSource(ABC):
    """A stream of frames. `live` sources may drop frames downstream; files never do."""

    live: bool = False

    def __init__(self, uri: Uri, options: SourceOptions) -> None:
        self.uri = uri
        self.options = options
        self.corrupt = 0
        #: set when a file ended clearly before its declared length (the run then exits non-zero)
        self.problem: str | None = None

    @abstractmethod
    def open(self) -> None:
        """Open the resource; raises SourceError with the reason."""

    @abstractmethod
    def read(self) -> Capture:
        """The next frame or a status."""

    def close(self) -> None:
        """Release the resource (idempotent)."""

    @property
    def frame_count(self) -> int | None:
        """Frames a finite source will yield, when known (progress bars)."""
        return None

    @property
    def fps(self) -> float | None:
        return None

    def describe(self) -> str:
        return f"{self.uri.scheme}: {self.uri.location}"

    def _sized(self, image: np.ndarray) -> np.ndarray:
        """Apply --input-width/--input-height where the device itself could not."""
        import cv2

        w, h = self.options.width, self.options.height
        if w and h and image.shape[:2] != (h, w):
            return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return image


class VideoCaptureSource(FrameSource):
    """Files, cameras, network streams and GStreamer pipelines through cv2.VideoCapture."""

    def __init__(self, uri: Uri, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.live = uri.scheme != "file"
        self._cap = None
        self._declared = 0
        self._read = 0

    def open(self) -> None:
        import cv2

        target, api, params = self._target(cv2)
        t0 = time.monotonic()
        cap = cv2.VideoCapture(target, api, params)
        if not cap.isOpened():
            cap.release()
            failure = self._open_failure(time.monotonic() - t0)
            raise SourceUnavailable(failure) if self.live else SourceError(failure)
        if self.uri.scheme == "v4l2":
            self._configure_camera(cap, cv2)
        self._cap = cap
        self._declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not self.live else 0
        self._read = 0

    def _target(self, cv2) -> tuple[object, int, list[int]]:
        ms = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout_s * 1000)]
        scheme, loc = self.uri.scheme, self.uri.location
        if scheme == "v4l2":
            return (int(loc) if loc.isdigit() else loc), cv2.CAP_V4L2, []
        if scheme in ("gst", "csi"):
            if not gstreamer_available():
                raise SourceError(f"{self.uri}: needs OpenCV built with GStreamer; this OpenCV has none "
                                  f"(cv2.getBuildInformation() says GStreamer: NO)")
            if scheme == "gst":
                return loc, cv2.CAP_GSTREAMER, []
            from .gst.pipelines import csi

            return csi(loc, self.options.width, self.options.height, self.options.rate), cv2.CAP_GSTREAMER, []
        if scheme == "file":
            _check_file(Path(loc))
        if scheme in ("rtsp", "rtsps"):
            _set_rtsp_transport(self.options.rtsp_transport)
        return loc, cv2.CAP_FFMPEG, ms

    def _open_failure(self, waited_s: float) -> str:
        if self.uri.scheme == "file":
            return f"{self.uri.location}: cannot decode (not a video OpenCV's FFmpeg can read, or corrupt)"
        if self.uri.scheme == "v4l2":
            return f"{self.uri}: camera cannot be opened (no such device, busy, or no permission)"
        if waited_s >= 0.9 * self.options.open_timeout_s:
            return (f"{self.uri}: no stream within {self.options.open_timeout_s:g} s "
                    f"(server silent or stream unreadable)")
        # FFmpeg gave up before the timeout: the server refused or the address does not resolve
        return (f"{self.uri}: cannot open (failed after {waited_s:.1f} s: "
                f"server down or refusing, wrong address, or stream unreadable)")

    def _configure_camera(self, cap, cv2) -> None:
        if self.options.width and self.options.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.height)
        if self.options.rate:
            cap.set(cv2.CAP_PROP_FPS, self.options.rate)

    def read(self) -> Capture:
        if self._cap is None:
            return Capture(Status.ERROR)
        ok, image = self._cap.read()
        image = to_bgr8(image) if ok else None
        if image is not None:
            self._read += 1
            return Capture(Status.OK, self._sized(image))
        if ok:  # decoded but unusable (empty, or a depth or channel count no frame has): skip it
            self.corrupt += 1
            return Capture(Status.TIMEOUT)
        if self.live:
            return Capture(Status.ERROR)
        if self._declared and self._read < TRUNCATED_BELOW * self._declared:
            self.problem = (f"{self.uri.location}: ended after {self._read} of {self._declared} declared frames "
                            f"(file truncated or corrupt)")
        return Capture(Status.EOS)

    def rewind(self) -> None:
        """Back to the first frame (--loop)."""
        self.close()
        self.open()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def frame_count(self) -> int | None:
        return self._declared or None

    @property
    def fps(self) -> float | None:
        import cv2

        value = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0
        return float(value) if value and 0 < value < 1000 else None


class ImageSequenceSource(FrameSource):
    """A directory (sorted image files) or a glob; unreadable images are skipped and counted."""

    def __init__(self, uri: Uri, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self._files: list[str] = []
        self._next = 0

    def open(self) -> None:
        loc = self.uri.location
        names = sorted(glob.glob(loc)) if glob.has_magic(loc) else sorted(str(p) for p in Path(loc).iterdir())
        self._files = [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(n)]
        if not self._files:
            raise SourceError(f"{loc}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
        self._next = 0

    def read(self) -> Capture:
        import cv2

        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is not None:
                return Capture(Status.OK, self._sized(image))
            self.corrupt += 1
        return Capture(Status.EOS)

    def rewind(self) -> None:
        self._next = 0

    @property
    def frame_count(self) -> int | None:
        return len(self._files) or None


class SyntheticSource(FrameSource):
    """A generated scene (moving discs on a gradient) for tests and demos without footage.

    Options: frames (0 = endless), width, height, fps (paces reading; 0 = as fast as read), live (0/1).
    """

    def __init__(self, uri: Uri, options: SourceOptions) -> None:
        super().__init__(uri, options)
        try:
            self.frames = int(uri.option("frames", "100"))
            self.width = options.width or int(uri.option("width", "320"))
            self.height = options.height or int(uri.option("height", "240"))
            self._fps = float(uri.option("fps", "0"))
            self.live = uri.option("live", "0") == "1"
        except ValueError as e:
            raise SourceError(f"{uri}: bad synthetic option ({e})") from e
        self._index = 0
        self._next_t = 0.0

    def open(self) -> None:
        self._index = 0
        self._next_t = time.perf_counter()
        ramp = np.linspace(40, 200, self.width, dtype=np.float32)
        self._background = np.broadcast_to(ramp[None, :, None], (self.height, self.width, 3)).astype(np.uint8)

    def read(self) -> Capture:
        import cv2

        if self.frames and self._index >= self.frames:
            return Capture(Status.EOS)
        if self._fps:
            self._next_t += 1.0 / self._fps
            time.sleep(max(0.0, self._next_t - time.perf_counter()))
        image = self._background.copy()
        t = self._index / 30.0
        for k in range(3):
            cx = int((0.5 + 0.4 * np.sin(t * (k + 1) + k)) * self.width)
            cy = int((0.5 + 0.3 * np.cos(t * (k + 2))) * self.height)
            cv2.circle(image, (cx, cy), max(4, self.height // (6 + 2 * k)), (60 * k, 220 - 60 * k, 255), -1)
        self._index += 1
        return Capture(Status.OK, image)

    def rewind(self) -> None:
        self._index = 0

    @property
    def frame_count(self) -> int | None:
        return self.frames or None

    @property
    def fps(self) -> float | None:
        return self._fps or None


class Reconnecting:
    """Wraps a live source: when it cannot be opened, or on ERROR, closes and reopens it with exponential back-off
    until `give_up_s` (0 = never), saying through `log` what it waits for.

    While waiting, `read()` reports TIMEOUT so the caller keeps polling (and can be stopped). Everything else (uri,
    corrupt, problem, fps, ...) is the inner source's.
    """

    live = True

    def __init__(self, inner: FrameSource, backoff_s: float = 0.5, backoff_max_s: float = 8.0,
                 give_up_s: float = 0.0, log: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self.log = log or (lambda line: None)
        self._was_up = False
        self.backoff_s, self.backoff_max_s, self.give_up_s = backoff_s, backoff_max_s, give_up_s
        self.reconnects = 0
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._delay = backoff_s

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def open(self) -> None:
        """Open now if the source is up; otherwise wait for it in `read()`, which the run can stop."""
        try:
            self.inner.open()
        except SourceUnavailable as e:
            self._went_down(f"waiting for the source: {e}")
            return
        self._was_up = True

    def _went_down(self, why: str) -> None:
        self.inner.close()
        self._down_since = time.monotonic()
        self._retry_at, self._delay = self._down_since + self.backoff_s, self.backoff_s
        self.log(f"{why}; retrying with back-off ({self._limit()})")

    def _limit(self) -> str:
        return f"giving up after {self.give_up_s:g} s" if self.give_up_s else "until stopped"

    def read(self) -> Capture:
        if self._down_since is None:
            cap = self.inner.read()
            if cap.status is not Status.ERROR:
                return cap
            self._went_down(f"lost {self.inner.uri}")
            return Capture(Status.TIMEOUT)
        return self._retry()

    def _retry(self) -> Capture:
        now = time.monotonic()
        if self.give_up_s and now - self._down_since > self.give_up_s:
            state = "lost" if self._was_up else "not up"
            raise SourceError(f"{self.inner.uri}: {state} for more than {self.give_up_s:g} s, giving up "
                              f"after {self.reconnects} reconnects")
        if now < self._retry_at:
            time.sleep(min(0.05, self._retry_at - now))
            return Capture(Status.TIMEOUT)
        try:
            self.inner.open()
        except SourceUnavailable as e:
            self._delay = min(self._delay * 2, self.backoff_max_s)
            self._retry_at = time.monotonic() + self._delay
            self.log(f"still waiting after {time.monotonic() - self._down_since:.0f} s: {e}; "
                     f"next try in {self._delay:g} s")
            return Capture(Status.TIMEOUT)
        self.log(f"{self.inner.uri}: {'reconnected' if self._was_up else 'up'} after "
                 f"{time.monotonic() - self._down_since:.1f} s")
        self.reconnects += self._was_up
        self._was_up = True
        self._down_since = None
        return Capture(Status.TIMEOUT)

    def describe(self) -> str:
        return self.inner.describe() + " (reconnects on loss)"

    def close(self) -> None:
        self.inner.close()


def gstreamer_available() -> bool:
    """True when the installed OpenCV was built with GStreamer (needed for gst:// and csi://)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.upper()
    return False


def _set_rtsp_transport(transport: str) -> None:
    """OpenCV reads FFmpeg capture options only from this variable, at each open (it defaults RTSP to TCP).

    A value the user exported is respected.
    """
    if transport not in ("tcp", "udp"):
        raise SourceError(f"rtsp transport must be tcp or udp, got {transport!r}")
    key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    if os.environ.get(key, "").startswith("rtsp_transport;") or key not in os.environ:
        os.environ[key] = f"rtsp_transport;{transport}"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory (use it as an image sequence: images://{path})")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes), not a video")


_CLASSES: dict[str, type[FrameSource]] = {
    "file": VideoCaptureSource, "v4l2": VideoCaptureSource, "csi": VideoCaptureSource, "gst": VideoCaptureSource,
    "rtsp": VideoCaptureSource, "rtsps": VideoCaptureSource, "udp": VideoCaptureSource, "rtp": VideoCaptureSource,
    "http": VideoCaptureSource, "https": VideoCaptureSource,
    "images": ImageSequenceSource, "synthetic": SyntheticSource,
}


def source_class(uri: Uri, options: SourceOptions) -> type[FrameSource]:
    """The class that reads `uri`: GStreamer (PyGObject) where pipeline.gst.choose picks it, else this module's."""
    from .gst.choose import choose

    if choose(uri, options.backend).gst:
        from .gst.source import GstSource

        return GstSource
    return _CLASSES[uri.scheme]


def open_source(uri: str | Uri, options: SourceOptions = SourceOptions(), reconnect: bool = True,
                backoff_s: float = 0.5, backoff_max_s: float = 8.0,
                give_up_s: float = 0.0, log: Callable[[str], None] | None = None) -> FrameSource | Reconnecting:
    """Create and open the source for `uri`; with `reconnect`, a live source that is not up yet or is lost is
    waited for (reported through `log`) instead of failing."""
    if not isinstance(uri, Uri):
        uri = parse_uri(uri, "input")
    source = source_class(uri, options)(uri, options)
    if source.live and reconnect and uri.scheme != "synthetic":
        source = Reconnecting(source, backoff_s, backoff_max_s, give_up_s, log)
    source.open()
    return source

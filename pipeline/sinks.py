"""Outputs: `open_sink(uri)` -> a FrameSink; `FanOut` writes every frame to several at once.

A sink gets each annotated frame with its frame-size class mask (`write`) and each frame's telemetry record
(`record`, after the frame sinks have written it). Video files are opened on the first frame (its size fixes the
file's, and a frame of another size is letterboxed into it); MKV is the default container because a run that is
killed still leaves a playable file. A write that fails (a full or read-only disk) raises SinkError naming the path
and the reason; what was written before stays.
"""
from __future__ import annotations

import json
import os
from abc import ABC
from pathlib import Path

import numpy as np

from .errors import SinkError
from .preprocess import letterbox
from .uri import Uri, parse_uri

#: FourCC per container; all four encode with the OpenCV wheel (its FFmpeg has no H.264 encoder)
DEFAULT_CODECS = {".mkv": "mp4v", ".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v"}
CODECS = ("mp4v", "MJPG", "XVID", "FFV1")
#: the smallest and largest side a video file gets when the frame's own size cannot be encoded
VIDEO_SIDES = (16, 8176)
#: free space under which a failed write is put down to a full disk (FFmpeg writes its buffer in 32 KiB blocks,
#: an encoded 8K frame is a few MiB)
FULL_BELOW = 8 << 20


class FrameSink(ABC):
    """An output. `stop_requested` lets a sink (a window) ask the run to end."""

    stop_requested = False
    #: True for sinks that need a display (dropped in headless mode)
    needs_display = False

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        """Consume one annotated frame (BGR uint8) and its class mask (uint8, frame size)."""

    def record(self, rec: dict) -> None:
        """Consume one frame's telemetry record."""

    def close(self) -> None:
        """Flush and close (idempotent)."""


class VideoFileSink(FrameSink):
    """A video file through cv2.VideoWriter. Options: codec (FourCC), fps."""

    def __init__(self, path: str, fps: float = 30.0, codec: str | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in DEFAULT_CODECS:
            raise SinkError(f"{path}: unsupported video container {suffix or '(none)'}; "
                            f"expected one of {', '.join(DEFAULT_CODECS)}")
        self.codec = codec or DEFAULT_CODECS[suffix]
        if len(self.codec) != 4:
            raise SinkError(f"{path}: codec must be a 4-letter FourCC such as {', '.join(CODECS)}, got {self.codec!r}")
        self.fps = fps if fps and fps > 0 else 30.0
        _make_parent(self.path)
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        import cv2

        fourcc = cv2.VideoWriter_fourcc(*self.codec)
        for size in dict.fromkeys([(w, h), encodable_size(w, h)]):  # the frame's own size when the codec takes it
            # FFmpeg only: where it refuses, OpenCV would try its other writers, and with GStreamer loaded in the
            # process (PyGObject) that fallback crashed on a 1x1 frame or a read-only folder
            writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, fourcc, self.fps, size)
            if writer.isOpened():
                self._writer, self._size = writer, size
                return
        # OpenCV says no more than that: tell an unwritable path from a missing codec
        raise SinkError(_why_unwritable(self.path) or f"{self.path}: cannot write codec {self.codec} into "
                        f"{self.path.suffix} with this OpenCV (try one of {', '.join(CODECS)})")

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        import cv2

        if self._closed:  # reopening would truncate the finished file
            raise SinkError(f"{self.path}: written after it was closed")
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self._size:  # a stream changed resolution mid-run: the file keeps its size, the frame its aspect
            image = letterbox(image, (self._size[1], self._size[0]))
        if self._writer.write(image) is False:  # OpenCV 5 says when FFmpeg could not write the frame
            raise SinkError(_write_failure(self.path, "the encoder refused the frame"))
        self.frames += 1

    def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class ImageSequenceSink(FrameSink):
    """Annotated frames as numbered images: a printf pattern (frames/%06d.jpg) or images://DIR?ext=png."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        try:
            pattern % 0
        except (TypeError, ValueError) as e:
            raise SinkError(f"{pattern}: image pattern needs one integer field such as %06d ({e})") from e
        _make_parent(Path(pattern % 0))

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        import cv2

        path = self.pattern % index
        if not _imwrite(cv2, path, image):
            raise SinkError(_write_failure(Path(path), "an image suffix OpenCV cannot encode"))


class MaskSink(FrameSink):
    """Raw class masks (values 0..classes-1, frame size) as DIR/%06d.png or .npy (masks://DIR?format=npy)."""

    def __init__(self, directory: str, fmt: str = "png") -> None:
        if fmt not in ("png", "npy"):
            raise SinkError(f"masks://{directory}: format must be png or npy, got {fmt!r}")
        self.directory, self.fmt = Path(directory), fmt
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"{directory}: cannot create mask directory ({e.strerror})") from e

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        import cv2

        path = self.directory / f"{index:06d}.{self.fmt}"
        if self.fmt == "npy":
            try:
                np.save(path, mask)
            except OSError as e:
                raise SinkError(f"{path}: cannot write ({e.strerror})") from e
        elif not _imwrite(cv2, str(path), mask):
            raise SinkError(_write_failure(path, "the PNG encoder failed"))


class JsonlSink(FrameSink):
    """One JSON object per frame (schema: pipeline.telemetry); line-buffered so a killed run keeps every line."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        _make_parent(self.path)
        try:
            self._file = open(self.path, "w", buffering=1, encoding="utf-8")
        except OSError as e:
            raise SinkError(f"{path}: cannot open for writing ({e.strerror})") from e

    def record(self, rec: dict) -> None:
        try:
            self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError as e:
            raise SinkError(f"{self.path}: cannot write ({e.strerror})") from e

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as e:  # the last buffered line could not be flushed; the file is closed anyway
                raise SinkError(f"{self.path}: cannot write ({e.strerror})") from e


class DisplaySink(FrameSink):
    """An OpenCV window; `q` or Esc asks the run to stop."""

    needs_display = True

    def __init__(self, title: str = "mbunet") -> None:
        self.title = title
        self._shown = False

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        import cv2

        cv2.imshow(self.title, image)
        self._shown = True
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop_requested = True

    def close(self) -> None:
        import cv2

        if self._shown:
            cv2.destroyWindow(self.title)
            self._shown = False


class NullSink(FrameSink):
    """Discards everything (benchmarks)."""


class FanOut(FrameSink):
    """Writes every frame to each sink in turn; closes all of them even when one fails."""

    def __init__(self, sinks: list[FrameSink]) -> None:
        self.sinks = sinks

    @property
    def stop_requested(self) -> bool:  # type: ignore[override]
        return any(s.stop_requested for s in self.sinks)

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(index, image, mask)

    def record(self, rec: dict) -> None:
        for sink in self.sinks:
            sink.record(rec)

    def close(self) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # keep closing the others; report the first failure afterwards
                first = first or e
        if first is not None:
            raise first


def display_available() -> bool:
    """A window can be opened here: on Linux that needs $DISPLAY or $WAYLAND_DISPLAY."""
    if os.name != "posix" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_sink(uri: str | Uri, fps: float = 30.0, encoding=None, run_dir: str | Path = ".") -> FrameSink:
    """The sink for an output URI (see pipeline.uri); `fps` is the frame rate written into video files and streams.
    Network outputs (rtp://, rtsp://) encode with `encoding` (a pipeline.gst.pipelines.Encoding; default H.264 at
    4 Mbit/s) and put their .sdp file into `run_dir`."""
    if not isinstance(uri, Uri):
        uri = parse_uri(uri, "output")
    s, loc = uri.scheme, uri.location
    if s in ("rtp", "rtsp"):
        from .gst.output import open_network_output
        from .gst.pipelines import Encoding

        return open_network_output(uri, fps, encoding or Encoding(), run_dir)
    if s == "file":
        try:
            rate = float(uri.option("fps", "0") or 0)
        except ValueError as e:
            raise SinkError(f"{uri}: fps must be a number ({e})") from e
        return VideoFileSink(loc, rate or fps, uri.option("codec"))
    if s == "images":
        if "%" in loc:
            return ImageSequenceSink(loc)
        if Path(loc).suffix:
            raise SinkError(f"{loc}: an image sequence needs a numbered pattern such as frames/%06d.jpg")
        return ImageSequenceSink(str(Path(loc) / f"%06d.{uri.option('ext', 'jpg')}"))
    if s == "masks":
        return MaskSink(loc, uri.option("format", "png"))
    if s == "jsonl":
        return JsonlSink(loc)
    if s == "display":
        return DisplaySink(f"mbunet {loc}".strip())
    return NullSink()


def encodable_size(w: int, h: int) -> tuple[int, int]:
    """A video size near w x h that every codec here encodes: MPEG-4 takes neither a 1x1 frame nor a side
    over 8191 px, so tiny frames are scaled up and huge ones down (aspect kept; frames are letterboxed into it)."""
    scale = min(max(1.0, VIDEO_SIDES[0] / min(w, h)), VIDEO_SIDES[1] / max(w, h))
    return tuple(int(min(VIDEO_SIDES[1], max(VIDEO_SIDES[0], round(side * scale / 2) * 2))) for side in (w, h))


def _imwrite(cv2, path: str, image: np.ndarray) -> bool:
    """cv2.imwrite, False also where OpenCV raises instead (some encoders do on a failed write)."""
    try:
        return bool(cv2.imwrite(path, image))
    except cv2.error:
        return False


def _write_failure(path: Path, otherwise: str) -> str:
    """Why OpenCV, which gives no errno, could not write `path`: a read-only or full disk, else `otherwise`."""
    try:
        fs = os.statvfs(path.parent)
    except OSError as e:
        return f"{path}: cannot write ({e.strerror})"
    if fs.f_flag & os.ST_RDONLY:
        return f"{path}: cannot write (read-only file system)"
    if fs.f_bavail * fs.f_frsize < FULL_BELOW:  # an encoder flushes in blocks: "full" is short of one block
        return f"{path}: cannot write (no space left on device: {fs.f_bavail * fs.f_frsize // 1024} KiB free)"
    return f"{path}: cannot write ({otherwise})"


def _why_unwritable(path: Path) -> str | None:
    """Why a file cannot be written at `path` (None when it can; a file the probe creates is removed again)."""
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        return f"{path}: cannot write there ({e.strerror})"
    if not existed:
        path.unlink(missing_ok=True)
    return None


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SinkError(f"{path}: cannot create folder {path.parent} ({e.strerror})") from e

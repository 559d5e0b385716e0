"""Outputs: `open_sink(uri)` -> a FrameSink; `FanOut` writes every frame to several at once.

A sink gets each annotated frame with its frame-size class mask (`write`) and each frame's telemetry record
(`record`, after the frame sinks have written it). Video files are opened on the first frame (its size fixes the
file's); MKV is the default container because a run that is killed still leaves a playable file.
"""
from __future__ import annotations

import json
import os
from abc import ABC
from pathlib import Path

import numpy as np

from .errors import SinkError
from .uri import Uri, parse_uri

#: FourCC per container; all four encode with the OpenCV wheel (its FFmpeg has no H.264 encoder)
DEFAULT_CODECS = {".mkv": "mp4v", ".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v"}
CODECS = ("mp4v", "MJPG", "XVID", "FFV1")


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
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        import cv2

        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps, (w, h))
        if not writer.isOpened():  # OpenCV says no more than that: tell an unwritable path from a missing codec
            raise SinkError(_why_unwritable(self.path) or f"{self.path}: cannot write codec {self.codec} into "
                            f"{self.path.suffix} with this OpenCV (try one of {', '.join(CODECS)})")
        self._writer, self._size = writer, (w, h)

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        import cv2

        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self._size:  # a stream changed resolution mid-run: keep the file's size
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
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
        if not cv2.imwrite(path, image):
            raise SinkError(f"{path}: cannot write image (disk full, or an unknown image suffix)")


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
            np.save(path, mask)
        elif not cv2.imwrite(str(path), mask):
            raise SinkError(f"{path}: cannot write mask image")


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
        self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


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


def open_sink(uri: str | Uri, fps: float = 30.0) -> FrameSink:
    """The sink for an output URI (see pipeline.uri); `fps` is the frame rate written into video files."""
    if not isinstance(uri, Uri):
        uri = parse_uri(uri, "output")
    s, loc = uri.scheme, uri.location
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

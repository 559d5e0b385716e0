"""One chunk of one video (frames [start, stop)) through the same pipeline and sinks as `mbunet run`.

The chunk runs in pipeline.runner.Runner (decode, engine, mask resize and writing each in their own thread) with
the Segmenter of the Python API, so a batch gives exactly the masks `mbunet run` gives. Frame numbers in the
outputs are the video's, not the chunk's, so the parts of a split video join by concatenation.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ..errors import MbunetError, SourceError
from ..overlay import Annotator, create_annotator
from ..runner import Runner, RunOptions
from ..sinks import FanOut, FrameSink, JsonlSink, MaskSink, VideoFileSink
from ..sources import Capture, SourceOptions, Status, VideoCaptureSource
from ..telemetry import STAGES, Telemetry
from ..uri import Uri
from .options import OUTPUT_NAMES, BatchOptions


class Interrupted(MbunetError):
    """The chunk was stopped before its last frame (a signal reached the worker): its part is not finished."""


class ChunkSource(VideoCaptureSource):
    """Frames [start, stop) of a video file; stop None = to the end of the file."""

    def __init__(self, path: str, start: int = 0, stop: int | None = None) -> None:
        # a Uri built directly: a file name with '?' or '://' in it is still a file name
        super().__init__(Uri("file", path, {}, path), SourceOptions())
        self.start, self.stop = start, stop

    def open(self) -> None:
        import cv2

        super().open()
        if self.start:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
            at = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            if at != self.start:
                raise SourceError(f"{self.uri.location}: cannot seek to frame {self.start} (at {at}); "
                                  f"rerun with --chunk-frames 0 to read it in one piece")
            self._read = self.start  # the truncation check compares positions in the whole file

    def read(self) -> Capture:
        if self.stop is not None and self._read >= self.stop:
            return Capture(Status.EOS)
        return super().read()


class _Unchanged(Annotator):
    """No overlay video was asked for: leave the frame alone instead of drawing on it."""

    def annotate(self, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return frame


class _Renumbered(FrameSink):
    """Gives the sinks the frame's number in the whole video (the chunk's own count starts at 0)."""

    def __init__(self, inner: FrameSink, offset: int) -> None:
        self.inner, self.offset = inner, offset

    def write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        self.inner.write(index + self.offset, image, mask)

    def record(self, rec: dict) -> None:
        self.inner.record({**rec, "frame": rec["frame"] + self.offset})

    def close(self) -> None:
        self.inner.close()


def open_sinks(dest: Path, options: BatchOptions, fps: float) -> FanOut:
    sinks: list[FrameSink] = []
    try:
        if "masks" in options.outputs:
            sinks.append(MaskSink(str(dest / OUTPUT_NAMES["masks"]), options.mask_format))
        if "overlay" in options.outputs:
            sinks.append(VideoFileSink(str(dest / OUTPUT_NAMES["overlay"]), fps))
        if "jsonl" in options.outputs:
            sinks.append(JsonlSink(str(dest / OUTPUT_NAMES["jsonl"])))
    except BaseException:
        FanOut(sinks).close()
        raise
    return FanOut(sinks)


def segment_chunk(path: str, start: int, stop: int | None, dest: Path, segmenter, options: BatchOptions,
                  meter=None) -> dict:
    """Segment frames [start, stop) of `path` into the empty folder `dest`; returns the chunk's statistics.

    Raises SourceError when the video cannot be read (the message is the manifest's one line) and Interrupted when
    the worker was signalled mid-chunk: either way `dest` must not be taken as finished.
    """
    t0 = time.perf_counter()
    source = ChunkSource(path, start, stop)
    source.open()
    try:
        annotator = (create_annotator(options.overlay, segmenter.model.labels) if "overlay" in options.outputs
                     else _Unchanged())
        sinks = open_sinks(dest, options, source.fps or 25.0)
        telemetry = Telemetry(meter=meter)
        runner = Runner(source, segmenter, annotator, _Renumbered(sinks, start), telemetry,
                        RunOptions(batch=options.batch, progress=False), stop=threading.Event())
        try:
            runner.run()
        finally:
            sinks.close()
    finally:
        source.close()
    if runner.stop.is_set():
        raise Interrupted(f"{path}: stopped at frame {start + telemetry.frames}")
    if source.problem:
        raise SourceError(source.problem)
    summary = telemetry.summary()
    stages = summary["stages_ms"]
    return {
        "start": start, "frames": telemetry.frames, "wall_s": round(time.perf_counter() - t0, 4),
        # per-stage busy time in ms, summed over the chunk's frames: the manifest's decode share comes from these
        "stage_ms": {k: round(stages[k]["mean"] * stages[k]["n"], 3) for k in STAGES if stages.get(k)},
        "joules": (summary["power"] or {}).get("joules"), "fps": source.fps,
    }

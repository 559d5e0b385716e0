"""The Python API: `Segmenter` turns frames into class masks at the frame's own size; `stream` runs it over any
source `mbunet run` accepts.

    from mbunet import Segmenter, stream
    seg = Segmenter("mbunet-w32", engine="auto")    # the fastest engine that runs here; seg.engine_reason says why
    mask = seg(frame)                                # uint8 [H, W] class mask of an OpenCV (BGR) frame
    for result in stream("video.mp4", max_frames=100):
        print(result.index, result.mask.mean(), result.ms)

A Segmenter is three steps, which `mbunet run` puts in separate threads and `mbunet eval` calls in turn:
`prepare` (geometry + colour order + resize to the model input), `infer` (the engine on a batch of inputs: output
scores) and `to_frame` (the scores enlarged to the frame, then decided: preprocess.scores_to_frame). There is one
implementation of each, so the API, the pipeline and the evaluation give the same masks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from . import modelfile
from .arch import Architecture
from .errors import ModelFileError, SourceError
from .modelfile import ModelFile
from .preprocess import Geometry, geometry, scores_to_frame, to_model_input

_RANDOM = re.compile(r"^random(?::(\d+))?(?::(\d+)x(\d+))?$")


def load_run_model(ref: str) -> modelfile.ModelFile:
    """A model path or shipped name; "" = the default shipped model; "random[:WIDTH[:WxH]]" = untrained weights.

    The random model exists for smoke tests and pipeline benchmarks without trained weights: its masks are noise,
    and the run says so.
    """
    m = _RANDOM.match(ref)
    if m:
        from .random_model import random_quantized_model

        width = int(m.group(1) or 16)
        size = (int(m.group(3)), int(m.group(2))) if m.group(2) else (256, 256)  # (height, width) from WxH
        try:
            arch = Architecture(width=width, input_size=size)
        except ValueError as e:
            raise ModelFileError(f"--model {ref}: {e}") from e
        return random_quantized_model(arch, seed=0, name=f"random-w{width}-{size[1]}x{size[0]}")
    if not ref and modelfile.DEFAULT_MODEL not in modelfile.shipped_names():
        raise ModelFileError(f"the default model {modelfile.DEFAULT_MODEL} is not in {modelfile.WEIGHTS_DIR}; "
                             f"pass --model PATH (or --model random for an untrained smoke test)")
    return modelfile.load_model(ref or modelfile.DEFAULT_MODEL)


class Segmenter:
    """A model on an engine. `model`: a shipped name, a .safetensors path, a loaded ModelFile, or "" for the
    default model; `engine`: an engine name or "auto"; `fit`: "letterbox" (keep the aspect ratio) or "resize"."""

    def __init__(self, model: str | Path | ModelFile = "", engine: str = "auto", fit: str = "letterbox") -> None:
        from .engines.base import choose_engine, create_engine

        self.model = model if isinstance(model, ModelFile) else load_run_model(str(model))
        self.fit = fit
        geometry((1, 1), self.model.arch.input_size, fit)  # an unknown fit fails here, not on the first frame
        #: why this engine: "requested", or what `auto` skipped on the way to it
        self.engine_reason = "requested" if engine != "auto" else choose_engine(self.model).reason
        self.engine = create_engine(engine, self.model)
        # one geometry per frame size, computed once: a dict of pure values, so threads that prepare frames of
        # different sizes (several streams on one Segmenter) need no lock
        self._geometries: dict[tuple[int, int], Geometry] = {}

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.model.arch.input_size

    def prepare(self, frame: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, Geometry]:
        """A BGR uint8 frame -> (RGB model input [h, w, 3], where the frame lies in it); the geometry is computed
        once per frame size."""
        size = frame.shape[:2]
        geo = self._geometries.get(size)
        if geo is None:
            geo = self._geometries.setdefault(size, geometry(size, self.input_size, self.fit))
        return to_model_input(frame, geo, out), geo

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs [N, h, w, 3] -> output scores [N, h, w, classes] (waits for the device)."""
        _, scores = self.engine.segment_scores(inputs)
        self.engine.sync()
        return scores

    @staticmethod
    def to_frame(scores: np.ndarray, geo: Geometry) -> np.ndarray:
        """One frame's scores [h, w, classes] -> its uint8 class mask at the frame's size."""
        return scores_to_frame(scores, geo)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The uint8 class mask [H, W] of one BGR uint8 frame [H, W, 3] (0 = background)."""
        return self.batch([frame])[0]

    def batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Class masks of several frames (any sizes), segmented in one engine call."""
        if not len(frames):
            return []
        prepared = [self.prepare(f) for f in frames]
        scores = self.infer(np.stack([p[0] for p in prepared]))
        return [self.to_frame(s, p[1]) for s, p in zip(scores, prepared)]

    def close(self) -> None:
        """Free the engine's device memory (also done on leaving a `with` block)."""
        self.engine.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class StreamResult:
    index: int               # frame number in the stream, from 0
    frame: np.ndarray        # the BGR frame as read
    mask: np.ndarray         # uint8 class mask at the frame's size
    ms: dict[str, float] = field(default_factory=dict)   # "capture", "preprocess", "segment", "resize" times


def frames(source: str, max_frames: int = 0, reconnect: bool = True, **options) -> Iterator[np.ndarray]:
    """BGR frames of any source URI `mbunet run` accepts (files, folders, cameras, streams); `options` are
    sources.SourceOptions fields (width, height, rate, loop, open_timeout_s, ...). Live sources reconnect when
    they drop unless `reconnect` is False."""
    for _, frame in _read(source, max_frames, reconnect, options):
        yield frame


def _read(source: str, max_frames: int, reconnect: bool, options: dict) -> Iterator[tuple[float, np.ndarray]]:
    import time

    from .sources import SourceOptions, Status, open_source

    src = open_source(source, SourceOptions(**options), reconnect=reconnect)
    try:
        count = 0
        while not (max_frames and count >= max_frames):
            t0 = time.perf_counter()
            cap = src.read()
            if cap.status is Status.TIMEOUT:
                continue
            if cap.status is Status.EOS:
                break
            if cap.status is Status.ERROR:
                raise SourceError(f"{source}: stream lost")
            count += 1
            yield (time.perf_counter() - t0) * 1e3, cap.image
        if src.problem:
            raise SourceError(src.problem)
    finally:
        src.close()


def stream(source: str, model: str | Path | ModelFile | Segmenter = "", engine: str = "auto",
           fit: str = "letterbox", max_frames: int = 0, **options) -> Iterator[StreamResult]:
    """Segment every frame of `source`, one at a time, yielding a StreamResult per frame. Pass a Segmenter as
    `model` to reuse one (its engine and fit then apply). For throughput on long videos, `mbunet run` overlaps
    decoding, the engine and writing in threads; this generator is the simple, synchronous form."""
    import time

    seg = model if isinstance(model, Segmenter) else Segmenter(model, engine, fit)
    try:
        for index, (capture_ms, frame) in enumerate(_read(source, max_frames, True, options)):
            t0 = time.perf_counter()
            model_input, geo = seg.prepare(frame)
            t1 = time.perf_counter()
            scores = seg.infer(model_input[None])
            t2 = time.perf_counter()
            mask = seg.to_frame(scores[0], geo)
            t3 = time.perf_counter()
            yield StreamResult(index, frame, mask, {"capture": capture_ms, "preprocess": (t1 - t0) * 1e3,
                                                    "segment": (t2 - t1) * 1e3, "resize": (t3 - t2) * 1e3})
    finally:
        if seg is not model:
            seg.close()

"""Several sources in one run: one engine whose batches take frames from every stream, everything else per stream.

Each stream is a `Runner` (capture, annotate and sinks threads, its own telemetry, outputs and stop) whose segment
stage hands its frames to a shared `Batcher` instead of the engine. The batcher fills a batch round-robin across
the streams, up to `batch` frames, waiting at most `timeout_s` after the first one (nvstreammux's
batched-push-timeout), so a stream that stalls or is reconnecting only contributes nothing: the others go on at
their own rate. A live stream keeps only its newest frame waiting (the older one is a drop in its telemetry); a
file waits for room. Outputs apply back-pressure: a stream whose sinks stall slows the batches it is in.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from .api import Segmenter, load_run_model
from .config import RunConfig
from .errors import ConfigError, MbunetError, SinkError, SourceError
from .overlay import create_annotator
from .runner import Item, Runner, RunOptions, segment_items
from .sinks import FanOut
from .telemetry import Telemetry


class Batcher:
    """The one segment stage of a multi-stream run: `submit` from each stream, `run` in one thread."""

    def __init__(self, segmenter: Segmenter, batch: int, timeout_s: float, queue_size: int) -> None:
        self.segmenter, self.batch, self.timeout_s, self.queue_size = segmenter, batch, timeout_s, queue_size
        self._pending: dict[StreamRunner, deque[Item]] = {}
        self._in_flight: dict[StreamRunner, int] = {}
        self._cond = threading.Condition()
        self._open = 0
        self._turn = 0  # which stream goes first in the next batch, so a batch smaller than the streams is fair
        self._failed: BaseException | None = None
        self._buffer = np.empty((batch, *segmenter.input_size, 3), np.uint8)

    def join(self, stream: StreamRunner) -> None:
        with self._cond:
            self._pending[stream], self._in_flight[stream] = deque(), 0
            self._open += 1

    def submit(self, stream: StreamRunner, item: Item) -> bool:
        """Queue a frame; a live stream replaces its waiting frame, a file waits for room. False after a failure."""
        with self._cond:
            queue = self._pending[stream]
            while len(queue) >= self.queue_size and not stream.live and self._failed is None:
                self._cond.wait()
            if self._failed is not None:
                return False
            if stream.live and queue:
                queue.popleft()
                stream.telemetry.count_drop()
            queue.append(item)
            self._cond.notify_all()
            return True

    def leave(self, stream: StreamRunner) -> None:
        """The stream sends no more; returns once its last frame has been segmented and handed back."""
        with self._cond:
            self._open -= 1
            self._cond.notify_all()
            while (self._pending[stream] or self._in_flight[stream]) and self._failed is None:
                self._cond.wait()

    def run(self) -> None:
        """Segment batches until every stream has left; a failure wakes every stream (each then stops)."""
        try:
            while (taken := self._take()):
                self._segment(taken)
        except BaseException as e:
            with self._cond:
                self._failed = e
                self._cond.notify_all()
            raise

    def _take(self) -> list[tuple[StreamRunner, Item]]:
        """Up to `batch` frames, one per stream per round; waits for the first, then at most `timeout_s` more."""
        taken: list[tuple[StreamRunner, Item]] = []
        deadline = None
        with self._cond:
            streams = list(self._pending)
            self._turn = (self._turn + 1) % len(streams)
            streams = streams[self._turn:] + streams[:self._turn]
            while len(taken) < self.batch:
                got = False
                for stream in streams:
                    queue = self._pending[stream]
                    if queue and len(taken) < self.batch:
                        taken.append((stream, queue.popleft()))
                        self._in_flight[stream] += 1
                        got = True
                if got:
                    self._cond.notify_all()  # files waiting for room
                    deadline = deadline or time.monotonic() + self.timeout_s
                    continue
                if taken and time.monotonic() >= deadline:
                    break
                if not taken and self._open == 0:
                    return []
                self._cond.wait(None if not taken else max(0.0, deadline - time.monotonic()))
        return taken

    def _segment(self, taken: list[tuple[StreamRunner, Item]]) -> None:
        segment_items(self.segmenter, [item for _, item in taken], self._buffer)
        for stream, item in taken:
            stream.segmented(item)
            with self._cond:
                self._in_flight[stream] -= 1
                self._cond.notify_all()


class StreamRunner(Runner):
    """One stream of a multi-stream run: the Runner's stages, with segmentation done by the shared Batcher."""

    def __init__(self, name: str, config: RunConfig, outputs: list[str], batcher: Batcher, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: the stream's name, its config (its own outputs) and output URIs, for its summary
        self.name, self.config, self.outputs, self.batcher = name, config, outputs, batcher
        batcher.join(self)

    def _segment(self) -> None:
        try:
            while (item := self._captured.get()) is not None:
                if not self.batcher.submit(self, item):
                    return
        finally:
            self.batcher.leave(self)

    def segmented(self, item: Item) -> None:
        """Called by the batcher with a segmented frame of this stream."""
        self._segmented.put(item)


class _StreamSinks(FanOut):
    """A stream's outputs; its telemetry records carry the stream's name."""

    def __init__(self, name: str, sinks: list) -> None:
        super().__init__(sinks)
        self.name = name

    def record(self, rec: dict) -> None:
        super().record({"stream": self.name, **rec})


_NAMED = re.compile(r"^([A-Za-z][\w-]{0,31})=(.+)$")


def stream_names(uris: tuple[str, ...]) -> dict[str, str]:
    """name -> URI: `NAME=URI` names a stream; otherwise a file's stem, else stream<i>; repeats get -2, -3."""
    named: dict[str, str] = {}
    for i, text in enumerate(uris):
        m = _NAMED.match(text)
        if m and "://" not in m.group(1):
            name, uri = m.group(1), m.group(2)
        else:
            stem = Path(text.split("?")[0]).stem if "://" not in text and " ! " not in text else ""
            name, uri = (re.sub(r"[^\w-]", "_", stem) or f"stream{i}"), text
        base, n = name, 2
        while name in named:
            name, n = f"{base}-{n}", n + 1
        named[name] = uri
    return named


def stream_outputs(outputs: tuple[str, ...], name: str, index: int) -> tuple[str, ...]:
    """A stream's outputs: {stream} and {index} filled in; an output without either would be shared by every
    stream, which no sink can be."""
    shared = [o for o in outputs if "{stream}" not in o and "{index}" not in o]
    if shared:
        raise ConfigError(f"with several sources each output must name its stream: put {{stream}} or {{index}} into "
                          f"{shared[0]!r} (e.g. out-{{stream}}.mkv, rtp://HOST:500{{index}}); by default each "
                          f"stream writes <run>/<stream>/overlay.mkv")
    return tuple(o.replace("{stream}", name).replace("{index}", str(index)) for o in outputs)


def run_streams(config: RunConfig, headless: bool, log, progress: bool, signals) -> dict:
    """A run over `config.sources` (two or more): sources opened first (each reconnects on its own), one model and
    engine, then the streams; <run>/summary.json holds every stream's summary under "streams"."""
    from .session import open_configured_source

    names = stream_names(config.sources)
    for index, name in enumerate(names):  # a bad output fails before any stream or model is opened
        stream_outputs(config.outputs, name, index)
    sources: dict = {}
    try:
        for name, uri in names.items():
            source = open_configured_source(config.source, uri, lambda line, n=name: log(f"{n}: {line}"))
            sources[name] = source
            log(f"{name}: {source.describe()}" + (" (live: newest frame kept)" if source.live else ""))
        model = load_run_model(config.model)
        with Segmenter(model, config.engine, config.fit) as segmenter:
            log(f"model: {model.name}; engine: {segmenter.engine_name} ({segmenter.engine_reason})")
            return _run(config, sources, segmenter, headless, log, progress, signals)
    finally:
        for source in sources.values():
            source.close()


def _run(config: RunConfig, sources: dict, segmenter: Segmenter, headless: bool, log, progress: bool,
         signals) -> dict:
    from .session import _open_outputs, _summary, _write_summary, make_run_dir

    run_dir = make_run_dir(config.run_dir)
    batch = config.batch if config.batch > 1 else len(sources)  # default: one frame of each stream per call
    batcher = Batcher(segmenter, batch, config.batch_timeout_ms / 1e3, config.queue_size)
    streams: list[StreamRunner] = []
    try:
        for index, (name, source) in enumerate(sources.items()):
            stream_cfg = dataclasses.replace(config, outputs=stream_outputs(config.outputs, name, index))
            folder = run_dir / name
            try:
                folder.mkdir()
            except OSError as e:
                raise SinkError(f"{folder}: cannot create the stream's folder ({e.strerror})") from e
            outputs = _open_outputs(stream_cfg, folder, headless, source.fps or 25.0)
            ov = config.overlay
            annotator = create_annotator(ov.style, segmenter.model.labels, ov.alpha, ov.blur, ov.color, ov.thickness)
            options = RunOptions(1, config.queue_size, config.source.max_frames, config.source.loop,
                                 config.source.rate, config.telemetry.status_interval_s, False)
            sinks = _StreamSinks(name, list(outputs.values()))
            streams.append(StreamRunner(name, stream_cfg, list(outputs), batcher, source, segmenter, annotator, sinks,
                                        Telemetry(config.telemetry.fps_window_s), options, threading.Event(),
                                        threading.Event()))
        errors = _run_threads(batcher, streams, signals, config.telemetry.status_interval_s, progress)
    finally:
        for runner in streams:
            runner.sinks.close()
    summary = {"run_dir": str(run_dir), "model": segmenter.model.name, "engine": segmenter.engine.name,
               "batch": batch, "batch_timeout_ms": config.batch_timeout_ms, "signals": signals.received,
               "streams": {r.name: _summary(r.config, r.source, segmenter.model, segmenter.engine, r.outputs,
                                            run_dir / r.name, r.telemetry, r.stop.is_set(), errors.get(r.name))
                           for r in streams}}
    for key in ("frames", "drops", "corrupt", "reconnects"):
        summary[key] = sum(s[key] for s in summary["streams"].values())
    written, kept = _write_summary(run_dir, summary, summary["frames"])
    failed = next(((n, e) for n, e in errors.items() if e is not None), None)
    if failed is not None:
        name, error = failed
        if isinstance(error, MbunetError):
            raise type(error)(f"stream {name}: {error}; {kept}") from error
        raise error
    problems = [f"{r.name}: {r.source.problem}" for r in streams if r.source.problem]
    if problems:
        raise SourceError(f"{problems[0]}; {kept}")
    if not written:
        raise SinkError(kept)
    return summary


def _run_threads(batcher: Batcher, streams: list[StreamRunner], signals, interval_s: float,
                 progress: bool) -> dict[str, BaseException | None]:
    """Run the batcher and every stream to their ends; the session's stop and hurry reach every stream. Returns
    each stream's error (None when it ended cleanly); a failed batcher is every stream's error."""
    errors: dict[str, BaseException | None] = {r.name: None for r in streams}

    def body(runner: StreamRunner) -> None:
        try:
            runner.run()
        except BaseException as e:  # one stream's failure ends that stream only
            errors[runner.name] = e

    batcher_error: list[BaseException] = []

    def batch_body() -> None:
        try:
            batcher.run()
        except BaseException as e:
            batcher_error.append(e)

    threads = [threading.Thread(target=batch_body, name="mbunet-batcher", daemon=True)]
    threads += [threading.Thread(target=body, args=(r,), name=f"mbunet-stream-{r.name}", daemon=True)
                for r in streams]
    for t in threads:
        t.start()
    last = time.perf_counter()
    while any(t.is_alive() for t in threads[1:]):
        threads[1].join(0.2)
        for flag in ("stop", "hurry"):
            if getattr(signals, flag).is_set():
                for r in streams:
                    getattr(r, flag).set()
        if progress and time.perf_counter() - last >= interval_s:
            last = time.perf_counter()
            print(" || ".join(f"{r.name}: {r.telemetry.frames} frames {r.telemetry.fps():.1f} FPS "
                              f"drops {r.telemetry.drops}" for r in streams), file=sys.stderr, flush=True)
    threads[0].join()
    if batcher_error:
        return {name: errors[name] or batcher_error[0] for name in errors}
    return errors

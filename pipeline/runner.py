"""The video pipeline: capture+preprocess -> segment -> annotate -> sinks, each stage in its own thread.

Stages talk through bounded `Channel`s. A live source's first channel keeps only the newest frame (the oldest is
dropped and counted), so latency stays bounded when the engine is slower than the camera; files never drop (the
capture thread waits). Each frame carries its capture time, so the sink stage measures end-to-end latency.
A frame is copied at most once per stage: decode and resize to the model input (capture), the batch stacked for
the engine when batch > 1 (segment), the scores enlarged to the frame, decided and drawn in place (annotate). Only the
engine runs in the segment thread: preprocessing and the score enlargement overlap with it, so on files the pipeline
runs at the engine's own rate when the other stages have a core (or the GPU has the engine).

Stopping: the first SIGINT/SIGTERM/SIGHUP (or `q` in a window) stops capture; frames already in flight are
finished. A later signal hurries: the frames still queued between stages are dropped. Either way the sinks thread
closes every sink after its last write (no other thread can close a file under it), so files stay playable, and
the summary counts exactly the frames the sinks wrote.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .api import Segmenter
from .errors import SourceError
from .overlay import Annotator
from .preprocess import Geometry
from .signals import StopOnSignals
from .sinks import FrameSink
from .sources import Status
from .telemetry import Telemetry


@dataclass
class Item:
    """One frame on its way through the stages."""

    index: int
    image: np.ndarray          # BGR frame; annotated in place, or replaced by the annotator's output
    t_capture: float           # time.perf_counter() when the frame was read
    t_wall: float              # time.time() at the same moment (for the JSON-lines record)
    ms: dict[str, float] = field(default_factory=dict)
    scores: np.ndarray | None = None        # model-size output scores [H, W, classes] from segment
    mask: np.ndarray | None = None          # frame-size class mask from annotate
    model_input: np.ndarray | None = None   # RGB uint8 [H, W, 3] at the model input size
    geo: Geometry | None = None             # how the frame maps to the model input


class Channel:
    """A bounded FIFO between two stages. With `latest_only`, a full channel drops its oldest item."""

    def __init__(self, size: int, latest_only: bool = False, on_drop=None) -> None:
        self._items: deque[Item] = deque()
        self._size, self._latest_only, self._on_drop = size, latest_only, on_drop
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Item) -> bool:
        """Queue an item (waits while full unless latest_only); False when the channel was closed."""
        with self._cond:
            while len(self._items) >= self._size and not self._closed:
                if self._latest_only:
                    self._items.popleft()
                    if self._on_drop:
                        self._on_drop()
                    break
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self) -> Item | None:
        """The next item, or None once the channel is closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more items will come (producer) or be taken (consumer); wakes every waiter."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Close and discard what is queued (a stage failed)."""
        with self._cond:
            self._items.clear()
            self._closed = True
            self._cond.notify_all()


def segment_items(segmenter: Segmenter, items: list[Item], buffer: np.ndarray | None) -> None:
    """One engine call on the items' model inputs (stacked into `buffer` when there are several): each item gets
    its scores and an equal share of the call's time. Shared by the single-stream runner and the multi-stream
    batcher."""
    if len(items) == 1:
        batch = items[0].model_input[None]  # a view: no copy at batch 1
    else:
        batch = np.stack([item.model_input for item in items], out=buffer[:len(items)])
    t0 = time.perf_counter()
    scores = segmenter.infer(batch)
    per_frame = (time.perf_counter() - t0) * 1e3 / len(items)
    for item, frame_scores in zip(items, scores):
        item.scores = frame_scores
        item.ms["segment"] = per_frame


@dataclass(frozen=True)
class RunOptions:
    batch: int = 1
    queue_size: int = 4
    max_frames: int = 0
    loop: bool = False
    rate: float = 0.0
    status_interval_s: float = 1.0
    progress: bool = True


class Runner:
    """Runs one source through one engine into one fan-out of sinks; `run()` returns when all stages are done."""

    def __init__(self, source, segmenter: Segmenter, annotator: Annotator, sinks: FrameSink, telemetry: Telemetry,
                 options: RunOptions = RunOptions(), stop: threading.Event | None = None,
                 hurry: threading.Event | None = None) -> None:
        self.source, self.segmenter, self.annotator, self.sinks = source, segmenter, annotator, sinks
        self.telemetry, self.options = telemetry, options
        self.live = bool(source.live)
        self.batch = 1 if self.live else options.batch
        # a caller that watches signals from earlier on (the session, from start-up) passes its own events
        self.stop = stop or threading.Event()
        self.hurry = hurry or threading.Event()
        self.errors: list[BaseException] = []
        self._captured = Channel(1 if self.live else options.queue_size, self.live, telemetry.count_drop)
        self._segmented = Channel(options.queue_size)
        self._annotated = Channel(options.queue_size)
        self._channels = (self._captured, self._segmented, self._annotated)
        self._buffer = np.empty((self.batch, *segmenter.input_size, 3), np.uint8) if self.batch > 1 else None

    def run(self) -> None:
        """Run to the end of the source, a stop request or an error (re-raised here after a clean shutdown)."""
        stages = [("capture", self._capture, self._captured), ("segment", self._segment, self._segmented),
                  ("annotate", self._annotate, self._annotated), ("sinks", self._write, None)]
        threads = [threading.Thread(target=self._guard, args=(body, out), name=f"mbunet-{name}", daemon=True)
                   for name, body, out in stages]
        with StopOnSignals(self.stop, self.hurry):
            for t in threads:
                t.start()
            self._report(threads)
        self.telemetry.finish()
        if self.errors:
            raise self.errors[0]

    def _guard(self, body, out: Channel | None) -> None:
        try:
            body()
        except BaseException as e:  # any stage failure stops the whole run; re-raised by run()
            self.errors.append(e)
            self.stop.set()
            self._drop_in_flight()
        finally:
            if out is not None:
                out.close()

    def _drop_in_flight(self) -> None:
        for ch in self._channels:
            ch.abort()

    def _capture(self) -> None:
        src, opts, tel = self.source, self.options, self.telemetry
        count, pace = 0, (1.0 / opts.rate if opts.rate else 0.0)
        next_t = time.perf_counter()
        while not self.stop.is_set() and not (opts.max_frames and count >= opts.max_frames):
            t0 = time.perf_counter()
            cap = src.read()
            tel.corrupt = src.corrupt
            tel.reconnects = getattr(src, "reconnects", 0)
            if cap.status is Status.EOS:
                if not opts.loop or count == 0:
                    return
                src.rewind()
                continue
            if cap.status is Status.ERROR:
                raise SourceError(f"{src.uri}: stream lost (run with reconnect enabled to keep trying)")
            if cap.status is Status.TIMEOUT:
                continue
            if pace:  # --input-rate: a file is played at that rate; a faster live source is decimated
                now = time.perf_counter()
                if self.live and now < next_t:
                    continue
                if not self.live:
                    time.sleep(max(0.0, next_t - now))
                next_t = max(next_t + pace, time.perf_counter() - pace)
            t1 = time.perf_counter()
            item = Item(count, cap.image, t1, time.time(), {"capture": (t1 - t0) * 1e3})
            self._preprocess(item)
            count += 1
            if not self._captured.put(item):
                return

    def _preprocess(self, item: Item) -> None:
        t0 = time.perf_counter()
        item.model_input, item.geo = self.segmenter.prepare(item.image)
        item.ms["preprocess"] = (time.perf_counter() - t0) * 1e3

    def _segment(self) -> None:
        while True:
            first = self._captured.get()
            if first is None:
                return
            items = [first]
            while len(items) < self.batch:
                nxt = self._captured.get()
                if nxt is None:
                    break
                items.append(nxt)
            self._segment_batch(items)
            for item in items:
                if not self._segmented.put(item):
                    return

    def _segment_batch(self, items: list[Item]) -> None:
        segment_items(self.segmenter, items, self._buffer)

    def _annotate(self) -> None:
        while (item := self._segmented.get()) is not None:
            t0 = time.perf_counter()
            item.mask = self.segmenter.to_frame(item.scores, item.geo)
            item.image = self.annotator.annotate(item.image, item.mask)
            item.ms["annotate"] = (time.perf_counter() - t0) * 1e3
            if not self._annotated.put(item):
                return

    def _write(self) -> None:
        try:
            self._write_frames()
        except BaseException:
            with contextlib.suppress(Exception):  # the write error is the one to report, not a close after it
                self.sinks.close()
            raise
        self.sinks.close()

    def _write_frames(self) -> None:
        tel = self.telemetry
        while (item := self._annotated.get()) is not None:
            t0 = time.perf_counter()
            self.sinks.write(item.index, item.image, item.mask)
            t1 = time.perf_counter()
            item.ms["sinks"] = (t1 - t0) * 1e3
            for stage, ms in item.ms.items():
                tel.add_stage(stage, ms)
            e2e = (t1 - item.t_capture) * 1e3
            fps = tel.frame_done(e2e)
            tel.watts()
            self.sinks.record({
                "frame": item.index, "t": round(item.t_wall, 6),
                "stages_ms": {k: round(v, 3) for k, v in item.ms.items()}, "e2e_ms": round(e2e, 3),
                "fps": round(fps, 3), "drops": tel.drops, "corrupt": tel.corrupt, "reconnects": tel.reconnects,
                "foreground": round(float(np.count_nonzero(item.mask)) / item.mask.size, 5), "watts": tel.last_watts,
                "j_per_frame": tel.joules_per_frame(fps),
            })
            if self.sinks.stop_requested:
                self.stop.set()

    def _report(self, threads: list[threading.Thread]) -> None:
        """Wait for the stages, showing on stderr a progress bar (a file on a terminal) or status lines (streams,
        and any run whose stderr is a log)."""
        opts, tel = self.options, self.telemetry
        total = self.source.frame_count if not self.live else None
        if total and opts.max_frames:
            total = min(total, opts.max_frames)
        bar = None
        if opts.progress and not self.live and not opts.loop and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)
        last_status = time.perf_counter()
        while any(t.is_alive() for t in threads):
            threads[-1].join(0.2)
            if self.hurry.is_set():
                self._drop_in_flight()
            now = time.perf_counter()
            if now - last_status < opts.status_interval_s:
                continue
            last_status = now
            if bar is not None:
                bar.update(tel.frames - bar.n)
                bar.set_postfix_str(tel.status_line().split(" | ", 1)[1], refresh=False)
            elif opts.progress:  # a terminal gets one updating line; a log file (drone, service) a line each time
                tty = sys.stderr.isatty()
                print(("\r" if tty else "") + tel.status_line(), end="" if tty else "\n", file=sys.stderr, flush=True)
        for t in threads:
            t.join()
        if bar is not None:
            bar.update(tel.frames - bar.n)
            bar.close()
        elif opts.progress and tel.frames and sys.stderr.isatty():
            print(file=sys.stderr)

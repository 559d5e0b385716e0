"""Run telemetry: named per-stage windows, end-to-end latency, drops, FPS, power; one record per frame.

Telemetry never prints: the runner shows `status_line()` / a progress bar and sinks export `record`s.

JSON-lines schema (one object per frame written by the `jsonl` sink, in output order):
    frame        int    index of the frame in capture order (0-based; dropped frames leave gaps)
    t            float  capture time, Unix seconds
    stages_ms    object per-stage wall time for this frame, ms:
                 capture (read + decode, including a live source's wait for its next frame),
                 preprocess, segment (engine, a batch's time split evenly, + mask back to frame size),
                 annotate, sinks (writing every frame sink; excludes the telemetry line itself)
    e2e_ms       float  capture -> all frame sinks written, ms (includes queue waits)
    fps          float  frames completed per second over the last `fps_window_s` seconds
    drops        int    frames dropped so far (live sources keep only the newest frame)
    corrupt      int    frames skipped so far as unreadable
    reconnects   int    live source reconnects so far
    foreground   float  share of pixels whose class is not 0 (background)
    watts        float|null  latest power reading (null when no power source is readable)
    j_per_frame  float|null  watts / fps: energy per frame at the current rate (null without power or FPS)

Summary (`summary()`, written as summary.json): frames, drops, corrupt, reconnects, wall_s, fps (frames/wall),
stages_ms and e2e_ms each {p50, p95, mean, max, n}, and power {source, avg_watts, joules, j_per_frame} or null.
Percentiles come from a reservoir of at most `RESERVOIR` samples per stage, so memory stays bounded on long runs
(exact below that count); mean/max/n are exact.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque

import numpy as np

STAGES = ("capture", "preprocess", "segment", "annotate", "sinks")
RESERVOIR = 20000


class Samples:
    """Bounded sample set: exact count, mean and max; percentiles from a uniform reservoir."""

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.capacity, self.values, self.n, self.total, self.max = capacity, [], 0, 0.0, 0.0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.max = max(self.max, value)
        if len(self.values) < self.capacity:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.n)
            if j < self.capacity:
                self.values[j] = value

    def stats(self) -> dict | None:
        if not self.n:
            return None
        p50, p95 = np.percentile(np.asarray(self.values), [50, 95])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "mean": round(self.total / self.n, 3),
                "max": round(self.max, 3), "n": self.n}


class Telemetry:
    """Thread-safe counters for one run; `meter` is a pipeline.power PowerMeter (used only when available)."""

    def __init__(self, fps_window_s: float = 2.0, meter=None) -> None:
        self.stages = {name: Samples() for name in STAGES}
        self.e2e = Samples()
        self.frames = self.drops = self.corrupt = self.reconnects = 0
        self.fps_window_s = fps_window_s
        self.meter = meter if meter is not None and getattr(meter, "available", False) else None
        self._done: deque[float] = deque()
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._end: float | None = None
        if self.meter is not None:
            self.meter.begin_window()
        self.last_watts: float | None = None  # updated by watts() once per frame, read by status and records
        self._last_e2e = 0.0

    def add_stage(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stages[stage].add(ms)

    def count_drop(self, n: int = 1) -> None:
        with self._lock:
            self.drops += n

    def frame_done(self, e2e_ms: float) -> float:
        """Record a completed frame; returns the current windowed FPS."""
        now = time.perf_counter()
        with self._lock:
            self.frames += 1
            self.e2e.add(e2e_ms)
            self._last_e2e = e2e_ms
            self._done.append(now)
            while self._done and now - self._done[0] > self.fps_window_s:
                self._done.popleft()
            return self._fps_locked(now)

    def _fps_locked(self, now: float) -> float:
        if len(self._done) < 2:
            return 0.0
        span = max(now - self._done[0], 1e-9)
        return (len(self._done) - 1) / span

    def watts(self) -> float | None:
        """Latest power from the run's energy window (sampled in the meter's thread; None without a meter)."""
        if self.meter is None:
            return None
        watts = self.meter.latest_watts()  # None before the first sample: keep showing the last good value
        if watts is not None:
            self.last_watts = float(watts)
        return self.last_watts

    def fps(self) -> float:
        with self._lock:
            return self._fps_locked(time.perf_counter())

    def joules_per_frame(self, fps: float) -> float | None:
        """Energy per frame at the current rate: latest W / windowed FPS (the run's exact J/frame is in summary)."""
        if self.last_watts is None or fps <= 0:
            return None
        return self.last_watts / fps

    def status_line(self) -> str:
        """One line for the terminal: FPS, per-stage mean ms, latest e2e latency, drops, watts."""
        with self._lock:
            fps = self._fps_locked(time.perf_counter())
            parts = [f"{self.frames} frames", f"{fps:.1f} FPS"]
            for name in STAGES:
                s = self.stages[name]
                if s.n:
                    parts.append(f"{name} {s.total / s.n:.1f}ms")
            if self.e2e.n:
                parts.append(f"e2e {self._last_e2e:.0f}ms")
            parts.append(f"drops {self.drops}")
            if self.corrupt:
                parts.append(f"corrupt {self.corrupt}")
        if self.last_watts is not None:
            parts.append(f"{self.last_watts:.1f} W")
        jpf = self.joules_per_frame(fps)
        if jpf is not None:
            parts.append(f"{jpf:.3f} J/frame")
        return " | ".join(parts)

    def finish(self) -> None:
        """Stop the clock (and the energy window) at the end of the run."""
        if self._end is None:
            self._end = time.perf_counter()

    def summary(self) -> dict:
        """The run's summary (call once, after the last frame: it closes the energy window)."""
        self.finish()
        wall = self._end - self._start
        out = {
            "frames": self.frames, "drops": self.drops, "corrupt": self.corrupt, "reconnects": self.reconnects,
            "wall_s": round(wall, 3), "fps": round(self.frames / wall, 3) if wall > 0 else 0.0,
            "stages_ms": {name: s.stats() for name, s in self.stages.items()}, "e2e_ms": self.e2e.stats(),
            "power": self._power(wall),
        }
        return out

    def _power(self, wall: float) -> dict | None:
        if self.meter is None:
            return None
        m = self.meter.end_window()
        if m.joules is None:
            return {"source": self.meter.source, "joules": None, "avg_watts": None, "j_per_frame": None,
                    "note": m.note}
        return {"source": self.meter.source, "joules": round(m.joules, 3),
                "avg_watts": round(m.avg_watts, 3) if m.avg_watts is not None else None,
                "j_per_frame": round(m.joules / self.frames, 4) if self.frames else None}

"""PowerMeter: one source behind `read()` and energy windows, sampled in a background thread.

Energy over a window: counter sources give it directly (last minus first cumulative reading; the thread's
samples keep wrap detection sound for long windows); sampled-power sources are integrated with the trapezoid
rule over the samples, which need not be evenly spaced (the thread can be delayed by busy work).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from ._source import PowerSource, Sample, SourceUnavailable, readable_error
from .ina3221 import Ina3221Source
from .nvml import NvmlSource
from .rapl import RaplSource

DEFAULT_PERIOD_S = 0.05
SYSFS_ENV = "MBUNET_SYSFS_ROOT"


@dataclass(frozen=True)
class PowerReading:
    """Total W now (None without a source) and every rail's W."""

    source: str
    watts: float | None
    rails: dict[str, float]
    error: str = ""  # why a present source could not be read this time

    def to_json(self) -> dict:
        source = f"{self.source} (read failed: {self.error})" if self.error else self.source
        return {"source": source, "watts": self.watts, "rails": dict(self.rails)}

    def line(self) -> str:
        """One tegrastats-like line: each rail, then the total."""
        if self.watts is None:
            return f"no power reading: {self.error}" if self.error else "no power reading"
        rails = " ".join(f"{name} {w:.2f}W" for name, w in self.rails.items())
        return f"{rails} | total {self.watts:.2f}W" if rails else f"total {self.watts:.2f}W"


@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy over one window; joules/avg_watts are None when nothing could be measured (`note` says why)."""

    seconds: float
    joules: float | None
    avg_watts: float | None
    samples: int
    note: str = ""


def integrate(samples: list[Sample], counter: bool) -> float | None:
    """Joules between the first and last sample (None with fewer than two usable samples)."""
    if counter:
        usable = [s for s in samples if s.joules is not None]
        return usable[-1].joules - usable[0].joules if len(usable) >= 2 else None
    usable = [s for s in samples if s.watts is not None]
    if len(usable) < 2:
        return None
    return sum((b.t - a.t) * (a.watts + b.watts) / 2 for a, b in zip(usable, usable[1:]))


class PowerMeter:
    """The best power source found (or none, with the reasons) behind one small API."""

    def __init__(self, source: PowerSource | None, why_none: str = "", period_s: float = DEFAULT_PERIOD_S) -> None:
        self._source = source
        self._why_none = why_none
        self.period_s = period_s
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._errors: list[str] = []
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = 0.0

    @property
    def source(self) -> str:
        return self._source.name if self._source else f"none: {self._why_none}"

    @property
    def available(self) -> bool:
        return self._source is not None

    def read(self) -> PowerReading:
        """Power now; counter sources need two reads one period apart for their first reading."""
        if self._source is None:
            return PowerReading(self.source, None, {})
        try:
            s = self._take()
            if s.watts is None:
                time.sleep(self.period_s)
                s = self._take()
        except Exception as e:  # a rail that vanished or a driver error: report, never crash the caller
            return PowerReading(self.source, None, {}, readable_error(e))
        return PowerReading(self.source, s.watts, s.rails)

    def latest_watts(self) -> float | None:
        """The newest power the open window's sampling thread recorded (no extra read; None before one)."""
        for sample in reversed(self._samples[-4:]):
            if sample.watts is not None:
                return sample.watts
        return None

    def begin_window(self) -> None:
        if self._thread is not None:
            raise RuntimeError("begin_window() called twice without end_window()")
        self._samples, self._errors = [], []
        self._started = time.monotonic()
        if self._source is None:
            return
        self._record()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="mbunet-power", daemon=True)
        self._thread.start()

    def end_window(self) -> EnergyMeasurement:
        seconds = time.monotonic() - self._started
        if self._source is None:
            return EnergyMeasurement(seconds, None, None, 0, f"no power source ({self._why_none})")
        if self._thread is None:
            raise RuntimeError("end_window() without begin_window()")
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._record()
        joules = integrate(self._samples, self._source.counter)
        span = self._samples[-1].t - self._samples[0].t if len(self._samples) >= 2 else 0.0
        note = "; ".join(sorted(set(self._errors)))
        if joules is None:
            note = note or "fewer than two readings in the window"
        elif joules == 0 and self._source.counter:  # a counter that updates less often than the window is long
            joules, note = None, f"the energy counter did not advance in {span * 1e3:.0f} ms"
        avg = joules / span if joules is not None and span > 0 else None
        return EnergyMeasurement(seconds, joules, avg, len(self._samples), note)

    def measure_idle(self, seconds: float) -> float | None:
        """Average W over `seconds` of doing nothing (None without a source)."""
        self.begin_window()
        time.sleep(seconds)
        return self.end_window().avg_watts

    def close(self) -> None:
        if self._thread is not None:
            self.end_window()
        if self._source is not None:
            self._source.close()

    def __enter__(self) -> "PowerMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _take(self) -> Sample:
        with self._lock:  # sources keep unwrap/rate state: one reader at a time
            return self._source.sample()

    def _record(self) -> None:
        try:
            self._samples.append(self._take())
        except Exception as e:  # kept and reported in the measurement's note
            self._errors.append(readable_error(e))

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self._record()


def watch(meter: PowerMeter, reads: int, interval_s: float = 1.0) -> Iterator[PowerReading]:
    """`reads` readings, one every `interval_s` seconds on a fixed schedule (no drift)."""
    start = time.monotonic()
    for i in range(reads):
        delay = start + i * interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield meter.read()


def resolve_sysfs_root(sysfs_root: str | None = None) -> str:
    """--sysfs-root, else $MBUNET_SYSFS_ROOT, else /sys."""
    return sysfs_root or os.environ.get(SYSFS_ENV) or "/sys"


def open_power_meter(sysfs_root: str | None = None, gpu_index: int = 0,
                     period_s: float = DEFAULT_PERIOD_S) -> PowerMeter:
    """The first source that works: NVML (energy counter, else power), INA3221 rails, RAPL; else none, with why."""
    root = resolve_sysfs_root(sysfs_root)
    factories: list[Callable[[], PowerSource]] = [lambda: NvmlSource(gpu_index)]
    if os.path.isdir(root):
        factories += [lambda: Ina3221Source(root), lambda: RaplSource(root)]
    reasons = []
    for make in factories:
        try:
            return PowerMeter(make(), period_s=period_s)
        except SourceUnavailable as e:
            reasons.append(str(e))
    if not os.path.isdir(root):
        reasons.append(f"sysfs root {root} is not a directory")
    return PowerMeter(None, "; ".join(reasons), period_s)

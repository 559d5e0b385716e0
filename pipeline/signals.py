"""Turn SIGINT, SIGTERM and SIGHUP into stop requests, so long jobs (a video run, a training run) finish cleanly.

The first signal sets `stop`, which the job polls; every later one also sets `hurry` (drop work in flight, keep
what is written). A handler never raises: an exception in the main thread would unwind past threads that still
write files, and that is how a double signal (`timeout`, which signals the process and then its group; a double
Ctrl-C; systemd) used to leave a 0-byte MKV or crash on 8K frames. Handlers can only be installed from the main
thread; elsewhere this does nothing, and the job stops only when its caller sets the events.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopOnSignals:
    """Context manager: while inside, STOP_SIGNALS set `stop` (then `hurry`) instead of ending the process."""

    def __init__(self, stop: threading.Event, hurry: threading.Event | None = None) -> None:
        self.stop = stop
        self.hurry = hurry or threading.Event()
        #: the names of the signals received, in order (for the run's summary)
        self.received: list[str] = []
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            outer = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
            if isinstance(outer, StopOnSignals) and outer.stop is self.stop:
                # a job inside one that already watches (a run's stages inside the session): share its record
                self.hurry, self.received = outer.hurry, outer.received
                return self
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

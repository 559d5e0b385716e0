"""Turn Ctrl-C and SIGTERM into a stop request, so long jobs (a video run, a training run) finish cleanly.

The first SIGINT/SIGTERM sets a threading.Event the job polls; a second one raises KeyboardInterrupt for a user
who does not want to wait. Handlers can only be installed from the main thread; elsewhere this does nothing.
"""
from __future__ import annotations

import signal
import threading


class StopOnSignals:
    """Context manager: while inside, SIGINT/SIGTERM set `stop` instead of killing the process."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

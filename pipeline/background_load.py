"""Busy processes beside a measurement (`mbunet bench --background-load N`): how an engine does when it does not have
the cores to itself, as on an edge computer that also runs a flight stack, an encoder or ROS (issue 35).

Each process is a Python busy loop: one core's worth of demand at normal priority, no memory traffic, so it measures
what scheduling costs an engine, not cache or bandwidth contention. They are separate processes, not threads, so
they share no lock with the engine. A loop checks every few milliseconds that its parent is still there and ends
when it is not, so a bench killed outright leaves no loop spinning.
"""
from __future__ import annotations

import subprocess
import sys

from .errors import ConfigError

# a parent that dies makes this process an orphan (another parent pid); the inner loop is about 10 ms of pure work
BUSY_LOOP = ("import os\n"
             "parent = os.getppid()\n"
             "while os.getppid() == parent:\n"
             "    for _ in range(200_000):\n"
             "        pass\n")


class BackgroundLoad:
    """`with BackgroundLoad(n):` runs n busy processes for the duration of the block, then stops them."""

    def __init__(self, processes: int) -> None:
        if processes < 0:
            raise ConfigError(f"--background-load must be >= 0 busy processes, got {processes}")
        self.processes = processes
        self._running: list[subprocess.Popen] = []

    def __enter__(self) -> "BackgroundLoad":
        self._running = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
                         for _ in range(self.processes)]
        return self

    def __exit__(self, *exc) -> None:
        for p in self._running:
            p.terminate()
        for p in self._running:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._running = []

    def __str__(self) -> str:
        return describe(self.processes)


def describe(processes: int) -> str:
    """How a bench output names the load it ran under."""
    if processes == 0:
        return "no background load"
    return f"background load: {processes} busy process{'es' if processes > 1 else ''} (one core each)"

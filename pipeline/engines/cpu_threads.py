"""How many threads the `cpu` engine's parallel regions use, chosen call by call from the calls' own latencies.

Why not a fixed count: a frame of the shipped model runs about 31 parallel regions (one per layer, 0.05-0.5 ms
each), and each region ends when its slowest thread does. On an idle machine every core's thread runs at once; when
other processes keep cores busy (a flight stack, an encoder, a training job), the kernel deschedules some of those
threads for whole time slices (milliseconds), and every region waits for them: on 2 cores with one busy loop beside
it the engine lost 54% of its speed, beside a 2-thread PyTorch job 96% (issue 35, docs/benchmarks.md). Fewer threads
then finish sooner, more threads are faster when the cores are free, and which load a device will see is not known
in advance, so the engine measures.

Policy (ThreadTuner): the candidates are 1, 2, 4, ... up to the cores this process may run on (sched_getaffinity,
capped by numba's pool). Each has a moving average (EWMA) of seconds per image. A call runs the candidate of lowest
average; every PROBE_EVERY-th call instead runs the candidate measured longest ago, whose measurement replaces its
old average, so every estimate follows the load. When load rises, the count in use slows down and the others' older
estimates (taken under less load) look better, so the engine switches within a few calls; when load falls, the next
probe shows it. A probe of a slower count
costs that call's difference, at most about 1/PROBE_EVERY of the throughput.
$MBUNET_CPU_THREADS=N pins the count (N threads on every call).
"""
from __future__ import annotations

import os

from ..errors import ConfigError

THREADS_ENV = "MBUNET_CPU_THREADS"
PROBE_EVERY = 25
#: weight of the newest call in a candidate's average: a few calls follow a change of load, one outlier does not
ALPHA = 0.3


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    return len(os.sched_getaffinity(0))


def candidate_counts(pool: int, cores: int) -> list[int]:
    """1, 2, 4, ... and the top count itself, up to min(pool, cores); or the one count $MBUNET_CPU_THREADS pins."""
    top = max(1, min(pool, cores))
    pinned = os.environ.get(THREADS_ENV)
    if pinned:
        try:
            count = int(pinned)
        except ValueError:
            count = 0
        if not 1 <= count <= pool:
            raise ConfigError(f"${THREADS_ENV} must be a thread count from 1 to {pool}, got {pinned!r}")
        return [count]
    counts = [1 << k for k in range(top.bit_length()) if 1 << k < top]
    return counts + [top]


class ThreadTuner:
    """Picks a thread count per call (next_count) and learns from its timing (record); see the module docstring."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = list(counts)
        self.average: dict[int, float] = {}
        self.last_measured: dict[int, int] = {}
        self.calls: dict[int, int] = dict.fromkeys(self.counts, 0)
        self.call = 0

    def next_count(self) -> int:
        unmeasured = [c for c in self.counts if c not in self.average]
        if unmeasured:  # the largest first: the right choice on an idle machine
            return unmeasured[-1]
        if self.call % PROBE_EVERY == PROBE_EVERY - 1:
            return min(self.counts, key=lambda c: self.last_measured[c])
        return self.best()

    def best(self) -> int:
        """The count with the lowest average so far; the largest before any was measured."""
        measured = [c for c in self.counts if c in self.average]
        return min(measured, key=self.average.__getitem__) if measured else self.counts[-1]

    def record(self, count: int, seconds_per_image: float) -> None:
        # a count that ran the call before too updates its average; any other (a probe, the first call after a
        # switch) replaces it: its old average was taken under a load that may be gone
        if self.last_measured.get(count) == self.call - 1:
            self.average[count] = ALPHA * seconds_per_image + (1 - ALPHA) * self.average[count]
        else:
            self.average[count] = seconds_per_image
        self.last_measured[count] = self.call
        self.calls[count] += 1
        self.call += 1

    def summary(self) -> str:
        """Which counts ran how often, for the bench row and the run log."""
        if len(self.counts) == 1:
            return f"threads: {self.counts[0]} (${THREADS_ENV})"
        used = ", ".join(f"{c} on {n} calls" for c, n in self.calls.items() if n)
        return f"threads: chosen per call by measured latency among {self.counts}" + (f" ({used})" if used else "")

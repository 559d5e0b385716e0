"""What every power source provides, and safe sysfs reads.

A source is either a *counter* (it reports cumulative joules: NVML's energy counter, RAPL) or a *sampled power*
source (it reports watts now: NVML power, INA3221 rails). The meter integrates the second kind itself.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class SourceUnavailable(Exception):
    """A source is not present or not readable here; the message says why (it ends up in the meter's name)."""


@dataclass(frozen=True)
class Sample:
    """One reading. `joules` is the source's cumulative energy (counters only), already unwrapped."""

    t: float
    watts: float | None
    rails: dict[str, float] = field(default_factory=dict)
    joules: float | None = None


class PowerSource(ABC):
    #: how the source is reported, e.g. "ina3221 VDD_IN"
    name: str
    #: True when `sample().joules` is a cumulative energy counter
    counter: bool = False

    @abstractmethod
    def sample(self) -> Sample:
        """Read the source now; raises OSError (or the vendor's error) when a read fails."""

    def close(self) -> None:
        """Release the library handle, if any."""


class CounterUnwrapper:
    """Turns a counter that wraps at `max_value` into a cumulative value (valid if read at least once per wrap)."""

    def __init__(self, max_value: float) -> None:
        self.max_value = max_value
        self.last: float | None = None
        self.total = 0.0

    def update(self, raw: float) -> float:
        if self.last is not None:
            delta = raw - self.last
            if delta < 0:  # wrapped once since the last read
                delta += self.max_value
            self.total += delta
        self.last = raw
        return self.total


class RateFromCounter:
    """Average power between two reads of a cumulative energy counter (None until the second read)."""

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None

    def update(self, t: float, joules: float) -> float | None:
        prev, self.last = self.last, (t, joules)
        if prev is None or t <= prev[0]:
            return None
        return (joules - prev[1]) / (t - prev[0])


def now() -> float:
    return time.monotonic()


def read_text(path: str) -> str:
    """One sysfs attribute, stripped (raises OSError when missing or unreadable)."""
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def read_number(path: str) -> float:
    """A numeric sysfs attribute; some drivers append a unit ("32760 ma"), which is dropped."""
    text = read_text(path)
    try:
        return float(text.split()[0])
    except (ValueError, IndexError) as e:
        raise OSError(f"{path}: expected a number, found {text!r}") from e


def readable_error(e: BaseException) -> str:
    """One line for a failed read: OSError keeps its path and strerror."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__

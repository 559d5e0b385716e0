"""NVIDIA GPUs through NVML: the total-energy counter (Volta and newer), else sampled board power.

NVML reports energy in mJ since the driver loaded (64-bit, no wrap in practice) and power in mW. Jetson boards
answer NotSupported to both; the meter then falls through to the INA3221 rails.
"""
from __future__ import annotations

import contextlib

from ._source import PowerSource, RateFromCounter, Sample, SourceUnavailable, now


def _nvml_error(e: Exception) -> str:
    return str(e) or type(e).__name__


class NvmlSource(PowerSource):
    """GPU `index` via pynvml; prefers the energy counter, else samples nvmlDeviceGetPowerUsage."""

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError as e:
            raise SourceUnavailable(f"nvml: pynvml not importable ({e})") from e
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise SourceUnavailable(f"nvml: {_nvml_error(e)}") from e
        try:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.counter, why_not_counter = self._probe(pynvml.nvmlDeviceGetTotalEnergyConsumption)
            has_power, why_not_power = self._probe(pynvml.nvmlDeviceGetPowerUsage)
        except pynvml.NVMLError as e:
            pynvml.nvmlShutdown()
            raise SourceUnavailable(f"nvml GPU{index}: {_nvml_error(e)}") from e
        if not (self.counter or has_power):
            pynvml.nvmlShutdown()
            raise SourceUnavailable(f"nvml GPU{index}: energy counter {why_not_counter}; power {why_not_power}")
        self.has_power = has_power
        self.gpu = f"GPU{index}"
        self.name = f"nvml-energy-counter {self.gpu}" if self.counter else f"nvml-power {self.gpu}"
        self._rate = RateFromCounter()

    def _probe(self, call) -> tuple[bool, str]:
        try:
            call(self.handle)
            return True, ""
        except self.nvml.NVMLError as e:
            return False, _nvml_error(e)

    def sample(self) -> Sample:
        t = now()
        joules = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3 if self.counter else None
        if self.has_power:
            watts = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3
        else:  # counter only: average power since the previous sample
            watts = self._rate.update(t, joules)
        return Sample(t, watts, {self.gpu: watts} if watts is not None else {}, joules)

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):  # already shut down: nothing left to release
            self.nvml.nvmlShutdown()

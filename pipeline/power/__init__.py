"""Power and energy: NVML, Jetson INA3221 rails or CPU RAPL behind one meter (`open_power_meter`).

Usage (zeus-like)::

    meter = open_power_meter()          # meter.source names what is read, or "none: <why each failed>"
    meter.begin_window()
    ...work...
    m = meter.end_window()              # EnergyMeasurement(seconds, joules, avg_watts, ...)
"""
from __future__ import annotations

from ._meter import (DEFAULT_PERIOD_S, SYSFS_ENV, EnergyMeasurement, PowerMeter, PowerReading, integrate,
                     open_power_meter, resolve_sysfs_root, watch)
from ._source import PowerSource, Sample, SourceUnavailable

__all__ = ["DEFAULT_PERIOD_S", "SYSFS_ENV", "EnergyMeasurement", "PowerMeter", "PowerReading", "PowerSource",
           "Sample", "SourceUnavailable", "integrate", "open_power_meter", "resolve_sysfs_root", "watch"]

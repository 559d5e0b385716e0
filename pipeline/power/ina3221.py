"""Jetson INA3221 power rails from sysfs.

Two driver layouts exist:
- hwmon (JetPack 5+, mainline driver): <hwmon>/name is "ina3221"; channel N has inN_label, inN_input (bus mV)
  and currN_input (mA), or powerN_input (uW) where a driver provides it. in7 is the "sum of shunt voltages"
  channel (no current, not a rail); Orin boards label unused channels "NC".
- iio (JetPack 4 "ina3221x" driver, Xavier/Nano/TX2): <root>/bus/i2c/drivers/ina3221x/<addr>/iio:deviceK/ with
  rail_name_N and in_powerN_input (mW).
The module total is the VDD_IN (POM_5V_IN on Nano) rail where the board has one, else the sum of the rails.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, replace

from ._source import PowerSource, Sample, SourceUnavailable, now, read_number, read_text, readable_error

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass(frozen=True)
class Rail:
    """How to read one rail: either a power file, or voltage and current files."""

    label: str
    power_path: str | None = None
    power_scale: float = 1.0  # file unit -> W
    volt_path: str | None = None
    curr_path: str | None = None

    def watts(self) -> float:
        if self.power_path is not None:
            return read_number(self.power_path) * self.power_scale
        return read_number(self.volt_path) * read_number(self.curr_path) / 1e6  # mV * mA = uW


def _skipped(label: str) -> bool:
    return label.upper() == "NC" or "sum of shunt" in label.lower()


def _hwmon_dirs(root: str) -> list[str]:
    """Every ina3221 hwmon directory once (class/hwmon entries are symlinks to the i2c device's hwmon)."""
    found: dict[str, str] = {}
    candidates = glob.glob(os.path.join(root, "class", "hwmon", "hwmon*"))
    candidates += glob.glob(os.path.join(root, "bus", "i2c", "drivers", "ina3221*", "*", "hwmon", "hwmon*"))
    for d in sorted(candidates):
        try:
            name = read_text(os.path.join(d, "name"))
        except OSError:
            continue
        if name.startswith("ina3221"):
            found.setdefault(os.path.realpath(d), d)
    return list(found.values())


def _hwmon_rails(d: str) -> list[Rail]:
    rails = []
    for label_path in sorted(glob.glob(os.path.join(d, "in*_label"))):
        m = re.fullmatch(r"in(\d+)_label", os.path.basename(label_path))
        if not m:
            continue
        n, label = m.group(1), read_text(label_path)
        power, volt, curr = (os.path.join(d, f) for f in (f"power{n}_input", f"in{n}_input", f"curr{n}_input"))
        if _skipped(label):
            continue
        if os.path.exists(power):
            rails.append(Rail(label, power_path=power, power_scale=1e-6))
        elif os.path.exists(volt) and os.path.exists(curr):
            rails.append(Rail(label, volt_path=volt, curr_path=curr))
    return rails


def _iio_rails(root: str) -> list[Rail]:
    rails = []
    pattern = os.path.join(root, "bus", "i2c", "drivers", "ina3221x", "*", "iio:device*", "rail_name_*")
    for name_path in sorted(glob.glob(pattern)):
        n = name_path.rsplit("_", 1)[1]
        label = read_text(name_path)
        power = os.path.join(os.path.dirname(name_path), f"in_power{n}_input")
        if not _skipped(label) and os.path.exists(power):
            rails.append(Rail(label, power_path=power, power_scale=1e-3))
    return rails


def _unique(rails: list[Rail]) -> list[Rail]:
    """Two devices may both carry a label; keep both under distinct names."""
    seen: dict[str, int] = {}
    out = []
    for r in rails:
        seen[r.label] = seen.get(r.label, 0) + 1
        out.append(r if seen[r.label] == 1 else replace(r, label=f"{r.label}#{seen[r.label]}"))
    return out


class Ina3221Source(PowerSource):
    """Sampled power of every labelled rail; the total is VDD_IN/POM_5V_IN where present, else the sum."""

    def __init__(self, root: str) -> None:
        try:
            rails = [r for d in _hwmon_dirs(root) for r in _hwmon_rails(d)] + _iio_rails(root)
        except OSError as e:
            raise SourceUnavailable(f"ina3221: {readable_error(e)}") from e
        if not rails:
            raise SourceUnavailable(f"ina3221: no ina3221 rails under {root}")
        self.rails = _unique(rails)
        self.total = next((r.label for r in self.rails if r.label in TOTAL_RAILS), None)
        self.name = f"ina3221 {self.total}" if self.total else \
            f"ina3221 sum of {'+'.join(r.label for r in self.rails)}"
        try:
            self.sample()
        except OSError as e:
            raise SourceUnavailable(f"ina3221: {readable_error(e)}") from e

    def sample(self) -> Sample:
        t = now()
        rails = {r.label: r.watts() for r in self.rails}
        watts = rails[self.total] if self.total else sum(rails.values())
        return Sample(t, watts, rails)

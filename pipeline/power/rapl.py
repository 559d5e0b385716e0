"""CPU energy from Linux powercap (Intel RAPL; AMD's driver uses the same tree).

<root>/class/powercap/intel-rapl:P is a package domain (name "package-P"; "psys" is the whole platform and
overlaps it), intel-rapl:P:S its subdomains (core, uncore, dram), counted inside the package and so left out
of the total. energy_uj is a counter in uJ that wraps at max_energy_range_uj. Since 2020 kernels make
energy_uj root-only (CVE-2020-8694), so "Permission denied" is the usual answer for a normal user.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from ._source import (CounterUnwrapper, PowerSource, RateFromCounter, Sample, SourceUnavailable, now, read_number,
                      read_text, readable_error)


@dataclass
class Domain:
    label: str  # "package-0", or "package-0/core" for a subdomain
    path: str
    package: bool
    unwrap: CounterUnwrapper
    rate: RateFromCounter

    def joules(self, t: float) -> tuple[float, float | None]:
        total = self.unwrap.update(read_number(os.path.join(self.path, "energy_uj"))) / 1e6
        return total, self.rate.update(t, total)


def _domains(root: str) -> list[Domain]:
    base = os.path.join(root, "class", "powercap")
    out = []
    for path in sorted(glob.glob(os.path.join(base, "intel-rapl:*"))):
        m = re.fullmatch(r"intel-rapl:(\d+)(?::(\d+))?", os.path.basename(path))
        if not m:
            continue
        name = read_text(os.path.join(path, "name"))
        package = m.group(2) is None
        if package and not name.startswith("package"):
            continue  # psys: the whole platform, which would count the packages twice
        label = name if package else f"{read_text(os.path.join(base, f'intel-rapl:{m.group(1)}', 'name'))}/{name}"
        wrap = read_number(os.path.join(path, "max_energy_range_uj"))
        out.append(Domain(label, path, package, CounterUnwrapper(wrap), RateFromCounter()))
    return out


class RaplSource(PowerSource):
    """Package energy counters (summed over packages), with the subdomains reported as rails."""

    counter = True

    def __init__(self, root: str) -> None:
        try:
            self.domains = _domains(root)
            if not any(d.package for d in self.domains):
                raise SourceUnavailable(f"rapl: no package domain under {os.path.join(root, 'class', 'powercap')}")
            self.sample()
        except OSError as e:
            raise SourceUnavailable(f"rapl: {readable_error(e)}") from e
        self.name = "rapl " + "+".join(d.label for d in self.domains if d.package)

    def sample(self) -> Sample:
        t = now()
        joules, rails = 0.0, {}
        watts: float | None = 0.0
        for d in self.domains:
            e, w = d.joules(t)
            if w is not None:
                rails[d.label] = w
            if d.package:
                joules += e
                watts = None if w is None or watts is None else watts + w
        return Sample(t, watts, rails, joules)

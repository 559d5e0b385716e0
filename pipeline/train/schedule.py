"""Schedules as pure functions of the step: progressive binarisation (quant mix) and learning rate.

Phases over a run of `total` steps (BiSegUNet: FP, then incremental binarisation, then fully binary):
  [0, warmup)                 full precision, mix = 0
  [warmup, warmup + ramp)     mix rises 0 -> 1
  [warmup + ramp, total)      fully binary/masked fine-tuning, mix = 1 (what the engines compute)
Ramp shapes: "linear", or "quartic" (Quant-Trim: a gentle quartic rise to 0.5 over the first half of the
ramp, then quadratic to 1 over the second half).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

RAMPS = ("linear", "quartic")
LR_KINDS = ("cosine", "cosine-restart", "step", "constant")


@dataclass(frozen=True)
class Phases:
    total: int
    warmup: float = 0.2     # fractions of total
    ramp: float = 0.5
    shape: str = "quartic"

    def __post_init__(self) -> None:
        if self.total < 1 or not (0 <= self.warmup and 0 <= self.ramp and self.warmup + self.ramp <= 1):
            raise ValueError(f"need total >= 1, warmup, ramp >= 0 and warmup + ramp <= 1; got {self}")
        if self.shape not in RAMPS:
            raise ValueError(f"ramp shape {self.shape!r}; valid: {', '.join(RAMPS)}")

    @property
    def ramp_start(self) -> int:
        return round(self.warmup * self.total)

    @property
    def ramp_end(self) -> int:
        return round((self.warmup + self.ramp) * self.total)


def quant_mix(step: int, p: Phases) -> float:
    """Blend of the quantized path at `step`: 0 in warm-up, rising over the ramp, 1 afterwards."""
    if step < p.ramp_start:
        return 0.0
    if step >= p.ramp_end:
        return 1.0
    t = (step - p.ramp_start) / (p.ramp_end - p.ramp_start)
    if p.shape == "linear":
        return t
    return 0.5 * (2 * t) ** 4 if t < 0.5 else 0.5 + 0.5 * (2 * t - 1) ** 2


def learning_rate(step: int, p: Phases, base: float, kind: str = "cosine", floor: float = 0.02,
                  milestones: tuple[float, ...] = (0.6, 0.85), gamma: float = 0.1) -> float:
    """LR at `step`. cosine: base -> base*floor over the run; cosine-restart: a fresh cosine per phase
    (reset when the precision regime changes, as BiSegUNet does); step: x gamma at each milestone fraction."""
    if kind == "constant":
        return base
    if kind == "step":
        return base * gamma ** sum(step >= m * p.total for m in milestones)
    if kind == "cosine":
        start, end = 0, p.total
    elif kind == "cosine-restart":
        bounds = sorted({0, p.ramp_start, p.ramp_end, p.total})
        start = max(b for b in bounds[:-1] if b <= step)
        end = min(b for b in bounds if b > start)
    else:
        raise ValueError(f"learning-rate schedule {kind!r}; valid: {', '.join(LR_KINDS)}")
    t = min(1.0, (step - start) / max(1, end - start))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))

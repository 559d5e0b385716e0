"""Where a frame's time goes: each layer of an engine that runs the network step by step (`cpu`, `cuda`,
`cuda-graph`, `reference`), timed on its own, with the multiply-accumulates per second it reaches.

Every kernel call is wrapped: the device is synchronised before and after it, so a layer's time is its own and
the layers add up to a little more than the engine's frame time (nothing overlaps any more; `cuda-graph` is timed
as the kernels it replays, launched one by one). Read the shares and the rates, not the sum. For the bit layers
the rate counts binary multiply-accumulates (one AND or XOR + popcount bit each), for the input and output convs
integer ones: what a layer does per second against what the core or the GPU can do.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from .arch import Step
from .engines.base import Engine

#: kernel calls that are a network step (program.execute calls exactly one of them per step, in step order)
STEP_CALLS = ("input_conv", "conv3x3", "pool", "conv_t2x2", "concat", "output")


@dataclass(frozen=True)
class LayerTime:
    step: str            # the step's name (the tensor it writes), e.g. "down2.1"
    op: str              # input, conv3x3, pool, convT2x2, concat, output
    kind: str            # fp, binary or masked weights
    shape: str           # output height x width x channels
    ms: float            # median over the repetitions, for the whole batch
    share: float         # of the layers' summed medians
    macs: int | None     # multiply-accumulates for the batch (None for pool and concat)
    gmacs_per_s: float | None

    def to_json(self) -> dict:
        return asdict(self)


def step_macs(step: Step) -> int | None:
    """Multiply-accumulates of one image through `step` (its height/width are the output's)."""
    pixels = step.height * step.width
    if step.op in ("input", "conv3x3"):
        return pixels * step.cin * step.cout * 9
    if step.op in ("convT2x2", "output"):  # a 1x1 conv; a transposed conv's output pixel takes one of its 4 taps
        return pixels * step.cin * step.cout
    return None


class _TimedKernels:
    """Another engine's kernel set, each step's call timed between two device synchronisations."""

    def __init__(self, kernels, sync) -> None:
        self._kernels, self._sync = kernels, sync
        self.seconds: list[float] = []

    def __getattr__(self, name: str):
        method = getattr(self._kernels, name)
        if name not in STEP_CALLS:
            return method

        def timed(*args):
            self._sync()
            start = time.perf_counter()
            out = method(*args)
            self._sync()
            self.seconds.append(time.perf_counter() - start)
            return out

        return timed


@dataclass(frozen=True)
class LayerProfile:
    engine: str
    batch: int
    used: str | None     # what the run used where the machine decides (the cpu engine's threads)
    layers: list[LayerTime]

    def to_json(self) -> dict:
        return {"engine": self.engine, "batch": self.batch, "used": self.used,
                "layers": [r.to_json() for r in self.layers]}


def layer_times(engine: Engine, frames: np.ndarray, repeats: int = 20) -> LayerProfile:
    """Per-step medians of `repeats` runs of `frames` (after one untimed run); raises MbunetError naming why for an
    engine that runs the network in one call."""
    runs: list[_TimedKernels] = []

    def timed(kernels):
        runs.append(_TimedKernels(kernels, engine.sync))
        return runs[-1]

    engine.run_layers(frames, timed)  # untimed: compiles, fills caches
    runs.clear()
    for _ in range(max(1, repeats)):
        steps, used = engine.run_layers(frames, timed)
    if any(len(r.seconds) != len(steps) for r in runs):
        raise RuntimeError(f"engine {engine.name}: {len(runs[0].seconds)} timed kernel calls for {len(steps)} steps")
    batch = len(frames)
    medians = np.median(np.asarray([r.seconds for r in runs]), axis=0)
    total = float(medians.sum())
    rows = []
    for step, seconds in zip(steps, medians):
        macs = step_macs(step)
        macs = None if macs is None else macs * batch
        rows.append(LayerTime(step.name, step.op, step.kind, f"{step.height}x{step.width}x{step.cout}",
                              float(seconds) * 1e3, float(seconds) / total, macs,
                              None if macs is None else macs / float(seconds) / 1e9))
    return LayerProfile(engine.name, batch, used, rows)


def format_layers(profile: LayerProfile) -> str:
    """A table of one engine's layers, slowest first, with the sum and where the time goes by op."""
    used = f", {profile.used}" if profile.used else ""
    lines = [f"per-layer times, engine {profile.engine}, batch {profile.batch}{used} (median ms, each layer between "
             f"two synchronisations):",
             f"  {'step':<10} {'op':<8} {'kind':<7} {'output':<12} {'ms':>8} {'share':>6} {'G MAC/s':>9}"]
    for r in sorted(profile.layers, key=lambda r: -r.ms):
        rate = "-" if r.gmacs_per_s is None else f"{r.gmacs_per_s:.1f}"
        lines.append(f"  {r.step:<10} {r.op:<8} {r.kind:<7} {r.shape:<12} {r.ms:>8.3f} {r.share:>6.1%} {rate:>9}")
    by_op: Counter[str] = Counter()
    for r in profile.layers:
        by_op[r.op] += r.ms
    ops = ", ".join(f"{op} {ms:.3f}" for op, ms in by_op.most_common())
    lines.append(f"  sum {sum(by_op.values()):.3f} ms: {ops}")
    return "\n".join(lines)

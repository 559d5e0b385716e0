"""Per-layer times (`mbunet bench --layers`): one row per step in plan order, each call's time given to its own
step, multiply-accumulate counts from the layer shapes, a clear refusal from engines that run in one call.

No assertion on any engine's speed: a kernel made slow on purpose checks that the time lands on its steps.
"""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from conftest import random_frames
from mbunet import bench
from mbunet.arch import Architecture, plan
from mbunet.engines.base import create_engine
from mbunet.engines.reference import ReferenceKernels
from mbunet.errors import MbunetError
from mbunet.layer_times import format_layers, layer_times, step_macs
from mbunet.power import PowerMeter
from mbunet.random_model import random_quantized_model

SLOW_S = 0.02


@pytest.fixture(scope="module")
def tiny():
    return random_quantized_model(Architecture(width=8, input_size=(32, 32)), seed=3, name="tiny")


class SlowTransposedConvs(ReferenceKernels):
    """The reference kernels, each transposed conv made SLOW_S slower."""

    def conv_t2x2(self, *args):
        time.sleep(SLOW_S)
        return super().conv_t2x2(*args)


@pytest.mark.parametrize("engine_name", ["cpu", "reference"])
def test_one_row_per_step_in_plan_order(tiny, engine_name):
    engine = create_engine(engine_name, tiny)
    profile = layer_times(engine, random_frames(2, 32, 32), repeats=2)
    steps = plan(tiny.arch)
    assert [r.step for r in profile.layers] == [s.name for s in steps]
    assert [r.op for r in profile.layers] == [s.op for s in steps]
    assert all(r.ms > 0 for r in profile.layers) and sum(r.share for r in profile.layers) == pytest.approx(1)
    assert profile.batch == 2 and profile.engine == engine_name
    assert (profile.used or "").endswith(("thread", "threads")) if engine_name == "cpu" else profile.used is None
    # the engine is left as it was: its masks are still the reference's
    frames = random_frames(2, 32, 32, seed=5)
    assert np.array_equal(engine.segment(frames), create_engine("reference", tiny).segment(frames))


def test_each_call_is_charged_to_its_own_step(tiny):
    engine = create_engine("reference", tiny)
    engine.kernels = SlowTransposedConvs()
    profile = layer_times(engine, random_frames(1, 32, 32), repeats=1)
    slow = {r.step for r in profile.layers if r.ms >= SLOW_S * 1e3}
    assert slow == {s.name for s in plan(tiny.arch) if s.op == "convT2x2"}


def test_multiply_accumulates_follow_the_layer_shapes(tiny):
    steps = {s.name: s for s in plan(tiny.arch)}
    conv, up, pool = steps["down2.0"], steps["up4.ct"], steps["down1.pool"]
    assert step_macs(conv) == conv.height * conv.width * conv.cin * conv.cout * 9
    assert step_macs(up) == up.height * up.width * up.cin * up.cout  # one tap per output pixel
    assert step_macs(pool) is None
    profile = layer_times(create_engine("reference", tiny), random_frames(3, 32, 32), repeats=1)
    row = next(r for r in profile.layers if r.step == "down2.0")
    assert row.macs == 3 * step_macs(conv)
    assert row.gmacs_per_s == pytest.approx(row.macs / (row.ms / 1e3) / 1e9)
    text = format_layers(profile)
    assert "engine reference, batch 3" in text and "down2.0" in text and "sum " in text


def test_an_engine_that_runs_in_one_call_says_so(tiny):
    fp = create_engine("torch-fp32", tiny)  # the PyTorch baseline of the same bits
    with pytest.raises(MbunetError, match="runs the network in one call"):
        layer_times(fp, random_frames(1, 32, 32))


def test_bench_layers_writes_a_table_per_engine(tiny, tmp_path):
    settings = bench.BenchSettings(batch=1, iters=2, warmup=1, idle_seconds=0, min_seconds=0, layers=True)
    frames = random_frames(1, 32, 32)
    rows, _ = bench.run_bench(tiny, frames, ["cpu", "torch-fp32"], settings, PowerMeter(None, "no source in test"))
    by_engine = {r.engine: r for r in rows}
    assert [r.step for r in by_engine["cpu"].layers.layers] == [s.name for s in plan(tiny.arch)]
    assert "runs the network in one call" in by_engine["torch-fp32"].layers
    paths = bench.write_results(rows, tmp_path, "tiny")
    with (tmp_path / "layers-cpu.csv").open() as f:
        assert [r["step"] for r in csv.DictReader(f)] == [s.name for s in plan(tiny.arch)]
    assert tmp_path / "layers-cpu.csv" in paths and not (tmp_path / "layers-torch-fp32.csv").exists()
    with (tmp_path / "bench.csv").open() as f:
        assert "layers" not in next(csv.reader(f))
    saved = {r["engine"]: r for r in json.loads((tmp_path / "bench.json").read_text())}
    assert len(saved["cpu"]["layers"]["layers"]) == len(plan(tiny.arch))
    report = bench.format_layer_reports(rows)
    assert "per-layer times, engine cpu" in report and "torch-fp32 runs the network in one call" in report

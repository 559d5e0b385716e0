"""`mbunet bench` on a tiny random model: JSON schema, agreement, skipped engines, J/image arithmetic.

No timing assertions: speed is shown by the benchmark itself, never by a unit test.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import replace

import numpy as np
import pytest

from mbunet import bench
from mbunet.arch import Architecture
from mbunet.engines import base
from mbunet.errors import ConfigError, MbunetError
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import save_model
from mbunet.power import EnergyMeasurement, PowerMeter

ROW_KEYS = {"engine", "batch", "size", "images_per_s", "ms_median", "ms_p5", "ms_p95", "agree_with_reference",
            "watts", "joules_per_image", "idle_watts", "power_source", "speedup", "energy_ratio", "iters", "load_s"}
SETTINGS = bench.BenchSettings(batch=2, iters=3, warmup=1, idle_seconds=0, min_seconds=0)


@pytest.fixture(scope="module")
def tiny():
    return random_quantized_model(Architecture(width=8, input_size=(32, 32)), seed=3, name="tiny")


def engines_here() -> list[str]:
    """reference, plus torch-fp32 once its module exists (the bench must run both)."""
    return ["reference"] + (["torch-fp32"] if "torch-fp32" in base.list_engines() else [])


class FixedMeter(PowerMeter):
    """A meter whose every window measured `joules` over `seconds`, idle `idle` W."""

    def __init__(self, joules: float, seconds: float, idle: float) -> None:
        super().__init__(None, "")
        self.joules, self.seconds, self.idle, self.windows = joules, seconds, idle, 0

    source = "fixed"
    available = True

    def begin_window(self) -> None:
        self.windows += 1

    def end_window(self) -> EnergyMeasurement:
        return EnergyMeasurement(self.seconds, self.joules, self.joules / self.seconds, 10)

    def measure_idle(self, seconds: float) -> float:
        return self.idle


def test_rows_schema_and_reference_agreement(tiny):
    frames = bench.random_frames(tiny.arch.input_size, SETTINGS.batch, seed=0)
    rows, notes = bench.run_bench(tiny, frames, engines_here(), SETTINGS, PowerMeter(None, "no source in test"))
    assert [r.engine for r in rows] == engines_here()
    for r in rows:
        d = r.to_json()
        assert ROW_KEYS <= set(d) and d["size"] == "32x32" and d["batch"] == 2 and d["skipped"] is None
        assert d["ms_p5"] <= d["ms_median"] <= d["ms_p95"] and d["iters"] == SETTINGS.iters
        assert d["images_per_s"] == pytest.approx(2e3 / d["ms_median"])
        assert d["watts"] is None and d["joules_per_image"] is None and d["power_source"].startswith("none: ")
        assert 0.0 <= d["agree_with_reference"] <= 1.0
    assert rows[0].agree_with_reference == 1.0
    if len(rows) == 1:
        assert any("no baseline" in n for n in notes)


def test_a_big_batch_repeats_a_prime_number_of_distinct_frames():
    frames = bench.random_frames((8, 8), 40, seed=0)
    assert frames.shape == (40, 8, 8, 3)
    assert len({f.tobytes() for f in frames}) == bench.DISTINCT_FRAMES == bench.repeat_period(frames)
    assert (frames[bench.DISTINCT_FRAMES:] == frames[:40 - bench.DISTINCT_FRAMES]).all()
    assert bench.repeat_period(bench.random_frames((8, 8), 5, seed=0)) == 5
    frames[35] = 0  # breaks the cycle near the end: every frame counts again
    assert bench.repeat_period(frames) == 40


def test_reference_masks_of_a_repeated_batch_equal_the_full_computation(tiny):
    frames = bench.random_frames(tiny.arch.input_size, bench.DISTINCT_FRAMES + 3, seed=1)
    engine = base.create_engine("reference", tiny)
    try:
        full = engine.segment(frames)
    finally:
        engine.close()
    masks = bench.ReferenceMasks(tiny, frames).masks
    assert masks.shape == full.shape and (masks == full).all()


class SleepyEngine:
    """Stands in for an engine whose every call takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    def segment(self, frames):
        self.calls += 1
        time.sleep(self.seconds)
        return frames[..., 0]

    def sync(self) -> None:
        pass


def test_timed_iterations_go_on_until_the_window_is_min_seconds_long():
    frames = bench.random_frames((8, 8), 1, seed=0)
    meter = PowerMeter(None, "no source in test")
    _, times, _ = bench.time_engine(SleepyEngine(0.01), frames, replace(SETTINGS, iters=2), meter)
    assert len(times) == 2  # min_seconds 0: exactly --iters
    _, times, _ = bench.time_engine(SleepyEngine(0.01), frames, replace(SETTINGS, iters=2, min_seconds=0.1), meter)
    assert sum(times) >= 0.1 and len(times) > 2 and sum(times[:-1]) < 0.1


def test_joules_per_image_and_ratios(tiny):
    frames = bench.random_frames(tiny.arch.input_size, SETTINGS.batch, seed=0)
    meter = FixedMeter(joules=12.0, seconds=2.0, idle=3.5)
    settings = replace(SETTINGS, idle_seconds=5.0)  # FixedMeter answers at once
    rows, _ = bench.run_bench(tiny, frames, ["reference"], settings, meter)
    r = rows[0]
    assert meter.windows == 1
    assert r.joules_per_image > 0
    assert r.watts == pytest.approx(6.0) and r.idle_watts == 3.5 and r.power_source == "fixed"


def test_short_power_windows_are_flagged_only_below_min_window(tiny, monkeypatch):
    frames = bench.random_frames(tiny.arch.input_size, SETTINGS.batch, seed=0)
    meter = FixedMeter(joules=1.0, seconds=0.1, idle=0.0)
    with monkeypatch.context() as patched:  # a window shorter than any machine's, however loaded
        patched.setattr(bench, "MIN_WINDOW_S", 1e6)
        _, notes = bench.run_bench(tiny, frames, ["reference"], SETTINGS, meter)  # 3 iterations of a few ms
    assert any(n.startswith("energy windows under 1e+06 s (reference)") for n in notes)
    rows, notes = bench.run_bench(tiny, frames, ["reference"], replace(SETTINGS, min_seconds=bench.MIN_WINDOW_S),
                                  meter)
    # more iterations than asked, unless the asked ones already filled the window (a loaded machine)
    filled = rows[0].ms_median * SETTINGS.iters >= bench.MIN_WINDOW_S * 1e3
    assert (rows[0].iters > SETTINGS.iters or filled) and not any("energy windows" in n for n in notes)


def test_joules_per_image_is_window_watts_times_timed_seconds():
    row = bench.BenchRow("cpu", 3, "32x32")
    meter = FixedMeter(joules=12.0, seconds=2.0, idle=0.0)
    bench.add_energy(row, meter.end_window(), timed_s=1.5, images=6, meter=meter)
    assert row.watts == 6.0 and row.joules_per_image == pytest.approx(6.0 * 1.5 / 6)
    none = PowerMeter(None, "nothing here")
    bench.add_energy(row := bench.BenchRow("cpu", 1, "32x32"), none.end_window(), 1.0, 1, none)
    assert row.watts is None and row.joules_per_image is None and row.power_source == "none: nothing here"


def test_ratios_over_the_first_measured_baseline():
    rows = [bench.BenchRow("torch-fp32", 1, "32x32", images_per_s=10.0, joules_per_image=2.0),
            bench.BenchRow("torch-fp16", 1, "32x32", skipped="needs CUDA"),
            bench.BenchRow("cpu", 1, "32x32", images_per_s=40.0, joules_per_image=0.5),
            bench.BenchRow("cuda", 1, "32x32", images_per_s=80.0)]
    bench.add_ratios(rows)
    assert [r.speedup for r in rows] == [1.0, None, 4.0, 8.0]
    assert [r.energy_ratio for r in rows] == [1.0, None, 4.0, None]
    assert rows[2].baseline == "torch-fp32" and rows[1].baseline is None


def test_ratios_over_the_fastest_fp16_baseline_else_torch_fp32():
    def rows(graph_ips):
        return [bench.BenchRow("torch-fp32", 1, "32x32", images_per_s=10.0, joules_per_image=2.0),
                bench.BenchRow("torch-fp16", 1, "32x32", images_per_s=20.0, joules_per_image=1.0),
                bench.BenchRow("torch-fp16-graph", 1, "32x32", images_per_s=graph_ips, joules_per_image=0.5),
                bench.BenchRow("bmma", 1, "32x32", images_per_s=80.0, joules_per_image=0.25)]

    faster_graph = rows(40.0)
    bench.add_ratios(faster_graph)
    assert {r.baseline for r in faster_graph} == {"torch-fp16-graph"}
    assert [r.speedup for r in faster_graph] == [0.25, 0.5, 1.0, 2.0]
    assert [r.energy_ratio for r in faster_graph] == [0.25, 0.5, 1.0, 2.0]
    slower_graph = rows(15.0)  # at a large batch eager fp16 can win: the stronger one is the baseline
    bench.add_ratios(slower_graph)
    assert {r.baseline for r in slower_graph} == {"torch-fp16"} and slower_graph[3].speedup == 4.0
    no_fp16 = rows(40.0)
    no_fp16[1].skipped = no_fp16[2].skipped = "needs CUDA"
    bench.add_ratios(no_fp16)
    assert no_fp16[3].baseline == "torch-fp32" and no_fp16[3].speedup == 8.0


class FixedSpeed(base.Engine):
    """A fake engine whose every call takes `seconds` (set per subclass) and marks every pixel foreground."""

    kinds = ("fp", "binary", "mbunet")
    seconds = 0.0

    def load(self, model):
        self.model = model

    def segment_bits(self, frames, keep_bits=True, keep_logits=False):
        time.sleep(self.seconds)
        return np.ones(frames.shape[:3], np.uint8), {}


def test_the_bench_names_the_strongest_fp16_baseline_in_rows_json_and_footer(tiny, tmp_path, monkeypatch):
    engines = {"torch-fp16": 0.03, "torch-fp16-graph": 0.005, "fast-bits": 0.001}
    for name, seconds in engines.items():
        monkeypatch.setitem(base._REGISTRY, name, type(name, (FixedSpeed,), {"name": name, "seconds": seconds}))
    frames = bench.random_frames(tiny.arch.input_size, SETTINGS.batch, seed=0)
    rows, notes = bench.run_bench(tiny, frames, list(engines), SETTINGS, PowerMeter(None, "x"))
    assert [r.baseline for r in rows] == ["torch-fp16-graph"] * 3 and not any("no baseline" in n for n in notes)
    assert rows[1].speedup == 1.0 and rows[0].speedup < 1 < rows[2].speedup
    assert "ratios over torch-fp16-graph (the fastest fp16 baseline in this run)" in bench.format_table(rows)
    bench.write_results(rows, tmp_path, "fake")
    assert {r["baseline"] for r in json.loads((tmp_path / "bench.json").read_text())} == {"torch-fp16-graph"}


def test_agreement_against_another_engine_is_named(tiny, monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "all-on", type("AllOn", (FixedSpeed,), {"name": "all-on"}))
    frames = bench.random_frames(tiny.arch.input_size, SETTINGS.batch, seed=0)
    settings = replace(SETTINGS, agree_with="all-on")
    rows, _ = bench.run_bench(tiny, frames, ["reference", "all-on"], settings, PowerMeter(None, "x"))
    reference_masks = base.create_engine("reference", tiny).segment(frames)
    assert rows[0].agree_with_reference == pytest.approx(float(np.mean(reference_masks == 1)))
    assert rows[1].agree_with_reference == 1.0 and {r.reference_engine for r in rows} == {"all-on"}
    assert bench.format_table(rows).endswith("; agreement with all-on")
    with pytest.raises(MbunetError, match="unknown engine 'oracle'"):
        bench.run_bench(tiny, frames, ["reference"], replace(SETTINGS, agree_with="oracle"), PowerMeter(None, "x"))


def test_unavailable_engine_is_listed_with_reason(tiny, monkeypatch):
    class Nowhere(base.Engine):
        name = "nowhere"

        @classmethod
        def unavailable(cls, model=None):
            return "needs a GPU with sm_80 (none here)"

        def load(self, model):
            raise AssertionError("must not load")

        def segment_bits(self, frames, keep_bits=True):
            raise AssertionError("must not run")

    monkeypatch.setitem(base._REGISTRY, "nowhere", Nowhere)
    frames = bench.random_frames(tiny.arch.input_size, 1, seed=0)
    rows, _ = bench.run_bench(tiny, frames, ["nowhere"], SETTINGS, PowerMeter(None, "x"))
    assert rows[0].skipped == "needs a GPU with sm_80 (none here)" and rows[0].images_per_s is None
    assert "nowhere: not run: needs a GPU with sm_80" in bench.format_table(rows)


def test_load_time_is_the_engines_start_up(tiny, monkeypatch):
    class SlowStart(base.Engine):
        name = "slow-start"

        def load(self, model):
            self.model = model
            time.sleep(0.2)  # as kernels compiling

        def segment_bits(self, frames, keep_bits=True):
            return np.zeros(frames.shape[:3], np.uint8), {}

    monkeypatch.setitem(base._REGISTRY, "slow-start", SlowStart)
    frames = bench.random_frames(tiny.arch.input_size, 1, seed=0)
    rows, _ = bench.run_bench(tiny, frames, ["slow-start"], SETTINGS, PowerMeter(None, "x"))
    assert 0.2 <= rows[0].load_s < 5 and rows[0].ms_median < 100  # the start-up is not in the timed calls
    assert bench.format_table(rows).splitlines()[0].endswith("load s")


def test_an_engine_failing_at_run_time_is_listed_and_the_others_still_run(tiny, monkeypatch):
    class Breaks(base.Engine):
        name = "breaks"

        def load(self, model):
            pass

        def segment_bits(self, frames, keep_bits=True):
            raise MbunetError("engine breaks: graph capture failed (CUDAError: not permitted)")

    monkeypatch.setitem(base._REGISTRY, "breaks", Breaks)
    frames = bench.random_frames(tiny.arch.input_size, 1, seed=0)
    rows, _ = bench.run_bench(tiny, frames, ["breaks", "reference"], SETTINGS, PowerMeter(None, "x"))
    assert rows[0].skipped == "engine breaks: graph capture failed (CUDAError: not permitted)"
    assert rows[1].skipped is None and rows[1].agree_with_reference == 1.0


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(MbunetError, match="unknown engine 'warp-drive'"):
        bench.check_engine_names(["reference", "warp-drive"])
    with pytest.raises(ConfigError, match="names no engine"):
        bench.check_engine_names([])
    with pytest.raises(ConfigError, match="multiples of 16"):
        bench.parse_size("30x32")
    with pytest.raises(ConfigError, match="WxH"):
        bench.parse_size("big")
    assert bench.parse_size("64x32") == (32, 64)


def test_auto_is_the_engine_auto_would_pick(tiny):
    assert bench.resolve_auto(["auto", "reference"], tiny) == [base.choose_engine(tiny).name, "reference"]


def test_size_draws_a_random_model_of_the_same_architecture(tiny):
    m = bench.bench_model(tiny, (48, 64), seed=1)
    assert m.arch.input_size == (48, 64) and m.arch.width == tiny.arch.width
    assert bench.bench_model(tiny, (32, 32), seed=1) is tiny


def test_width_draws_the_papers_network_of_the_models_layer_kinds():
    masked = Architecture(width=8, input_size=(32, 32)).with_masked(["down-C1", "up-CT2"])
    model = random_quantized_model(masked, seed=2, name="small")
    paper = bench.bench_model(model, (64, 48), seed=1, width=12)  # 512x512 and 64 in the real call
    assert paper.arch == replace(masked, width=12, input_size=(64, 48))
    assert paper.name == "random bits, architecture of small at width 12, 48x64"
    assert bench.bench_model(model, None, seed=1, width=8) is model
    assert bench.bench_model(model, None, seed=1, width=16).arch.input_size == (32, 32)
    with pytest.raises(ConfigError, match="--width must be >= 1"):
        bench.load_bench_model("mbunet-w32", None, seed=0, width=0)


def test_cli_writes_json_csv_png(tiny, tmp_path, capsys):
    from mbunet.app.cli import main

    path = save_model(tmp_path / "tiny.safetensors", tiny.arch, tiny.arrays, {"name": "tiny"})
    out = tmp_path / "res"
    argv = ["bench", "--model", str(path), "--engines", "reference", "--iters", "2", "--warmup", "1",
            "--idle-seconds", "0", "--json", "--out", str(out), "--sysfs-root", str(tmp_path / "nosys")]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "bench.json").read_text())
    assert printed[0]["engine"] == "reference" and printed[0]["agree_with_reference"] == 1.0
    assert "sysfs root" in printed[0]["power_source"] and printed[0]["watts"] is None
    with (out / "bench.csv").open() as f:
        assert [r["engine"] for r in csv.DictReader(f)] == ["reference"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(argv[:4] + ["reference,warp-drive"] + argv[5:]) == 2
    assert "unknown engine 'warp-drive'" in capsys.readouterr().err

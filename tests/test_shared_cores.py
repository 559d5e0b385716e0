"""The `cpu` engine on shared cores (issue 35): the thread-count tuner's policy, the busy processes of
`mbunet bench --background-load`, and the bench naming the load. No timing assertions: the figures are in
docs/benchmarks.md, from `python -m mbunet.shared_cpu_bench`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import random_frames
from mbunet import OPENMP_DEFAULTS, bench
from mbunet.arch import Architecture
from mbunet.background_load import BackgroundLoad
from mbunet.engines import cpu_threads
from mbunet.engines.base import create_engine
from mbunet.engines.cpu_threads import PROBE_EVERY, ThreadTuner, candidate_counts
from mbunet.errors import ConfigError
from mbunet.power import PowerMeter
from mbunet.random_model import random_quantized_model


def test_import_sets_the_openmp_wait_defaults_only_where_the_user_has_not():
    # read by the OpenMP runtime when it starts, so checked in a fresh interpreter
    show = "import os, mbunet; print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_DEFAULTS}
    fresh = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["PASSIVE", "5000"]
    mine = subprocess.run([sys.executable, "-c", show], env={**env, "GOMP_SPINCOUNT": "0"}, capture_output=True,
                          text=True, check=True)
    assert mine.stdout.split() == ["PASSIVE", "0"]


@pytest.mark.parametrize("pool,cores,counts", [(2, 2, [1, 2]), (8, 2, [1, 2]), (2, 16, [1, 2]), (1, 4, [1]),
                                               (16, 6, [1, 2, 4, 6]), (16, 16, [1, 2, 4, 8, 16])])
def test_candidates_are_powers_of_two_up_to_the_usable_cores(monkeypatch, pool, cores, counts):
    monkeypatch.delenv(cpu_threads.THREADS_ENV, raising=False)
    assert candidate_counts(pool, cores) == counts


def test_the_environment_pins_the_count(monkeypatch):
    monkeypatch.setenv(cpu_threads.THREADS_ENV, "1")
    assert candidate_counts(4, 4) == [1]
    for bad in ("0", "5", "two"):
        monkeypatch.setenv(cpu_threads.THREADS_ENV, bad)
        with pytest.raises(ConfigError, match="MBUNET_CPU_THREADS"):
            candidate_counts(4, 4)


def _drive(tuner: ThreadTuner, seconds: dict[int, float], calls: int) -> list[int]:
    """Run `calls` calls where count c takes seconds[c]; returns the counts used."""
    used = []
    for _ in range(calls):
        count = tuner.next_count()
        tuner.record(count, seconds[count])
        used.append(count)
    return used


def test_tuner_measures_every_count_then_keeps_the_fastest_and_probes_the_others():
    tuner = ThreadTuner([1, 2])
    used = _drive(tuner, {1: 0.012, 2: 0.008}, 100)
    assert used[:2] == [2, 1]  # the largest first: the right choice when the cores are free
    assert used.count(1) == 1 + 100 // PROBE_EVERY  # the first measurement, then one probe per PROBE_EVERY calls
    assert tuner.calls == {1: used.count(1), 2: used.count(2)}


def test_tuner_best_is_the_fastest_measured_count_without_counting_a_call():
    tuner = ThreadTuner([1, 2])
    assert tuner.best() == 2  # nothing measured: the largest
    _drive(tuner, {1: 0.008, 2: 0.012}, 10)
    calls = dict(tuner.calls)
    assert tuner.best() == 1 and tuner.calls == calls


def test_tuner_follows_a_change_of_load_both_ways():
    tuner = ThreadTuner([1, 2])
    _drive(tuner, {1: 0.012, 2: 0.008}, 50)
    loaded = _drive(tuner, {1: 0.013, 2: 0.050}, 50)  # other processes took a core: 2 threads got slow
    assert loaded[-PROBE_EVERY:].count(1) >= PROBE_EVERY - 1  # within a few calls it runs 1 thread
    freed = _drive(tuner, {1: 0.012, 2: 0.008}, 3 * PROBE_EVERY)  # the load is gone: a probe shows it
    assert freed[-PROBE_EVERY:].count(2) >= PROBE_EVERY - 1


def test_engine_results_do_not_depend_on_the_thread_count(monkeypatch):
    model = random_quantized_model(Architecture(width=8, input_size=(16, 32)).with_masked({"down-C1"}), seed=2)
    frames = random_frames(2, 16, 32, seed=1)
    masks = {}
    for count in ("1", "2"):
        monkeypatch.setenv(cpu_threads.THREADS_ENV, count)
        engine = create_engine("cpu", model)
        masks[count] = engine.segment_bits(frames)
        assert engine.threads.counts == [int(count)] and engine.detail == f"threads: {count} ($MBUNET_CPU_THREADS)"
    for name, bits in masks["1"][1].items():
        np.testing.assert_array_equal(bits, masks["2"][1][name], err_msg=name)
    np.testing.assert_array_equal(masks["1"][0], masks["2"][0])


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_background_load_runs_busy_processes_and_stops_them():
    with BackgroundLoad(2) as load:
        pids = [p.pid for p in load._running]
        assert len(pids) == 2 and all(p.poll() is None for p in load._running)
        time.sleep(1.0)
        assert all(_cpu_seconds(pid) > 0.1 for pid in pids)  # busy, not sleeping
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)  # stopped and reaped
    assert str(BackgroundLoad(1)) == "background load: 1 busy process (one core each)"
    with pytest.raises(ConfigError, match="background-load"):
        BackgroundLoad(-1)


def test_bench_rows_and_footer_name_the_load():
    model = random_quantized_model(Architecture(width=8, input_size=(32, 32)), seed=3, name="tiny")
    settings = bench.BenchSettings(batch=1, iters=2, warmup=1, idle_seconds=0, min_seconds=0, agree_with="cpu",
                                   background_load=1)
    no_power = PowerMeter(None, "none: test")
    rows, _ = bench.run_bench(model, bench.random_frames((32, 32), 1, 0), ["cpu"], settings, no_power)
    assert rows[0].background_load == 1 and rows[0].to_json()["background_load"] == 1
    assert rows[0].engine_detail.startswith("threads: ")  # what the timed calls ran with
    footer = bench.format_table(rows).splitlines()[-1]
    assert footer.endswith("; background load: 1 busy process (one core each); agreement with cpu")
    idle = bench.run_bench(model, bench.random_frames((32, 32), 1, 0), ["cpu"],
                           bench.BenchSettings(iters=1, warmup=1, idle_seconds=0, min_seconds=0, agree_with="cpu"),
                           no_power)[0]
    assert bench.format_table(idle).splitlines()[-1].endswith("; no background load; agreement with cpu")
    with pytest.raises(ConfigError, match="background load"):
        bench.BenchSettings(background_load=-1)

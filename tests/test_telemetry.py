"""Telemetry: bounded percentiles, FPS, summary fields, and energy per frame from a (fake sysfs) power meter."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from mbunet.config import RunConfig, SourceConfig
from mbunet.session import run
from mbunet.telemetry import STAGES, Samples, Telemetry


def test_samples_are_exact_below_capacity():
    s = Samples(capacity=1000)
    for v in range(1, 101):
        s.add(float(v))
    st = s.stats()
    assert st["p50"] == pytest.approx(np.percentile(np.arange(1, 101), 50))
    assert st["p95"] == pytest.approx(np.percentile(np.arange(1, 101), 95))
    assert (st["mean"], st["max"], st["n"]) == (50.5, 100.0, 100)
    assert Samples().stats() is None


def test_samples_stay_bounded_and_unbiased():
    s = Samples(capacity=500)
    for v in np.random.default_rng(0).uniform(0, 100, 20000):
        s.add(float(v))
    st = s.stats()
    assert len(s.values) == 500 and st["n"] == 20000
    assert st["p50"] == pytest.approx(50, abs=6) and st["p95"] == pytest.approx(95, abs=3)


def test_telemetry_counts_and_status_line():
    tel = Telemetry(fps_window_s=5.0)
    for i in range(10):
        for stage in STAGES:
            tel.add_stage(stage, 1.0 + i)
        tel.frame_done(20.0)
        time.sleep(0.01)
    tel.count_drop(3)
    assert 30 < tel.fps() < 120
    line = tel.status_line()
    assert "10 frames" in line and "drops 3" in line and "segment 5.5ms" in line and "e2e 20ms" in line
    s = tel.summary()
    assert s["frames"] == 10 and s["drops"] == 3 and s["power"] is None
    assert s["stages_ms"]["capture"]["n"] == 10 and s["e2e_ms"]["p50"] == 20.0


@pytest.fixture
def fake_rapl(tmp_path, monkeypatch):
    """A powercap tree whose package counter rises by 10 J per second (10 W) while the test runs."""
    dom = tmp_path / "class" / "powercap" / "intel-rapl:0"
    dom.mkdir(parents=True)
    (dom / "name").write_text("package-0\n")
    (dom / "max_energy_range_uj").write_text(str(2**40) + "\n")
    counter = dom / "energy_uj"
    counter.write_text("0\n")
    stop = threading.Event()

    def tick():
        start = time.monotonic()
        while not stop.wait(0.01):
            tmp = dom / "energy_uj.tmp"
            tmp.write_text(f"{int((time.monotonic() - start) * 10e6)}\n")
            tmp.replace(counter)

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    monkeypatch.setenv("MBUNET_SYSFS_ROOT", str(tmp_path))
    yield tmp_path
    stop.set()
    t.join()


def test_run_reports_joules_per_frame(tmp_path, tiny_model_path, fake_rapl):
    cfg = RunConfig(source=SourceConfig(uri="synthetic://?frames=30&width=160&height=120&fps=30"),
                    model=str(tiny_model_path), engine="reference", outputs=("null://",), headless=True,
                    run_dir=str(tmp_path / "runs"))
    summary = run(cfg, progress=False)
    power = summary["power"]
    assert power["source"].startswith("rapl")
    assert power["avg_watts"] == pytest.approx(10.0, rel=0.2)
    assert power["j_per_frame"] == pytest.approx(power["joules"] / 30, abs=1e-4)
    jsonl = next((tmp_path / "runs").glob("*/telemetry.jsonl"))
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 30
    late = [r for r in records if r["watts"] is not None and r["fps"] > 0]
    assert late and all(r["j_per_frame"] == pytest.approx(r["watts"] / r["fps"], rel=1e-2) for r in late)  # fps rounded
    assert json.loads((jsonl.parent / "summary.json").read_text())["power"]["joules"] == power["joules"]

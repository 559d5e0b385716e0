"""Power sources against fake sysfs trees (tests/fixtures/sysfs) and a fake pynvml; energy integration."""
from __future__ import annotations

import json
import shutil
import sys
import time
import types
from pathlib import Path

import pytest

from mbunet.power import PowerMeter, Sample, integrate, open_power_meter
from mbunet.power._source import PowerSource

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"


class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    def __str__(self) -> str:
        return "Not Supported"


class FakeLibraryNotFound(FakeNVMLError):
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"


def fake_pynvml(energy_mj=None, power_mw=None, init_error=None) -> types.ModuleType:
    """The few pynvml calls the meter uses; None for a reading means the GPU answers NotSupported."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError
    m.state = {"energy_mj": energy_mj, "power_mw": power_mw, "shutdown": 0}

    def init():
        if init_error:
            raise init_error()

    def reading(key):
        def call(handle):
            assert handle == "gpu0"
            if m.state[key] is None:
                raise FakeNotSupported()
            return m.state[key]
        return call

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.state.__setitem__("shutdown", m.state["shutdown"] + 1)
    m.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    m.nvmlDeviceGetTotalEnergyConsumption = reading("energy_mj")
    m.nvmlDeviceGetPowerUsage = reading("power_mw")
    return m


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """Sysfs tests must not depend on whether this machine has a GPU: NVML is absent unless a test installs it."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=FakeLibraryNotFound))


def copy_tree(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst, symlinks=True)
    return dst


@pytest.mark.parametrize("tree, source, total, rails", [
    ("orin-nano", "ina3221 VDD_IN", 5.072 * 1.032, {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}),
    ("agx-orin", "ina3221 sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO",
     19.984 * 0.480 + 19.984 * 0.160 + 4.976 * 0.520 + 4.984 * 0.104,
     {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}),
    ("agx-xavier", "ina3221 sum of GPU+CPU+SOC+CV+VDDRQ+SYS5V", (5836 + 2918 + 8755 + 0 + 1459 + 4067) / 1e3,
     {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}),
    ("nano", "ina3221 POM_5V_IN", 3.049, {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}),
])
def test_jetson_rails(tree, source, total, rails):
    with open_power_meter(str(FIXTURES / tree)) as meter:
        assert meter.available and meter.source == source
        r = meter.read()
    assert r.watts == pytest.approx(total, rel=1e-9)
    assert set(r.rails) == rails  # no "sum of shunt voltages", no NC, the symlinked device counted once


def test_power_input_file_preferred_over_volts_times_amps(tmp_path):
    root = copy_tree("orin-nano", tmp_path)
    hwmon = root / "devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon1"
    (hwmon / "power1_input").write_text("7250000\n")  # uW
    with open_power_meter(str(root)) as meter:
        assert meter.read().watts == pytest.approx(7.25)


def test_env_var_sets_root(monkeypatch):
    monkeypatch.setenv("MBUNET_SYSFS_ROOT", str(FIXTURES / "nano"))
    with open_power_meter() as meter:
        assert meter.source == "ina3221 POM_5V_IN"


def test_rapl_package_only_and_wrap(tmp_path):
    root = copy_tree("rapl", tmp_path)
    pkg = root / "class/powercap/intel-rapl:0/energy_uj"
    with open_power_meter(str(root)) as meter:
        assert meter.source == "rapl package-0"  # psys is not a package; subdomains are rails only
        meter.begin_window()
        pkg.write_text("262143328000\n")  # +328 uJ, then the counter wraps (range 262143328850)
        meter._record()
        pkg.write_text("2000000\n")  # +850 + 2 000 000 uJ across the wrap
        meter._record()
        m = meter.end_window()
    assert m.joules == pytest.approx((328000 + 850 + 2_000_000) / 1e6, abs=1e-9)


def test_nothing_readable_says_why(tmp_path):
    (tmp_path / "class/powercap/intel-rapl:0").mkdir(parents=True)
    (tmp_path / "class/powercap/intel-rapl:0/name").write_text("package-0\n")
    (tmp_path / "class/powercap/intel-rapl:0/max_energy_range_uj").write_text("262143328850\n")  # no energy_uj
    with open_power_meter(str(tmp_path)) as meter:
        assert not meter.available
        assert meter.source.startswith("none: nvml: NVML Shared Library Not Found; ina3221: no ina3221 rails")
        assert "intel-rapl:0/energy_uj: No such file or directory" in meter.source
        assert meter.read().watts is None
        meter.begin_window()
        m = meter.end_window()
    assert m.joules is None and m.avg_watts is None and "no power source" in m.note
    assert meter.measure_idle(0.01) is None


def test_missing_root_is_reported(tmp_path):
    meter = open_power_meter(str(tmp_path / "nope"))
    assert "sysfs root" in meter.source and "is not a directory" in meter.source


def test_rail_vanishing_mid_run_does_not_crash(tmp_path):
    root = copy_tree("orin-nano", tmp_path)
    with open_power_meter(str(root)) as meter:
        (root / "devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon1/curr1_input").unlink()
        r = meter.read()
        assert r.watts is None and "curr1_input" in r.error
        meter.begin_window()
        m = meter.end_window()
    assert m.joules is None and "curr1_input" in m.note


def test_nvml_energy_counter(monkeypatch):
    nv = fake_pynvml(energy_mj=1_000_000, power_mw=70_000)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    meter = open_power_meter(str(FIXTURES / "orin-nano"))
    assert meter.source == "nvml-energy-counter GPU0"
    assert meter.read().watts == pytest.approx(70.0) and meter.read().rails == {"GPU0": pytest.approx(70.0)}
    meter.begin_window()
    nv.state["energy_mj"] += 12_500
    m = meter.end_window()
    assert m.joules == pytest.approx(12.5)
    meter.close()
    assert nv.state["shutdown"] == 1


def test_a_counter_that_did_not_advance_measured_nothing(monkeypatch):
    # seen on an H200: a 15 ms bench window between two NVML counter updates read 0 J, i.e. 0 W
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_mj=1_000_000, power_mw=None))
    with open_power_meter(str(FIXTURES / "orin-nano")) as meter:
        meter.begin_window()
        m = meter.end_window()
    assert m.joules is None and m.avg_watts is None and "did not advance" in m.note


def test_nvml_power_only_is_sampled(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_mj=None, power_mw=42_000))
    with open_power_meter(str(FIXTURES / "orin-nano")) as meter:
        assert meter.source == "nvml-power GPU0"
        meter.begin_window()
        time.sleep(0.2)
        m = meter.end_window()
    assert m.avg_watts == pytest.approx(42.0) and m.samples >= 2


def test_jetson_nvml_not_supported_falls_through(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_mj=None, power_mw=None))
    with open_power_meter(str(FIXTURES / "orin-nano")) as meter:
        assert meter.source == "ina3221 VDD_IN"
    none = open_power_meter(str(FIXTURES.parent / "missing"))
    assert "nvml GPU0: energy counter Not Supported; power Not Supported" in none.source


def test_trapezoid_rule_exact():
    s = [Sample(0.0, 2.0), Sample(1.0, 4.0), Sample(3.0, 4.0), Sample(3.5, None), Sample(4.0, 0.0)]
    assert integrate(s, counter=False) == pytest.approx(3.0 + 8.0 + 2.0)
    assert integrate(s[:1], counter=False) is None
    assert integrate([Sample(0, None, joules=5.0), Sample(1, None, joules=7.5)], counter=True) == 2.5


class StepSource(PowerSource):
    """A rail whose watts the test changes while the sampler thread runs."""

    name = "step"

    def __init__(self) -> None:
        self.watts = 5.0

    def sample(self) -> Sample:
        return Sample(time.monotonic(), self.watts)


def test_sampled_energy_follows_a_changing_rail():
    src = StepSource()
    meter = PowerMeter(src, period_s=0.01)
    meter.begin_window()
    time.sleep(0.3)
    src.watts = 15.0
    time.sleep(0.3)
    m = meter.end_window()
    # 5 W then 15 W for about the same time: energy between the two constant-power bounds, avg near 10 W
    assert 5.0 * m.seconds < m.joules < 15.0 * m.seconds
    assert m.avg_watts == pytest.approx(10.0, abs=1.5)
    assert m.samples > 10


def test_idle_power_of_a_real_tree(tmp_path):
    with open_power_meter(str(FIXTURES / "nano"), period_s=0.01) as meter:
        assert meter.measure_idle(0.1) == pytest.approx(3.049)


def test_cli_json_and_text(capsys):
    from mbunet.app.cli import main

    assert main(["power", "--json", "--sysfs-root", str(FIXTURES / "agx-orin")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"].startswith("ina3221 sum of") and set(out) == {"source", "watts", "rails"}
    assert out["watts"] == pytest.approx(sum(out["rails"].values()))
    assert main(["power", "--sysfs-root", str(FIXTURES / "orin-nano")]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "source: ina3221 VDD_IN" and text[1].endswith("total 5.23W")
    assert main(["power", "--json", "--sysfs-root", str(FIXTURES / "missing")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["watts"] is None and out["source"].startswith("none: ")

"""The threaded runner and `mbunet run`: correctness against the engine, ordering, drops, batching, stopping,
and one-line errors for bad input."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mbunet.app.cli import main as cli
from mbunet.config import RunConfig, SourceConfig, TelemetryConfig
from mbunet.engines.base import create_engine
from mbunet.modelfile import load_model
from mbunet.preprocess import geometry, scores_to_frame, to_model_input
from mbunet.runner import Channel, Item
from mbunet.session import run
from mbunet.sources import Status, open_source

from conftest import REPO


def item(i):
    return Item(i, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0)


def test_channel_live_keeps_newest_and_counts_drops():
    drops = []
    ch = Channel(1, latest_only=True, on_drop=lambda: drops.append(1))
    for i in range(5):
        assert ch.put(item(i))
    ch.close()
    assert ch.get().index == 4 and ch.get() is None and len(drops) == 4


def test_channel_files_wait_instead_of_dropping():
    ch = Channel(2)
    got = []
    consumer = threading.Thread(target=lambda: [got.append(x.index) for x in iter(ch.get, None)])
    consumer.start()
    for i in range(50):
        ch.put(item(i))
    ch.close()
    consumer.join(5)
    assert got == list(range(50))


def test_channel_close_releases_a_blocked_producer():
    ch = Channel(1)
    ch.put(item(0))
    result = []
    t = threading.Thread(target=lambda: result.append(ch.put(item(1))))
    t.start()
    time.sleep(0.05)
    ch.abort()
    t.join(2)
    assert result == [False]


def config(tmp_path, model, uri, *outputs, **kw):
    source = SourceConfig(uri=str(uri), **kw.pop("source", {}))
    return RunConfig(source=source, model=str(model), engine=kw.pop("engine", "reference"), outputs=tuple(outputs),
                     headless=True, run_dir=str(tmp_path / "runs"), telemetry=TelemetryConfig(power=False), **kw)


def expected_masks(uri, model_path, n, fit="letterbox"):
    """What the engine says for each frame, computed without the runner."""
    model = load_model(model_path)
    engine = create_engine("reference", model)
    src = open_source(str(uri))
    out = []
    while len(out) < n and (cap := src.read()).status is Status.OK:
        geo = geometry(cap.image.shape[:2], model.arch.input_size, fit)
        out.append(scores_to_frame(engine.segment_scores(to_model_input(cap.image, geo)[None])[1][0], geo))
    return out


@pytest.mark.parametrize("batch, fit", [(1, "letterbox"), (3, "resize")])
def test_runner_masks_match_the_engine_in_order(tmp_path, tiny_model_path, videos, batch, fit):
    clip = videos / "bikes.mp4"
    summary = run(config(tmp_path, tiny_model_path, clip, f"masks://{tmp_path / 'm'}?format=npy",
                         str(tmp_path / "o.mkv"), source={"max_frames": 10}, batch=batch, fit=fit), progress=False)
    assert summary["frames"] == 10 and summary["drops"] == 0
    for i, want in enumerate(expected_masks(clip, tiny_model_path, 10, fit)):
        assert (np.load(tmp_path / "m" / f"{i:06d}.npy") == want).all(), f"frame {i}"
    run_dir = tmp_path / "runs" / os.listdir(tmp_path / "runs")[0]
    lines = [json.loads(x) for x in (run_dir / "telemetry.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(10))
    assert set(lines[0]["stages_ms"]) == {"capture", "preprocess", "segment", "annotate", "sinks"}
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["e2e_ms"]["n"] == 10 and saved["stages_ms"]["segment"]["p95"] >= saved["stages_ms"]["segment"]["p50"]


def test_live_source_drops_oldest_and_reports_them(tmp_path, tiny_model_path):
    """A 200 FPS live feed into a slower engine: frames are dropped, latency stays bounded."""
    uri = "synthetic://?frames=150&width=640&height=480&fps=200&live=1"
    summary = run(config(tmp_path, tiny_model_path, uri, "null://"), progress=False)
    assert summary["live"] and summary["drops"] > 0
    assert summary["frames"] + summary["drops"] <= 150
    assert summary["e2e_ms"]["p95"] < 500


def test_file_source_never_drops(tmp_path, tiny_model_path):
    summary = run(config(tmp_path, tiny_model_path, "synthetic://?frames=40&width=320&height=240", "null://"),
                  progress=False)
    assert summary["frames"] == 40 and summary["drops"] == 0


def test_no_display_means_headless_with_a_warning(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    logged = []
    cfg = config(tmp_path, tiny_model_path, "synthetic://?frames=3", "display://0", "null://")
    summary = run(dataclasses.replace(cfg, headless=False), log=logged.append, progress=False)
    assert summary["frames"] == 3 and summary["outputs"][0] == "null://"
    assert any("running headless" in line for line in logged)
    assert any("display:// output is skipped" in line for line in logged)


def test_sink_failure_stops_the_run_and_is_raised(tmp_path, tiny_model_path):
    from mbunet.errors import SinkError

    bad = tmp_path / "file"
    bad.write_text("x")  # a file where the image folder should be
    with pytest.raises(SinkError):
        run(config(tmp_path, tiny_model_path, "synthetic://?frames=20", f"{bad}/sub/%04d.png"), progress=False)


# --- the command line -------------------------------------------------------------------------------------

def test_cli_run_writes_outputs_and_summary(tmp_path, tiny_model_path, capsys):
    rc = cli(["run", "--model", str(tiny_model_path), "--engine", "reference", "--max-frames", "8", "--headless",
              "--run-dir", str(tmp_path), "--overlay", "contours", "--no-power", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "8 frames" in out.out and "e2e" in out.out
    run_dir = next(tmp_path.iterdir())
    assert {p.name for p in run_dir.iterdir()} == {"overlay.mkv", "telemetry.jsonl", "summary.json"}
    src = open_source(str(run_dir / "overlay.mkv"))
    assert src.read().image.shape == (272, 640, 3)  # the sample clip's size, not the model's
    assert "engine: reference (requested)" in out.err


def test_cli_config_preset_and_override(tmp_path, tiny_model_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("source:\n  max_frames: 3\nheadless: true\noverlay:\n  style: mask\ntelemetry:\n  power: false\n")
    rc = cli(["run", "--config", str(cfg), "synthetic://?frames=50&width=64&height=48", str(tmp_path / "o.avi"),
              "--model", str(tiny_model_path), "--engine", "reference", "--run-dir", str(tmp_path / "r"), "--quiet",
              "--max-frames", "5"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(next((tmp_path / "r").glob("*/summary.json")).read_text())
    assert summary["frames"] == 5 and summary["overlay"] == "mask"


@pytest.mark.parametrize("setup, args, message", [
    (lambda d: None, ["{d}/missing.mp4"], "no such file"),
    (lambda d: (d / "zero.mp4").write_bytes(b""), ["{d}/zero.mp4"], "empty file"),
    (lambda d: (d / "text.mp4").write_text("not a video\n" * 100), ["{d}/text.mp4"], "cannot decode"),
    (lambda d: None, ["ftp://host/x.mp4"], "unknown input URI scheme ftp://"),
    (lambda d: None, ["synthetic://", "{d}/out.xyz"], "cannot tell what output"),
    (lambda d: (d / "bad.yaml").write_text("sauce: {}\n"), ["--config", "{d}/bad.yaml"], "unknown key sauce"),
    (lambda d: None, ["--config", "nowhere"], "run preset not found: nowhere"),
    (lambda d: None, ["synthetic://", "--model", "{d}/none.safetensors"], "model not found"),
    (lambda d: None, ["synthetic://", "--engine", "warp"], "unknown engine 'warp'"),
    (lambda d: None, ["synthetic://", "--overlay", "glow"], "unknown overlay style 'glow'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_model_path, capsys, setup, args, message):
    setup(tmp_path)
    argv = ["run", *[a.format(d=tmp_path) for a in args], "--run-dir", str(tmp_path / "runs"), "--quiet",
            "--no-power", "--headless"]
    if "--model" not in argv:
        argv += ["--model", str(tiny_model_path)]
    if "--engine" not in argv:
        argv += ["--engine", "reference"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mbunet run: error:") and message in last and "Traceback" not in err


def test_truncated_file_writes_outputs_then_fails(tmp_path, tiny_model_path, videos, capsys):
    cut = tmp_path / "cut.avi"
    cut.write_bytes((videos / "vtest.avi").read_bytes()[:700_000])
    rc = cli(["run", str(cut), "null://", "--model", str(tiny_model_path), "--engine", "reference", "--quiet",
              "--no-power", "--headless", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "truncated" in err and "Traceback" not in err
    summary = json.loads(next((tmp_path / "r").glob("*/summary.json")).read_text())
    assert summary["frames"] > 0 and "truncated" in summary["error"]


def test_subprocess_sigterm_finishes_outputs(tmp_path, tiny_model_path):
    """SIGTERM mid-run: exit 0, the MKV is closed and playable, the summary is written."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "mbunet.app.cli", "run", "synthetic://?frames=0&width=160&height=120",
                             str(tmp_path / "o.mkv"), "--model", str(tiny_model_path), "--engine", "reference",
                             "--headless", "--quiet", "--no-power", "--run-dir", str(tmp_path / "r")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not list((tmp_path / "r").glob("*/telemetry.jsonl")) or \
            not next((tmp_path / "r").glob("*/telemetry.jsonl")).read_text().count("\n") >= 5:
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(next((tmp_path / "r").glob("*/summary.json")).read_text())
    assert summary["stopped_early"] and summary["frames"] >= 5
    src = open_source(str(tmp_path / "o.mkv"))
    n = 0
    while src.read().status is Status.OK:
        n += 1
    assert n == summary["frames"]


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "mbunet.app.cli", "run", str(tmp_path / "nope.mp4")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"mbunet run: error: {tmp_path / 'nope.mp4'}: no such file"
    assert "Traceback" not in proc.stderr

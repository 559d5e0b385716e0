"""Several sources in one run: one engine batching every stream, per-stream outputs and telemetry, and a live
stream that drops and comes back while two files go on (a loopback HTTP stream served by ffmpeg)."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from mbunet.config import RunConfig, SourceConfig, TelemetryConfig
from mbunet.errors import ConfigError
from mbunet.multistream import stream_names, stream_outputs
from mbunet.session import run

from conftest import SAMPLE_CLIP, count_frames
from test_streams import free_port, http_server, stop


def test_stream_names_and_outputs():
    names = stream_names(("front=rtsp://cam/a", "/data/left.mp4", "/other/left.mp4", "videotestsrc ! appsink"))
    assert list(names) == ["front", "left", "left-2", "stream3"] and names["front"] == "rtsp://cam/a"
    assert stream_outputs(("o-{stream}.mkv", "rtp://gs:500{index}"), "left", 1) == ("o-left.mkv", "rtp://gs:5001")
    with pytest.raises(ConfigError, match="each output must name its stream"):
        stream_outputs(("out.mkv",), "left", 0)


def test_two_files_write_two_complete_overlays(tmp_path, tiny_model_path, capsys):
    """The issue's check: `mbunet run --source A --source B` writes two complete overlays."""
    from mbunet.app.cli import main as cli

    rc = cli(["run", "--source", str(SAMPLE_CLIP), "--source", f"b={SAMPLE_CLIP}", "--model", str(tiny_model_path),
              "--engine", "reference", "--headless", "--quiet", "--no-power", "--run-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "bikes-street: 100 frames" in out and "b: 100 frames" in out
    run_dir = next(tmp_path.glob("*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["batch"] == 2 and summary["frames"] == 200 and set(summary["streams"]) == {"bikes-street", "b"}
    for name in ("bikes-street", "b"):
        assert count_frames(run_dir / name / "overlay.mkv") == 100
        records = [json.loads(line) for line in (run_dir / name / "telemetry.jsonl").read_text().splitlines()]
        assert len(records) == 100 and {r["stream"] for r in records} == {name}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (apt-get install -y ffmpeg)")
def test_a_live_stream_that_drops_does_not_stall_the_files(tmp_path, tiny_model_path):
    port = free_port()
    server = http_server(port)
    cfg = RunConfig(source=SourceConfig(max_frames=100, rate=25.0, open_timeout_s=3.0, read_timeout_s=1.0,
                                        backoff_s=0.2, backoff_max_s=0.5, give_up_s=20.0),
                    sources=(f"a={SAMPLE_CLIP}", f"b={SAMPLE_CLIP}", f"live=http://127.0.0.1:{port}/live.ts"),
                    model=str(tiny_model_path), engine="reference", headless=True, run_dir=str(tmp_path),
                    telemetry=TelemetryConfig(power=False))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run(cfg, progress=False)))
    runner.start()
    try:
        live_jsonl = None
        deadline = time.time() + 30
        while time.time() < deadline and (live_jsonl is None or live_jsonl.read_text().count("\n") < 10):
            live_jsonl = next(tmp_path.glob("*/live/telemetry.jsonl"), None)
            time.sleep(0.05)
        stop(server)
        down = (time.time(), time.time() + 1.5)
        time.sleep(1.5)
        server = http_server(port)
        runner.join(60)
    finally:
        stop(server)
    assert not runner.is_alive() and result, "the run did not finish"
    streams = result["streams"]
    assert streams["live"]["reconnects"] >= 1 and streams["live"]["frames"] + streams["live"]["drops"] == 100
    run_dir = next(tmp_path.glob("*"))
    for name in ("a", "b"):
        assert streams[name]["frames"] == 100 and count_frames(run_dir / name / "overlay.mkv") == 100
        times = [json.loads(line)["t"] for line in (run_dir / name / "telemetry.jsonl").read_text().splitlines()]
        assert any(down[0] + 0.3 < t < down[1] for t in times), f"{name} wrote nothing while the live stream was down"

"""Network sources against real servers on loopback: HTTP (ffmpeg -listen), UDP and RTP (ffmpeg pushes MPEG-TS),
RTSP (rtsp-server-perl relaying an ffmpeg push), and a stream that drops and comes back.

Needs `apt-get install -y ffmpeg rtsp-server-perl`; each test skips with the reason when a tool is missing.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from mbunet.config import RunConfig, SourceConfig, TelemetryConfig
from mbunet.session import run
from mbunet.sources import SourceOptions, Status, open_source

from conftest import SAMPLE_CLIP

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="ffmpeg not installed (apt-get install -y ffmpeg)")
OPTIONS = SourceOptions(open_timeout_s=8.0, read_timeout_s=2.0)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ffmpeg(*out_args: str) -> subprocess.Popen:
    """Play the sample clip in real time, looped, MPEG-4 video, to the given output."""
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                             "-i", str(SAMPLE_CLIP), "-an", "-c:v", "mpeg4", "-q:v", "5", *out_args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_server(port: int) -> subprocess.Popen:
    """ffmpeg serving one HTTP client; restarted when it could not bind yet (the port was just released)."""
    for _ in range(5):
        proc = ffmpeg("-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts")
        if _wait_listening(port, proc):
            return proc
        stop(proc)
        time.sleep(0.5)
    raise RuntimeError(f"ffmpeg could not listen on port {port}")


def _wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 5.0) -> bool:
    """Wait for a TCP listener without connecting (ffmpeg -listen 1 serves exactly one connection)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (proc is None or proc.poll() is None):
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        if any(r[1].endswith(f":{port:04X}") and r[3] == "0A" for r in rows):  # 0A = LISTEN
            return True
        time.sleep(0.05)
    return False


def read_frames(source, n: int, timeout: float = 20.0) -> int:
    got, deadline = 0, time.time() + timeout
    while got < n and time.time() < deadline:
        cap = source.read()
        got += cap.status is Status.OK
    return got


def test_http_stream():
    port = free_port()
    server = http_server(port)
    try:
        src = open_source(f"http://127.0.0.1:{port}/live.ts", OPTIONS, reconnect=False)
        assert src.live and read_frames(src, 10) == 10
        src.close()
    finally:
        stop(server)


@pytest.mark.parametrize("muxer, scheme", [("mpegts", "udp"), ("rtp_mpegts", "rtp")])
def test_udp_and_rtp_streams(muxer, scheme):
    port = free_port(socket.SOCK_DGRAM)
    pusher = ffmpeg("-f", muxer, f"{scheme}://127.0.0.1:{port}" + ("?pkt_size=1316" if scheme == "udp" else ""))
    try:
        src = open_source(f"{scheme}://127.0.0.1:{port}", OPTIONS, reconnect=False)
        frame = None
        while frame is None:
            cap = src.read()
            frame = cap.image if cap.status is Status.OK else None
        assert frame.shape == (272, 640, 3) and read_frames(src, 10) == 10
        src.close()
    finally:
        stop(pusher)


def test_rtsp_stream():
    if shutil.which("rtsp-server-perl") is None:
        pytest.skip("no RTSP server (apt-get install -y rtsp-server-perl); ffmpeg cannot serve RTSP to a player")
    client, source_port, rtp = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    server = subprocess.Popen(["rtsp-server-perl", "-c", str(client), "-s", str(source_port),
                               "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                               "--rtp_start_port", str(rtp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pusher = None
    try:
        assert _wait_listening(source_port, server), "rtsp-server-perl did not start"
        pusher = ffmpeg("-f", "rtsp", f"rtsp://127.0.0.1:{source_port}/cam")
        time.sleep(1.5)  # the ANNOUNCE must reach the server before a player asks for the stream
        # this server offers RTP over UDP only (OpenCV's default for RTSP is TCP)
        src = open_source(f"rtsp://127.0.0.1:{client}/cam",
                          SourceOptions(open_timeout_s=8.0, read_timeout_s=2.0, rtsp_transport="udp"), reconnect=False)
        assert read_frames(src, 10) == 10
        src.close()
    finally:
        for proc in (pusher, server):
            if proc is not None:
                stop(proc)


def test_stream_that_drops_and_comes_back(tmp_path, tiny_model_path):
    """The whole pipeline on an HTTP stream whose server dies for ~1 s: the run reconnects and keeps going."""
    port = free_port()
    server = http_server(port)
    cfg = RunConfig(source=SourceConfig(uri=f"http://127.0.0.1:{port}/live.ts", max_frames=40, open_timeout_s=3.0,
                                        read_timeout_s=1.0, backoff_s=0.2, backoff_max_s=0.5, give_up_s=20.0),
                    model=str(tiny_model_path), engine="reference", outputs=(str(tmp_path / "o.mkv"),),
                    headless=True, run_dir=str(tmp_path / "r"), telemetry=TelemetryConfig(power=False))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run(cfg, progress=False)))
    runner.start()
    try:
        jsonl = None
        deadline = time.time() + 30
        while time.time() < deadline and (jsonl is None or jsonl.read_text().count("\n") < 10):
            jsonl = next((tmp_path / "r").glob("*/telemetry.jsonl"), None)
            time.sleep(0.1)
        stop(server)
        time.sleep(1.0)
        server = http_server(port)
        runner.join(60)
    finally:
        stop(server)
    assert not runner.is_alive() and result, "the run did not finish after the stream came back"
    assert result["frames"] + result["drops"] == 40 and result["frames"] > 20 and result["reconnects"] >= 1
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records[-1]["reconnects"] >= 1


def test_unreachable_stream_is_one_error(capsys, tiny_model_path, tmp_path):
    from mbunet.app.cli import main as cli

    rc = cli(["run", f"http://127.0.0.1:{free_port()}/none.ts", "--open-timeout", "2", "--no-reconnect", "--model",
              str(tiny_model_path), "--headless", "--quiet", "--no-power", "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    # refused at once: the message says so, not that it waited the 2 s timeout
    assert rc == 2 and "cannot open (failed after 0." in err.strip().splitlines()[-1] and "Traceback" not in err

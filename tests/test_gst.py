"""GStreamer through PyGObject with real components on loopback: videotestsrc and file pipelines, the rtp:// output
decoded by a separate ffmpeg receiver, the rtsp:// server played by ffmpeg and read back by mbunet's own RTSP source.

Needs `pip install 'mbunet[gst]'` and Debian's gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad,ugly}, gstreamer1.0-libav and ffmpeg (.ci/run installs
them). A test whose component is missing skips with the reason; with MBUNET_REQUIRE_GST=1 (CI) it fails instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from mbunet.config import RunConfig, SourceConfig, TelemetryConfig
from mbunet.errors import SinkError, SourceError
from mbunet.gst import pipelines, runtime
from mbunet.gst.choose import choose
from mbunet.session import run
from mbunet.sinks import open_sink
from mbunet.sources import Reconnecting, SourceOptions, Status, gstreamer_available, open_source
from mbunet.uri import parse_uri

from conftest import SAMPLE_CLIP
from test_streams import _wait_listening, free_port

SOFTWARE = ("appsink", "appsrc", "videoconvert", "decodebin", "avdec_h264", "x264enc", "h264parse", "rtph264pay",
            "udpsink", "rtspsrc")


def need(*namespaces: str, ffmpeg: bool = False) -> None:
    """Skip (fail in CI) unless PyGObject, the typelibs, the software plugins and, when asked, ffmpeg are here."""
    why = runtime.problem(*namespaces) or runtime.missing(SOFTWARE)
    if why is None and ffmpeg and shutil.which("ffmpeg") is None:
        why = "ffmpeg not installed (apt-get install -y ffmpeg)"
    if why and os.environ.get("MBUNET_REQUIRE_GST") == "1":
        pytest.fail(f"MBUNET_REQUIRE_GST=1 but {why}")
    if why:
        pytest.skip(why)


def read_all(source) -> list:
    frames = []
    while (cap := source.read()).status is not Status.EOS:
        if cap.status is Status.OK:
            frames.append(cap.image)
    return frames


def config(tmp_path, tiny_model_path, uri: str, outputs: tuple[str, ...], **source) -> RunConfig:
    return RunConfig(source=SourceConfig(uri=uri, **source), model=str(tiny_model_path), engine="reference",
                     outputs=outputs, headless=True, run_dir=str(tmp_path / "runs"),
                     telemetry=TelemetryConfig(power=False))


# --- pipeline descriptions: the Jetson variants, checked on any machine ---

def jetson(element: str) -> bool:
    return element.startswith("nv")


def test_jetson_pipelines_use_the_hardware():
    assert pipelines.csi("1", 1920, 1080, 60).startswith(
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=60/1 ! nvvidconv")
    assert "nvjpegdec" in pipelines.v4l2("0", 1280, 720, 30, "mjpeg", jetson)
    assert "device=\"/dev/video0\" ! image/jpeg,width=1280,height=720,framerate=30/1 ! jpegdec" in \
        pipelines.v4l2("0", 1280, 720, 30, "mjpeg", lambda e: False)
    assert "decodebin ! nvvidconv" in pipelines.file("a b.mp4", jetson)
    rtsp = pipelines.rtsp("rtsp://cam/s", 150, "udp", jetson)
    assert "latency=150 protocols=udp" in rtsp and "drop=true max-buffers=1" in rtsp
    enc = pipelines.encoder(pipelines.Encoding("h265", 2_000_000), 25, jetson)
    assert "nvv4l2h265enc bitrate=2000000 iframeinterval=25" in enc and enc.endswith("h265parse config-interval=-1")
    assert "x264enc bitrate=4000 key-int-max=30" in pipelines.encoder(pipelines.Encoding(), 30, lambda e: False)


def test_user_pipeline_must_end_in_appsink():
    text = pipelines.user("videotestsrc ! appsink name=mine emit-signals=true", live=False)
    assert text.endswith("videoconvert ! video/x-raw,format=BGR ! appsink name=mine emit-signals=true "
                         "name=mbunet_sink sync=false drop=false max-buffers=4")
    with pytest.raises(ValueError, match="must end in appsink"):
        pipelines.user("videotestsrc ! fakesink", live=False)


def test_sdp_describes_payload_type_96():
    text = pipelines.sdp("10.0.0.2", 5004, "h264")
    assert "c=IN IP4 10.0.0.2" in text and "m=video 5004 RTP/AVP 96" in text and "a=rtpmap:96 H264/90000" in text


def test_auto_backend_follows_the_hardware(monkeypatch):
    need()
    clip = parse_uri(str(SAMPLE_CLIP))
    assert not choose(clip).gst and choose(clip, "gst").gst and choose(parse_uri("csi://0")).gst
    from mbunet.gst import choose as choose_module

    assert "not a Jetson" in choose(clip).reason  # a desktop never loads GStreamer for a file
    monkeypatch.setattr(choose_module, "on_jetson", lambda: True)
    monkeypatch.setattr(runtime, "have", lambda element: element == "nvv4l2decoder")  # a Jetson's decoder
    assert choose(clip).gst and "nvv4l2decoder" in choose(clip).reason
    assert not choose(clip, "opencv").gst
    with pytest.raises(SourceError, match="--input-backend gst reads"):
        choose(parse_uri("udp://127.0.0.1:5000"), "gst")


def test_without_pygobject_one_line_names_the_install(monkeypatch, tmp_path, tiny_model_path, capsys):
    from mbunet.app.cli import main as cli

    def absent(*namespaces):
        raise ImportError(f"PyGObject is not installed: {runtime.INSTALL_GI}")

    monkeypatch.setattr(runtime, "load", absent)
    if not gstreamer_available():
        with pytest.raises(SourceError, match=r"needs GStreamer, which this OpenCV lacks: .*mbunet\[gst\]"):
            open_source("videotestsrc ! appsink")
    with pytest.raises(SinkError, match=r"rtp://127.0.0.1:5: PyGObject is not installed: pip install 'mbunet\[gst\]'"):
        open_sink("rtp://127.0.0.1:5", run_dir=tmp_path)
    rc = cli(["run", str(SAMPLE_CLIP), "rtsp://@:8554/live", "--model", str(tiny_model_path), "--headless",
              "--quiet", "--no-power", "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "mbunet[gst]" in err.strip().splitlines()[-1]


# --- sources through gi ---

def test_videotestsrc_through_pygobject():
    need()
    src = open_source("videotestsrc num-buffers=20 ! video/x-raw,width=322,height=240 ! appsink")
    frames = read_all(src)  # 322 * 3 bytes a row is padded to 968: the stride is taken off
    src.close()
    assert len(frames) == 20 and frames[0].shape == (240, 322, 3) and frames[0].flags.writeable
    assert not src.live and src.fps == 30.0
    live = open_source("videotestsrc is-live=true num-buffers=5 ! appsink")
    assert isinstance(live, Reconnecting) and "drop=true max-buffers=1" in live.inner.description
    live.close()


def test_file_through_pygobject_matches_opencv():
    need()
    src = open_source(str(SAMPLE_CLIP), SourceOptions(backend="gst"))
    frames = read_all(src)
    src.close()
    assert "through GStreamer" in src.describe() and src.fps == 25.0
    assert len(frames) == 100 and frames[0].shape == (272, 640, 3) and src.problem is None


def test_broken_pipelines_are_one_line():
    need()
    with pytest.raises(SourceError, match="no GStreamer element nosuchelement here"):
        open_source("nosuchelement ! appsink")
    with pytest.raises(SourceError, match="must end in appsink"):
        open_source("videotestsrc ! fakesink")
    with pytest.raises(SourceError, match="no such file"):
        open_source("missing.mp4", SourceOptions(backend="gst"))


def test_run_writes_a_user_pipeline_through_pygobject(tmp_path, tiny_model_path, capsys):
    """The issue's check: 60 frames of a pipeline ending in appsink, on this OpenCV (PyPI's: no GStreamer)."""
    need()
    from mbunet.app.cli import main as cli

    out = tmp_path / "out.mkv"
    rc = cli(["run", "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240 ! appsink", str(out),
              "--model", str(tiny_model_path), "--engine", "reference", "--headless", "--quiet", "--no-power",
              "--run-dir", str(tmp_path / "runs")])
    assert rc == 0, capsys.readouterr().err
    check = open_source(str(out))
    assert len(read_all(check)) == 60


# --- network outputs, received by separate processes ---

def test_rtp_output_is_decoded_by_ffmpeg(tmp_path, tiny_model_path):
    """150 frames over RTP to a separate ffmpeg that knows only the SDP; >= 95% decoded, and the run's own SDP is
    the one the receiver used."""
    need(ffmpeg=True)
    port = free_port(__import__("socket").SOCK_DGRAM)
    sdp = tmp_path / "receiver.sdp"
    sdp.write_text(pipelines.sdp("127.0.0.1", port, "h264"))
    receiver = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-protocol_whitelist",
                                 "file,udp,rtp", "-i", str(sdp), "-fps_mode", "passthrough", "-f", "framemd5", "-"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # ffmpeg binds the port after reading the SDP
        cfg = config(tmp_path, tiny_model_path, str(SAMPLE_CLIP), (f"rtp://127.0.0.1:{port}",
                                                                  str(tmp_path / "o.mkv")),
                     max_frames=150, loop=True, rate=30.0)
        summary = run(cfg, progress=False)
        time.sleep(1.0)
    finally:
        receiver.send_signal(signal.SIGTERM)  # ffmpeg finishes its output on SIGTERM
        out, err = receiver.communicate(timeout=20)
    decoded = sum(1 for line in out.splitlines() if line and not line.startswith("#"))
    assert summary["frames"] == 150 and decoded >= 0.95 * 150, err[-500:]
    run_sdp = next((tmp_path / "runs").glob(f"*/rtp-{port}.sdp"))
    assert run_sdp.read_text() == sdp.read_text()


def test_rtsp_output_is_played_by_ffmpeg_and_read_back(tmp_path, tiny_model_path):
    """The overlay served over RTSP while the same run records an MKV: ffmpeg plays it over TCP, and mbunet's own
    GStreamer RTSP source (200 ms jitter buffer) reads it."""
    need("GstRtspServer", ffmpeg=True)
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/overlay"
    cfg = config(tmp_path, tiny_model_path, str(SAMPLE_CLIP), (f"rtsp://@:{port}/overlay", str(tmp_path / "o.mkv")),
                 max_frames=240, loop=True, rate=30.0)
    result: dict = {}
    server = threading.Thread(target=lambda: result.update(run(cfg, progress=False)))
    server.start()
    try:
        assert _wait_listening(port, timeout=20), "the RTSP server did not start"
        played = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
                                 "-frames:v", "30", "-f", "framemd5", "-"], capture_output=True, text=True, timeout=30)
        src = open_source(url, SourceOptions(backend="gst", open_timeout_s=10, rtsp_latency_ms=200), reconnect=False)
        got = 0
        while got < 10 and (cap := src.read()).status is not Status.ERROR:
            got += cap.status is Status.OK
        src.close()
    finally:
        server.join(30)
    frames = sum(1 for line in played.stdout.splitlines() if line and not line.startswith("#"))
    assert played.returncode == 0 and frames == 30, played.stderr[-500:]
    assert got == 10 and cap.image.shape == (272, 640, 3)
    assert result["frames"] == 240 and len(read_all(open_source(str(tmp_path / "o.mkv")))) == 240


def test_network_output_errors_are_one_line(tmp_path):
    need("GstRtspServer")
    with pytest.raises(SinkError, match="expected rtp://HOST:PORT"):
        open_sink("rtp://5004", run_dir=tmp_path)
    with pytest.raises(SinkError, match="needs a port number"):
        open_sink("rtp://127.0.0.1:99999", run_dir=tmp_path)
    with pytest.raises(SinkError, match="output codec must be one of h264, h265"):
        open_sink("rtp://127.0.0.1:5004?codec=vp8", run_dir=tmp_path)
    port = free_port()
    first = open_sink(f"rtsp://@:{port}/a")
    try:
        with pytest.raises(SinkError, match=f"cannot listen on port {port}"):
            open_sink(f"rtsp://@:{port}/b")
    finally:
        first.close()

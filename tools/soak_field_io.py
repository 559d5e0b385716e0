"""Soak of the field I/O path: a loopback RTSP camera that drops every few minutes, read through GStreamer into the
engine, out to an RTP receiver (a separate ffmpeg decoding from the SDP) and an MKV. Reports the run's RSS at start
and end, reconnects, drops and frames out; docs/field-io.md records a result.

    python tools/soak_field_io.py --minutes 30 --drop-every 180 --down 5 --out /tmp/soak

Needs `pip install 'mbunet[gst]'`, the GStreamer plugins, the RTSP server typelib and ffmpeg (docs/field-io.md).
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CLIP = Path(__file__).resolve().parent.parent / "samples" / "bikes-street.mp4"


def serve_camera(port: int, clip: str) -> None:
    """The camera: the clip looped at 25 fps, served by mbunet's own RTSP output at rtsp://127.0.0.1:PORT/cam."""
    import cv2

    from mbunet.sinks import open_sink

    sink = open_sink(f"rtsp://127.0.0.1:{port}/cam", 25)
    cap, index, next_t = cv2.VideoCapture(clip), 0, time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            cap = cv2.VideoCapture(clip)
            continue
        sink.write(index, frame, None)
        index += 1
        next_t += 1 / 25
        time.sleep(max(0.0, next_t - time.perf_counter()))


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def end(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--drop-every", type=float, default=180.0, metavar="S", help="the camera goes down every S s")
    p.add_argument("--down", type=float, default=5.0, metavar="S", help="for S s each time")
    p.add_argument("--warmup", type=float, default=30.0, metavar="S", help="RSS 'start' is taken after S s")
    p.add_argument("--model", default="random:8:64x64", help="model of the run (default a small random one)")
    p.add_argument("--out", default="soak-field-io", help="folder for the run, the receiver's count and the report")
    p.add_argument("--serve-camera", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_camera:
        serve_camera(args.serve_camera, str(CLIP))
        return 0
    from mbunet.gst.pipelines import sdp

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cam_port, rtp_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    (out / "receiver.sdp").write_text(sdp("127.0.0.1", rtp_port, "h264"))

    def camera() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--serve-camera", str(cam_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    received = {"frames": 0}
    receiver = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-protocol_whitelist",
                                 "file,udp,rtp", "-i", str(out / "receiver.sdp"), "-fps_mode", "passthrough",
                                 "-f", "framemd5", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def count() -> None:
        for line in receiver.stdout:
            received["frames"] += bool(line.strip()) and not line.startswith("#")

    threading.Thread(target=count, daemon=True).start()
    cam = camera()
    time.sleep(2)
    run = subprocess.Popen(["mbunet", "run", f"rtsp://127.0.0.1:{cam_port}/cam", f"rtp://127.0.0.1:{rtp_port}",
                            str(out / "overlay.mkv"), "--input-backend", "gst", "--model", args.model, "--headless",
                            "--no-power", "--quiet", "--run-dir", str(out / "runs"), "--open-timeout", "5",
                            "--read-timeout", "2"], stdout=subprocess.PIPE, stderr=open(out / "run.log", "w"),
                           text=True)
    t0, drops_made, rss = time.time(), 0, []
    next_drop = t0 + args.drop_every
    try:
        while time.time() - t0 < args.minutes * 60 and run.poll() is None:
            time.sleep(5)
            rss.append((round(time.time() - t0, 1), rss_mib(run.pid)))
            if time.time() >= next_drop:
                end(cam)
                time.sleep(args.down)
                cam, drops_made, next_drop = camera(), drops_made + 1, time.time() + args.drop_every
    finally:
        end(run, signal.SIGINT, 60)
        end(cam)
        time.sleep(1)
        end(receiver)
    summary = json.loads(next((out / "runs").glob("*/summary.json")).read_text())
    start = next((r for t, r in rss if t >= args.warmup and r), rss[0][1] if rss else None)
    last = next((r for _, r in reversed(rss) if r), None)
    report = {"minutes": round((time.time() - t0) / 60, 2), "camera_drops": drops_made,
              "reconnects": summary["reconnects"], "drops": summary["drops"], "frames_out": summary["frames"],
              "rtp_frames_decoded": received["frames"], "rss_start_mib": start, "rss_end_mib": last,
              "rss_growth_pct": round(100 * (last - start) / start, 2) if start and last else None,
              "run_exit": run.returncode, "rss_samples": rss}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_samples"}))
    return 0 if run.returncode == 0 and report["rss_growth_pct"] is not None and report["rss_growth_pct"] < 5 else 1


if __name__ == "__main__":
    sys.exit(main())

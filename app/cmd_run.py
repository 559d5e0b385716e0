"""`mbunet run [SOURCE] [OUTPUT ...]`: segment a video source and write overlays, masks and telemetry."""
from __future__ import annotations

import argparse

HELP = "segment a camera, file, image folder or stream and write overlay video, masks and telemetry"

EPILOG = """\
sources: 0 (camera index), /dev/video0, v4l2://, csi://0, clip.mp4, file://, a folder or glob of images,
  rtsp://, udp://, rtp://, http(s)://, a GStreamer pipeline ending in appsink (PyGObject), synthetic://
outputs: display://0, out.mkv|.avi|.mp4|.mov (?codec=MJPG&fps=25), frames/%06d.jpg, images://DIR?ext=png,
  masks://DIR?format=png|npy, log.jsonl, null://, rtp://HOST:PORT (+ run/rtp-PORT.sdp), rtsp://@:PORT/NAME
  (several at once)
with no arguments: the bundled sample clip -> runs/<timestamp>/overlay.mkv + telemetry.jsonl + summary.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("source", nargs="?", help="input URI (default: the preset's, else the bundled sample clip)")
    p.add_argument("outputs", nargs="*", metavar="OUTPUT", help="output URIs (default: runs/<ts>/overlay.mkv)")
    p.add_argument("--config", help="preset name (desktop, jetson-orin, drone) or YAML path; flags override it")
    p.add_argument("--model", help="model path or shipped name; random[:WIDTH[:WxH]] = untrained smoke test")
    p.add_argument("--engine", help="engine name or auto (default auto)")
    g = p.add_argument_group("source")
    g.add_argument("--source", action="append", metavar="[NAME=]URI", dest="sources",
                   help="a source; repeat for several streams in one run (one engine batches them; each writes "
                        "<run>/<name>/overlay.mkv). With --source, every positional argument is an output")
    g.add_argument("--input-width", type=int, metavar="PX", dest="source.width",
                   help="capture width (cameras) / resize")
    g.add_argument("--input-height", type=int, metavar="PX", dest="source.height",
                   help="capture height (cameras) / resize")
    g.add_argument("--input-rate", type=float, metavar="FPS", dest="source.rate",
                   help="frames per second to take from the source")
    g.add_argument("--loop", action="store_const", const=True, dest="source.loop", help="restart files at the end")
    g.add_argument("--max-frames", type=int, metavar="N", dest="source.max_frames",
                   help="stop after N captured frames (frames a live source drops count too)")
    g.add_argument("--open-timeout", type=float, metavar="S", dest="source.open_timeout_s",
                   help="seconds to open a stream")
    g.add_argument("--read-timeout", type=float, metavar="S", dest="source.read_timeout_s",
                   help="seconds to wait for a frame")
    g.add_argument("--rtsp-transport", choices=("tcp", "udp"), dest="source.rtsp_transport",
                   help="RTSP lower transport (default tcp)")
    g.add_argument("--rtsp-latency", type=int, metavar="MS", dest="source.rtsp_latency_ms",
                   help="RTSP jitter buffer when GStreamer reads the stream (default 200)")
    g.add_argument("--input-backend", choices=("auto", "opencv", "gst"), dest="source.backend",
                   help="who reads the source: auto (default; `mbunet doctor` says which), OpenCV or GStreamer")
    g.add_argument("--no-reconnect", action="store_const", const=False, dest="source.reconnect",
                   help="end the run when a live source is lost")
    g.add_argument("--give-up", type=float, metavar="S", dest="source.give_up_s",
                   help="end the run when a live source stays lost S seconds (0 = never)")
    g = p.add_argument_group("processing")
    g.add_argument("--fit", choices=("letterbox", "resize"), help="fit frames to the model input (default letterbox)")
    g.add_argument("--batch", type=int, metavar="N",
                   help="frames per engine call for files (default 1: lowest latency); several sources: frames of "
                        "all streams per call (default one per stream)")
    g.add_argument("--batch-timeout", type=float, metavar="MS", dest="batch_timeout_ms",
                   help="several sources: wait at most MS for a batch to fill (default 20)")
    g.add_argument("--queue-size", type=int, metavar="N", dest="queue_size", help="frames buffered between stages")
    g.add_argument("--overlay", dest="overlay.style", metavar="STYLE",
                   help="overlay, mask, side-by-side, blur, replace or contours (default overlay)")
    g.add_argument("--alpha", type=float, metavar="A", dest="overlay.alpha", help="overlay opacity 0..1")
    g = p.add_argument_group("run")
    g.add_argument("--headless", action="store_const", const=True, help="never open a window (drone, servers)")
    g.add_argument("--output-codec", choices=("h264", "h265"), dest="output_codec",
                   help="codec of rtp:// and rtsp:// outputs (default h264)")
    g.add_argument("--bitrate", type=int, metavar="BPS", help="bits/s of rtp:// and rtsp:// outputs (default 4000000)")
    g.add_argument("--run-dir", dest="run_dir", metavar="DIR", help="folder for runs/<timestamp>/ (default runs)")
    g.add_argument("--no-jsonl", action="store_const", const=False, dest="telemetry.jsonl",
                   help="do not write telemetry.jsonl")
    g.add_argument("--no-power", action="store_const", const=False, dest="telemetry.power",
                   help="do not read power meters")
    g.add_argument("--quiet", action="store_true", help="no progress bar or status line")


def main(args: argparse.Namespace) -> int:
    from mbunet.config import RunConfig, load_config, override
    from mbunet.session import run

    config = load_config(args.config) if args.config else RunConfig()
    top_level = ("model", "engine", "fit", "batch", "queue_size", "headless", "run_dir", "output_codec", "bitrate",
                 "batch_timeout_ms")
    flags = {k: v for k, v in vars(args).items() if "." in k or k in top_level}
    positional = [args.source, *args.outputs] if args.source is not None else []
    if args.sources:  # SOURCE is then the first output
        flags["sources"], outputs = tuple(args.sources), positional
    else:
        flags["source.uri"], outputs = args.source, positional[1:]
    flags["outputs"] = tuple(outputs) or None
    config = override(config, flags)
    summary = run(config, progress=not args.quiet)
    print(_summary_text(summary))
    return 0


def _summary_text(s: dict) -> str:
    if "streams" in s:  # several sources: each stream's figures and outputs, then the one summary file
        lines = [f"{name}: " + "\n".join(_stats_lines(st)) + f"\n  outputs: {', '.join(st['outputs'])}"
                 for name, st in s["streams"].items()]
        return "\n".join([*lines, f"summary: {s['run_dir']}/summary.json"])
    return "\n".join([*_stats_lines(s), f"outputs: {', '.join(s['outputs'])}; summary: {s['run_dir']}/summary.json"])


def _stats_lines(s: dict) -> list[str]:
    stages = s["stages_ms"]
    lines = [f"{s['frames']} frames in {s['wall_s']:.2f} s = {s['fps']:.2f} FPS "
             f"(drops {s['drops']}, corrupt {s['corrupt']}, reconnects {s['reconnects']})"]
    for name, st in stages.items():
        if st:
            lines.append(f"  {name:<10} p50 {st['p50']:8.2f} ms   p95 {st['p95']:8.2f} ms")
    if s["e2e_ms"]:
        lines.append(f"  {'e2e':<10} p50 {s['e2e_ms']['p50']:8.2f} ms   p95 {s['e2e_ms']['p95']:8.2f} ms")
    power = s["power"]
    if power and power.get("joules") is not None:
        lines.append(f"  power {power['avg_watts']} W avg, {power['j_per_frame']} J/frame ({power['source']})")
    return lines

"""`mbunet batch INPUTS... --out DIR`: segment a video archive on Ray workers, resumably, with a manifest."""
from __future__ import annotations

import argparse
import sys

HELP = "segment a folder, glob or list of videos on Ray workers (local or a cluster) into per-video outputs"

EPILOG = """\
inputs: video files, folders (searched recursively), globs ('footage/**/*.MP4'), or a .txt/.csv list of paths
outputs per video: OUT/<name>/masks/%06d.png (or .npy), overlay.mkv, frames.jsonl; OUT/manifest.jsonl (or
  .parquet) has a row per video: video, status (ok, skipped, failed), frames, fps, engine, joules, error, ...
a rerun with the same OUT skips every video already complete (same content, model and settings)
without --address: an embedded Ray on this machine; --address auto (on a cluster node) or ray://HEAD:10001
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, folder, glob or .txt/.csv list")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (on storage every worker sees)")
    p.add_argument("--model", default="", help="model path or shipped name (default mbunet-w32); "
                                               "random[:WIDTH[:WxH]] = untrained smoke test")
    p.add_argument("--engine", default="auto", help="engine name or auto (default auto, chosen on each worker)")
    p.add_argument("--outputs", default="masks,overlay,jsonl",
                   help="comma-separated: masks, overlay, jsonl (default all three)")
    p.add_argument("--mask-format", choices=("png", "npy"), default="png", help="mask files (default png)")
    p.add_argument("--overlay", default="overlay", metavar="STYLE",
                   help="overlay video style: overlay, mask, side-by-side, blur, replace, contours")
    p.add_argument("--fit", choices=("letterbox", "resize"), default="letterbox",
                   help="fit frames to the model input (default letterbox)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="frames per engine call (default 8)")
    p.add_argument("--chunk-frames", type=int, default=3000, metavar="N",
                   help="split longer videos into chunks of N frames run in parallel (default 3000; 0 = never)")
    p.add_argument("--manifest", choices=("jsonl", "parquet"), default="jsonl",
                   help="manifest format (default jsonl; parquet needs pyarrow)")
    g = p.add_argument_group("Ray")
    g.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: embedded local)")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes (default: as many as the cluster's CPUs or GPUs allow)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="CPUs reserved by each worker (default 1)")
    g.add_argument("--workers-per-gpu", type=int, default=1, metavar="K",
                   help="workers sharing one GPU, to feed it from K decoders (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-video lines")


def main(args: argparse.Namespace) -> int:
    from mbunet.batch import BatchOptions, ClusterOptions, run_batch
    from mbunet.errors import MbunetError

    if args.workers < 0 or args.cpus_per_worker <= 0 or args.workers_per_gpu < 1:
        raise MbunetError("--workers must be >= 0, --cpus-per-worker > 0 and --workers-per-gpu >= 1")
    options = BatchOptions(tuple(o.strip() for o in args.outputs.split(",") if o.strip()), args.mask_format,
                           args.overlay, args.fit, args.batch, args.chunk_frames)
    cluster = ClusterOptions(args.address, args.workers, args.cpus_per_worker, args.workers_per_gpu)
    result = run_batch(args.inputs, args.out, args.model, args.engine, options, cluster, args.manifest,
                       progress=not args.quiet)
    print(summary_text(result))
    failed = result.count("failed")
    if result.interrupted:
        print(f"mbunet batch: interrupted: {result.count('ok') + result.count('skipped')} of {len(result.rows)} "
              f"videos complete; rerun the same command to resume", file=sys.stderr)
        return 130
    if failed:
        first = next(r for r in result.rows if r["status"] == "failed")
        raise MbunetError(f"{failed} of {len(result.rows)} videos failed (reasons in {result.manifest}); "
                          f"first: {first['error']}")
    return 0


def summary_text(result) -> str:
    ok = [r for r in result.rows if r["status"] == "ok"]
    frames = sum(r["frames"] for r in ok)
    lines = [f"{len(result.rows)} videos: {len(ok)} ok, {result.count('skipped')} skipped (complete from an earlier "
             f"run), {result.count('failed')} failed"]
    if frames:
        decode = sum(r["decode_ms"] * r["frames"] for r in ok) / frames
        share = sum(r["decode_share"] * r["frames"] for r in ok) / frames
        lines.append(f"{frames} frames in {result.wall_s:.1f} s = {frames / result.wall_s:.1f} FPS on "
                     f"{result.workers} workers ({result.engine}); decode {decode:.2f} ms/frame, {share:.0%} of "
                     f"pipeline time; Ray and worker start-up {result.startup_s:.1f} s")
    lines.append(f"manifest: {result.manifest}")
    return "\n".join(lines)

"""`mbunet bench`: speed, agreement with the reference and energy of every engine on one model and input."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELP = "benchmark engines on the same model and input: images/s, latency percentiles, agreement, W and J/image"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME|PATH", help="model file or shipped name (default: the shipped model, "
                   "else random bits of the default U-Net)")
    p.add_argument("--engines", metavar="A,B,...", help="engines to run, in order (default: every registered "
                   "engine; those that cannot run here are listed with the reason)")
    p.add_argument("--size", metavar="WxH", help="input size; differing from the model's draws a random model of "
                   "the same architecture (its binary and masked layer kinds) at this size")
    p.add_argument("--width", type=int, metavar="C", help="channels of the first level; differing from the "
                   "model's draws a random model as --size does (the paper's network: --size 512x512 --width 64)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations, at least (default 20)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="go on past --iters until the timed window "
                   "is this long, so the power source sees enough of it (default 1)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3; the first also gives "
                   "the masks compared with the reference, so at least one always runs)")
    p.add_argument("--input", metavar="URI", help="take the frames from a video/images source instead of "
                   "seeded random pixels")
    p.add_argument("--agree-with", metavar="ENGINE", default="reference", help="engine whose masks the "
                   "agreement column compares with (default reference, the numpy definition, about 2 minutes a "
                   "frame at 512x512 width 64; cpu is bit-exact with it by the conformance tests and far faster)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random frames and random model (default 0)")
    p.add_argument("--idle-seconds", type=float, default=2.0, help="idle power measured first (default 2)")
    p.add_argument("--background-load", type=int, default=0, metavar="N", help="run N busy processes (one core "
                   "each) beside the timed engines, stopped after, to measure an engine on shared cores "
                   "(default 0; the output names the load)")
    p.add_argument("--layers", action="store_true", help="also time each layer of the engines that run the network "
                   "step by step (cpu, cuda, cuda-graph, reference): where a frame's time goes, MAC/s per layer")
    p.add_argument("--json", action="store_true", help="print only the JSON list of rows")
    p.add_argument("--out", metavar="DIR", help="results folder (default runs/bench/<timestamp>/)")
    p.add_argument("--sysfs-root", metavar="DIR", help="sysfs tree for power (default $MBUNET_SYSFS_ROOT or /sys)")


def main(args: argparse.Namespace) -> int:
    from mbunet import bench
    from mbunet.engines.base import list_engines
    from mbunet.power import open_power_meter

    settings = bench.BenchSettings(args.batch, args.iters, args.warmup, args.idle_seconds, args.min_seconds,
                                   args.agree_with, args.background_load, args.layers)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else list_engines()
    bench.check_engine_names(engines + [args.agree_with])
    size = bench.parse_size(args.size) if args.size else None
    model = bench.load_bench_model(args.model, size, args.seed, args.width)
    shape = model.arch.input_size
    frames = (bench.video_frames(args.input, shape, args.batch) if args.input
              else bench.random_frames(shape, args.batch, args.seed))
    log = (lambda text: print(text, file=sys.stderr, flush=True))
    distinct = bench.repeat_period(frames)
    repeats = f", {distinct} distinct frames repeated to batch {args.batch}" if distinct < args.batch else ""
    log(f"model: {model.name} ({bench.size_text(shape)}); input: {args.input or f'random, seed {args.seed}'}"
        f"{repeats}")
    with open_power_meter(args.sysfs_root) as meter:
        rows, notes = bench.run_bench(model, frames, engines, settings, meter, progress=log)
    out = Path(args.out) if args.out else Path("runs", "bench", time.strftime("%Y%m%d-%H%M%S"))
    paths = bench.write_results(rows, out, f"{model.name}, {bench.size_text(shape)}, batch {args.batch}")
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(bench.format_table(rows))
        if args.layers:
            print(bench.format_layer_reports(rows))
    for note in notes:
        log(note)
    print(f"results: {', '.join(map(str, paths))}", file=sys.stderr if args.json else sys.stdout)
    return 0

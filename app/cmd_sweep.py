"""`mbunet sweep`: masking sweep, k = 0..12 cheapest layers masked; Dice-vs-FPS Pareto chart (paper Fig. 7)."""
from __future__ import annotations

import argparse

HELP = "train k = 0..12 masked layers (cost-rank order) briefly, time each with an engine, chart Dice vs FPS"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="YAML", help="training recipe (its masking is replaced)")
    p.add_argument("--ks", default="0-12", help="k values: '0-12', '0,4,8,12' (default 0-12)")
    p.add_argument("--steps", type=int, help="steps per k (default: the recipe's)")
    p.add_argument("--seeds", type=int, default=1, help="train each k with N seeds (train.seed, +1, ...) and "
                   "report the mean Dice and its spread (default 1; short runs differ by seed more than by k)")
    p.add_argument("--stamps", metavar="DIR", help="RGBA cut-outs, with train/ and val/ subfolders")
    p.add_argument("--backgrounds", metavar="DIR", help="background frames, with train/ and val/ subfolders")
    p.add_argument("--images", metavar="DIR", help="training images (instead of composites)")
    p.add_argument("--masks", metavar="DIR", help="training masks")
    p.add_argument("--engine", default="auto", help="engine timed for FPS (default auto)")
    p.add_argument("--fps-batch", type=int, default=1, help="images per timed call (default 1)")
    p.add_argument("--iters", type=int, default=10, help="timed calls per model (default 10)")
    p.add_argument("--device", default="auto", help="training device: auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--out", metavar="DIR", help="results folder (default runs/sweep/<recipe name>)")
    p.add_argument("--json", action="store_true", help="print only the JSON list of points")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_ks(text: str) -> list[int]:
    from mbunet.errors import ConfigError

    ks: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            ks.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError as e:
        raise ConfigError(f"--ks {text!r}: expected numbers and ranges such as '0-12' or '0,4,8'") from e
    if not ks or any(k < 0 or k > 12 for k in ks):
        raise ConfigError(f"--ks {text!r}: every k must be in 0..12")
    return sorted(set(ks))


def main(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import torch

    from mbunet.errors import ConfigError
    from mbunet.train.config import load_config, override
    from mbunet.train.data import select_data
    from mbunet.train.sweep import format_table, run_sweep, write_sweep
    from mbunet.train.trainer import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    ks = parse_ks(args.ks)
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: need at least 1")
    cfg = override(load_config(args.config), steps=args.steps)
    data = select_data(cfg, args.stamps, args.backgrounds, args.images, args.masks)
    out = Path(args.out) if args.out else Path("runs", "sweep", cfg.name)
    points = run_sweep(cfg, data, ks, pick_device(args.device), out, args.engine, args.fps_batch, args.iters,
                       progress=not args.no_progress, seeds=args.seeds)
    h, w = cfg.model.input_size
    per_k = f"{cfg.train.steps} steps per k" + (f" and seed, {args.seeds} seeds" if args.seeds > 1 else "")
    title = f"{cfg.name}: width {cfg.model.width}, {w}x{h}, {per_k}"
    paths = write_sweep(points, out, title)
    if args.json:
        print(json.dumps([p.to_json() for p in points], indent=2))
    else:
        print(format_table(points))
    print(f"results: {', '.join(map(str, paths))}", file=sys.stderr if args.json else sys.stdout)
    return 0

"""`mbunet cost`: cost-aware masking scores (paper Eq. 2) per configurable layer."""
from __future__ import annotations

import argparse
import json

from mbunet.app.args import parse_size
from mbunet.arch import Architecture, layer_costs

HELP = "per-layer ops, params, cost score and masking rank (paper Eq. 2, Table A.4)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=64, help="channels of the first level (paper: 64)")
    p.add_argument("--size", type=parse_size, default=(512, 512), metavar="WxH", help="input size (default 512x512)")
    p.add_argument("--w-op", type=float, default=0.5, help="weight of ops in the score; params get 1 - w_op")
    p.add_argument("--json", action="store_true", help="print only JSON")


def main(args: argparse.Namespace) -> int:
    from mbunet.errors import ConfigError

    w, h = args.size
    try:
        costs = layer_costs(Architecture(width=args.width, input_size=(h, w)), args.w_op)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    costs.sort(key=lambda c: c.rank)
    if args.json:
        print(json.dumps([{"layer": c.layer, "ops": c.ops, "params": c.params, "score": round(c.score, 6),
                           "rank": c.rank} for c in costs], indent=1))
        return 0
    print(f"U-Net width {args.width} at {w}x{h}, w_op={args.w_op}: mask the lowest ranks first")
    print(f"{'rank':>4}  {'layer':<8} {'GOPs':>9} {'params':>11} {'score':>7}")
    for c in costs:
        print(f"{c.rank:>4}  {c.layer:<8} {c.ops / 1e9:>9.2f} {c.params:>11,} {c.score:>7.3f}")
    return 0

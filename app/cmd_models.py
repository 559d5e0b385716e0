"""`mbunet models`: the shipped models and their card summaries."""
from __future__ import annotations

import argparse
import json

HELP = "list shipped models (weights/) with their card summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print only JSON")
    p.add_argument("--card", metavar="NAME|PATH", help="print the whole card of one model")


def main(args: argparse.Namespace) -> int:
    from mbunet.errors import ModelFileError
    from mbunet.modelfile import WEIGHTS_DIR, model_summary, read_card, resolve_model, shipped_names

    if args.card:
        print(json.dumps(read_card(resolve_model(args.card)), indent=1))
        return 0
    rows = [model_summary(resolve_model(name)) for name in shipped_names()]
    if not rows:  # an install without its weights is broken for `run` and `bench`: not a success
        raise ModelFileError(f"no shipped models in {WEIGHTS_DIR} (reinstall mbunet, or point MBUNET_WEIGHTS at a "
                             f"folder of .safetensors models)")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<16} {'kind':<7} {'input':>8} {'classes':>7} {'val Dice':>8}")
    for r in rows:
        dice = f"{r['val_dice']:.3f}" if r["val_dice"] is not None else "-"
        mark = "  (default)" if r["default"] else ""
        print(f"{r['name']:<16} {r['kind']:<7} {r['input_size']:>8} {r['classes']:>7} {dice:>8}{mark}")
    return 0

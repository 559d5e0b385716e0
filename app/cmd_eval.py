"""`mbunet eval`: foreground Dice / IoU / F1 of a model (any engine) on an image + mask folder."""
from __future__ import annotations

import argparse

HELP = "score a model on images/ + masks/ folders: Dice, IoU (means over images) and pixel F1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="images (jpg/png/bmp)")
    p.add_argument("--masks", required=True, metavar="DIR", help="masks: PNG with the image's stem and size, "
                   "0/255 or class indices")
    p.add_argument("--model", metavar="NAME|PATH", help="model file or shipped name (default: the default model)")
    p.add_argument("--engine", default="auto", help="engine name (default auto: the fastest that runs here)")
    p.add_argument("--batch", type=int, default=8, help="images per engine call (default 8)")
    p.add_argument("--json", action="store_true", help='print only JSON {"model", "engine", "images", "dice", '
                   '"iou", "f1"}')


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from pipeline.errors import ConfigError
    from pipeline.modelfile import DEFAULT_MODEL
    from pipeline.train.evaluate import evaluate

    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    result = evaluate(args.model or DEFAULT_MODEL, args.images, args.masks, args.engine, args.batch,
                      None if args.json else progress)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    s = result.scores
    print(f"model {result.model}, engine {result.engine}, {s.images} images: "
          f"dice {s.dice:.4f} (+-{s.dice_ci95:.4f}, 95% CI over images)  iou {s.iou:.4f}  f1 {s.f1:.4f}")
    return 0

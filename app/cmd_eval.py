"""`mbunet eval`: foreground Dice / IoU / F1 of a model (any engine) on an image + mask folder, or on composites
over the background sources that training never saw (per source, plus the share of bare frames marked)."""
from __future__ import annotations

import argparse

from mbunet.app.args import parse_size

HELP = ("score a model on images/ + masks/ folders, or on composites over unseen background sources: Dice, IoU, "
        "pixel F1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="images (jpg/png/bmp)")
    p.add_argument("--masks", metavar="DIR", help="masks: PNG with the image's stem and size, 0/255 or class indices")
    p.add_argument("--stamps", metavar="DIR", help="instead of folders: composites of the val/ cut-outs of DIR ...")
    p.add_argument("--backgrounds", metavar="DIR", help="... on the val/ frames of the sources that DIR/train lacks "
                   "(named <source>_*.jpg), scored per source; bare frames give the share marked on empty scenes")
    p.add_argument("--count", type=int, default=1000, help="composites (default 1000, spread evenly over sources)")
    p.add_argument("--size", type=parse_size, default=(480, 360), metavar="WxH",
                   help="composite size (default 480x360)")
    p.add_argument("--seed", type=int, default=4321, help="composite seed (default 4321)")
    p.add_argument("--model", metavar="NAME|PATH", help="model file or shipped name (default: the default model)")
    p.add_argument("--engine", default="auto", help="engine name (default auto: the fastest that runs here)")
    p.add_argument("--batch", type=int, default=8, help="images per engine call (default 8)")
    p.add_argument("--against", metavar="NAME|PATH", help="also score this model on the same images and report "
                   "the paired Dice difference (model - against) with its 95%% confidence interval")
    p.add_argument("--json", action="store_true", help='print only JSON {"model", "engine", "images", "dice", '
                   '"iou", "f1"}; with --against also "against" (the same for that model), "dice_difference" and '
                   '"dice_difference_ci95"')


def main(args: argparse.Namespace) -> int:
    import sys

    from mbunet.errors import ConfigError
    from mbunet.engines.base import engine_for
    from mbunet.modelfile import DEFAULT_MODEL, load_model
    from mbunet.train.evaluate import evaluate
    from mbunet.train.metrics import paired_difference

    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    if bool(args.stamps and args.backgrounds) == bool(args.images and args.masks):
        raise ConfigError("give --images DIR --masks DIR, or --stamps DIR --backgrounds DIR")
    if args.stamps:
        return _sources(args)

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    # every model must load and suit the engine before the first one is scored
    models = [load_model(ref) for ref in [args.model or DEFAULT_MODEL] + ([args.against] if args.against else [])]
    for model in models:
        engine_for(args.engine, model)
    # a counter rewritten in place only reads well on a terminal: in a log file it is one long line
    shown = None if args.json or not sys.stderr.isatty() else progress
    results = [evaluate(model, args.images, args.masks, args.engine, args.batch, shown) for model in models]
    if args.against and results[0].scores.images < 2:
        raise ConfigError("--against needs at least 2 images to compare the models")
    diff = paired_difference(results[0].image_dice, results[1].image_dice) if args.against else None
    if args.json:
        return _print_json(results, diff)
    # a retrained model usually keeps its card name: then name each by the file or name the user gave
    labels = [r.model for r in results]
    if len(set(labels)) < len(labels):
        labels = [args.model or DEFAULT_MODEL, args.against]
    for label, r in zip(labels, results):
        s = r.scores
        print(f"model {label}, engine {r.engine}, {s.images} images: "
              f"dice {s.dice_text(', 95% CI over images')}  iou {s.iou:.4f}  f1 {s.f1:.4f}")
    if diff:
        verdict = "no clear difference" if abs(diff[0]) <= diff[1] else (
            f"{labels[0]} {'above' if diff[0] > 0 else 'below'} {labels[1]}")
        print(f"dice difference {labels[0]} - {labels[1]}: {diff[0]:+.4f} +-{diff[1]:.4f} "
              f"(95% CI, paired over the same images): {verdict}")
    return 0


def _sources(args: argparse.Namespace) -> int:

    from mbunet.modelfile import DEFAULT_MODEL
    from mbunet.train.source_eval import compare, evaluate_sources, format_scores, held_out_set

    test = held_out_set(args.stamps, args.backgrounds, args.count, (args.size[1], args.size[0]), args.seed)
    refs = [args.model or DEFAULT_MODEL] + ([args.against] if args.against else [])
    results = [evaluate_sources(ref, test, args.engine, args.batch) for ref in refs]
    diff = compare(results[0], results[1]) if args.against else None
    if args.json:
        return _print_json(results, diff)
    for r in results:
        print(format_scores(r))
    if diff:
        print(f"dice difference {refs[0]} - {refs[1]}: {diff[0]:+.4f} +-{diff[1]:.4f} (95% CI, paired over the same "
              f"composites)")
    return 0


def _print_json(results: list, diff: tuple[float, float] | None) -> int:
    """The first model's scores as one JSON line; with --against also the other's and the paired difference."""
    import json

    out = results[0].to_json()
    if diff:
        out.update(against=results[1].to_json(), dice_difference=diff[0], dice_difference_ci95=diff[1])
    print(json.dumps(out))
    return 0

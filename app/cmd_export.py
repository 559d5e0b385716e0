"""`mbunet export`: a training checkpoint -> one model file (safetensors + JSON card)."""
from __future__ import annotations

import argparse

HELP = "convert a training checkpoint (mbunet train) into a model file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint written by mbunet train (e.g. runs/train/mbunet/checkpoint.pt)")
    p.add_argument("out", help="model file to write (.safetensors)")
    p.add_argument("--name", help="model name in the card (default: the output file's stem, with -2, -3, ... where "
                   "a shipped model has that name)")
    p.add_argument("--force", action="store_true", help="replace an existing file or a shipped model")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mbunet.modelfile import check_target, load_model, unshipped_name
    from mbunet.train.checkpoint import export_checkpoint

    check_target(args.out, args.force)
    path = export_checkpoint(args.checkpoint, args.out, args.name or unshipped_name(Path(args.out).stem))
    model = load_model(path)  # read back: what was written is a valid, verified model file
    zeros = model.card.get("zero_fraction") or {}
    print(f"wrote {path}: {model.kind}, input {model.arch.input_size[1]}x{model.arch.input_size[0]}, "
          f"{len(model.arrays)} arrays" + (f", zero fraction {zeros}" if zeros else ""))
    return 0

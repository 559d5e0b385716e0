"""`mbunet train`: train a U-Net (FP, binary or MBU-Net) from a YAML recipe on composites or image folders."""
from __future__ import annotations

import argparse

from mbunet.arch import ACTIVATION_GRADS

HELP = "train a model from a YAML recipe (a shipped name: fp, mbunet, binary, ...; or a file); resumable; exports a model file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="training recipe (default with --resume: the checkpoint's)")
    p.add_argument("--stamps", metavar="DIR", help="RGBA cut-outs, with train/ and val/ subfolders")
    p.add_argument("--backgrounds", metavar="DIR", help="background frames, with train/ and val/ subfolders")
    p.add_argument("--images", metavar="DIR", help="training images (instead of composites)")
    p.add_argument("--masks", metavar="DIR", help="training masks, same stems as --images, PNG")
    p.add_argument("--val-images", metavar="DIR", help="validation images (default: hold out the last tenth)")
    p.add_argument("--val-masks", metavar="DIR", help="validation masks")
    p.add_argument("--steps", type=int, help="total steps (overrides the recipe; schedules scale with it)")
    p.add_argument("--batch", type=int, help="images per step (overrides the recipe)")
    p.add_argument("--lr", type=float, help="base learning rate (overrides the recipe)")
    p.add_argument("--val-every", type=int, help="validate (and maybe export) every N steps")
    p.add_argument("--width", type=int, help="channels of the network's first level (overrides the recipe; "
                   "the run is named for it: mbunet-w32 -> mbunet-w16); fewer is faster, --init must have the same")
    p.add_argument("--seed", type=int, help="train.seed for a new run, which is then named <name>-s<seed> "
                   "(its folder and model card): compare recipes over several seeds, not one run each")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (model, optimiser, step, rng)")
    p.add_argument("--init", metavar="MODEL|CKPT", help="start from these weights: a full-precision model file "
                   "(shipped name or path) or a training checkpoint (overrides the recipe's train.init)")
    p.add_argument("--teacher", metavar="MODEL", help="distil from this full-precision model file (shipped name or "
                   "path): the loss adds cross-entropy to its soft output (overrides the recipe's train.teacher)")
    p.add_argument("--distill-weight", type=float, metavar="W", help="weight of the distillation term (default 1)")
    p.add_argument("--activation-grad", choices=ACTIVATION_GRADS, help="surrogate gradient of the binary "
                   "activations: ste (clipped identity) or approxsign (Bi-Real Net's 2 - 2|x|); overrides the recipe's "
                   "train.activation_grad, which is ste where a recipe does not set it")
    p.add_argument("--name", help="name of a new run's model and folder (default: the recipe's name, with -2, -3, "
                   "... where a shipped model or an earlier run has it)")
    p.add_argument("--out", metavar="DIR", help="checkpoints and history (default: the folder of the --resume "
                   "checkpoint, else runs/train/<name>); a new run refuses a folder that holds a checkpoint")
    p.add_argument("--export", metavar="PATH", help="write the best validated model here (.safetensors) "
                   "and its Markdown card beside it; a quantized model only once fully binarised")
    p.add_argument("--export-final", metavar="PATH", help="write the model at the end of the schedule here, with "
                   "its card, whatever its validation score (how the shipped models are chosen: a small validation "
                   "set cannot rank steps a hundredth apart)")
    p.add_argument("--force", action="store_true", help="let --export/--export-final replace an existing file "
                   "or a shipped model")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is often fastest on "
                   "a shared machine, where extra threads only wait for each other)")
    p.add_argument("--minutes", type=float, help="stop after this much wall time, with a checkpoint")
    p.add_argument("--write-val", metavar="DIR", help="write the fixed composite validation set as DIR/images "
                   "and DIR/masks (for `mbunet eval`) and exit without training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (validation lines still print)")


def main(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from mbunet.errors import ConfigError
    from mbunet.train.config import load_config, override, with_seed, with_width

    if args.config:
        cfg = load_config(args.config)
    elif args.resume:
        from mbunet.train.checkpoint import config_of_checkpoint
        cfg = config_of_checkpoint(args.resume)
    else:
        raise ConfigError("give --config YAML (a training recipe), or --resume CKPT")
    cfg = override(cfg, steps=args.steps, batch=args.batch, lr=args.lr, val_every=args.val_every, init=args.init,
                   teacher=args.teacher, distill_weight=args.distill_weight, activation_grad=args.activation_grad)
    if args.width is not None:
        if args.resume:
            raise ConfigError("--width starts a new run: a resumed run keeps its checkpoint's network")
        cfg = with_width(cfg, args.width)
    if args.seed is not None:
        if args.resume:
            raise ConfigError("--seed starts a new run: a resumed run keeps its checkpoint's seed and RNG state")
        cfg = with_seed(cfg, args.seed)
    if args.write_val:
        return _write_val(args, cfg)

    import torch

    from mbunet.modelfile import check_target
    from mbunet.train.checkpoint import CHECKPOINT
    from mbunet.train.data import select_data
    from mbunet.train.runs import new_run
    from mbunet.train.trainer import CALIBRATION_IMAGES, Trainer, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        if args.name:
            raise ConfigError("--name names a new run: a resumed run keeps its checkpoint's name")
        # a resumed run keeps writing beside its checkpoint unless told otherwise
        out = Path(args.out or Path(args.resume).parent)
    else:
        name, out = new_run(cfg.name, args.name, args.out)
        cfg = dataclasses.replace(cfg, name=name)
    for target in filter(None, (args.export, args.export_final)):
        check_target(target, args.force, own_name=cfg.name if args.resume else None)

    data = select_data(cfg, args.stamps, args.backgrounds, args.images, args.masks, args.val_images, args.val_masks)
    trainer = Trainer(cfg, data, pick_device(args.device), out, recipe_file=args.config or "")
    if args.resume:
        trainer.load(args.resume)
    elif cfg.train.init:
        started = trainer.warm_start()
        if "rebuilt_from" in started["digest"]:
            print(f"rebuilt {cfg.train.init} as trainable weights with the same function (BatchNorm statistics "
                  f"from {CALIBRATION_IMAGES} training samples)", flush=True)
        else:
            print(f"initialised {len(started['copied'])} tensors from {cfg.train.init}; "
                  f"{len(started['fresh'])} start fresh", flush=True)
    if trainer.teacher is not None:
        print(f"distilling from {cfg.train.teacher} (weight {cfg.train.distill_weight})", flush=True)
    print(f"training {cfg.name} ({trainer.arch.model_kind}, width {cfg.model.width}, "
          f"{cfg.model.input_size[1]}x{cfg.model.input_size[0]}) on {trainer.device} from step {trainer.step} "
          f"of {cfg.train.steps}; data: {data.description}", flush=True)
    last = trainer.fit(args.export, args.minutes, progress=not args.no_progress,
                       export_final=args.export_final)
    parts = [f"step {trainer.step}"]
    if last is not None:
        parts.append(f"last val dice {last.dice:.4f} iou {last.iou:.4f} f1 {last.f1:.4f}")
    if trainer.best >= 0:
        parts.append(f"best exportable val dice {trainer.best:.4f}")
    if args.export:
        parts.append(_export_outcome(trainer, args.export))
    if args.export_final:
        # fit() writes --export-final exactly when the schedule reached its end
        parts.append(f"exported the final step to {args.export_final}" if trainer.finished() else
                     f"nothing exported to {args.export_final}: the schedule stopped at step {trainer.step} of "
                     f"{cfg.train.steps}")
    checkpoint = trainer.out / CHECKPOINT
    parts.append(f"checkpoint {checkpoint}")
    if trainer.stopped_by_signal:
        parts.append(f"stopped by a signal at step {trainer.step} of {cfg.train.steps}: continue with "
                     f"mbunet train --resume {checkpoint} (and the same data flags)")
    print("; ".join(parts))
    return 0


def _export_outcome(trainer, path: str) -> str:
    """Say whether --export wrote a model this session: it only writes one that beats the run's best so far."""
    if trainer.exported_step is not None:
        return f"exported step {trainer.exported_step} to {path}"
    if trainer.best < 0:
        return f"nothing exported to {path}: no validation ran on the fully quantized model yet"
    return f"nothing exported to {path}: no validation this session beat the run's best {trainer.best:.4f}"


def _write_val(args: argparse.Namespace, cfg) -> int:
    from mbunet.errors import DataError
    from mbunet.train.data import composite_validation
    from mbunet.train.folders import write_folder

    if not (args.stamps and args.backgrounds):
        raise DataError("--write-val needs --stamps DIR and --backgrounds DIR (the composite recipe)")
    images, masks = composite_validation(args.stamps, args.backgrounds, cfg)
    out = write_folder(args.write_val, images, masks)
    print(f"wrote {len(images)} validation composites (seed {cfg.data.val_seed}) to {out}/images and {out}/masks")
    return 0

"""The data a training run sees: a training sample source plus a fixed validation set, from either recipe.

Composites: `stamps` and `backgrounds` each hold train/ and val/ subfolders; validation draws only val objects on
val frames. Folders: images/ + masks/ for training and, optionally, separate validation folders; without them
the last tenth of the pairs (by name) is held out for validation and never trained on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .composite import (BACKGROUND_OPTIONS, CompositeGenerator, background_files, draw_batch, heldout_sources,
                        source_of)
from .config import TrainConfig
from .folders import FolderSamples, pair_folders


@dataclass
class TrainData:
    train: object                 # anything with item(seed, index) -> (image, mask)
    val_images: np.ndarray        # uint8 [N, H, W, 3] at the model input size
    val_masks: np.ndarray         # uint8 [N, H, W] labels
    description: str
    flags: str                    # the data flags of `mbunet train` that name this source, for a card's reproduce line


COMPOSITE_FLAGS = "--stamps DIR --backgrounds DIR"


def _split(root: str | Path, part: str) -> Path:
    folder = Path(root) / part
    if not folder.is_dir():
        raise DataError(f"{root}: expected subfolders train/ and val/, {folder} is missing")
    return folder


def validation_backgrounds(backgrounds: str | Path) -> tuple[list[Path], list[str]]:
    """The val frames a model is selected on, and their sources: only the sources that train/ never has, when
    there are any (a model must be chosen for scenes it has not seen; other frames of a training clip flatter
    it), else every val frame (a frame-level split, the only one such a folder allows)."""
    val = _split(backgrounds, "val")
    held = heldout_sources(_split(backgrounds, "train"), val)
    files = [p for p in background_files(val) if not held or source_of(p) in held]
    return files, held


def composite_validation(stamps: str | Path, backgrounds: str | Path, cfg: TrainConfig) -> tuple[np.ndarray, ...]:
    """The fixed, seeded validation composites: val objects on held-out val frames, 1..k objects in every image,
    drawn without the training-only background options (bare backgrounds have no foreground to score; the
    video look, mosaics and recolouring are there to train on, not to be judged on)."""
    recipe = dataclasses.replace(cfg.data.composite, **dict.fromkeys(BACKGROUND_OPTIONS, 0.0), source_balance=0.0)
    gen = CompositeGenerator.from_folders(_split(stamps, "val"), validation_backgrounds(backgrounds)[0], recipe)
    return draw_batch(gen, cfg.data.val_seed, 0, cfg.data.val_size)


def composite_data(stamps: str | Path, backgrounds: str | Path, cfg: TrainConfig) -> TrainData:
    train = CompositeGenerator.from_folders(_split(stamps, "train"), _split(backgrounds, "train"),
                                            cfg.data.composite)
    images, masks = composite_validation(stamps, backgrounds, cfg)
    held = validation_backgrounds(backgrounds)[1]
    recipe = cfg.data.composite
    bare = "".join(f", {getattr(recipe, option):.0%} {what}" for option, what in BACKGROUND_OPTIONS.items()
                   if getattr(recipe, option))
    if recipe.source_balance:
        bare += f", frames weighted by source (balance {recipe.source_balance:g})"
    if recipe.draw_size:
        bare += f", drawn at {recipe.canvas[1]}x{recipe.canvas[0]} and shrunk"
    val_frames = f"frames of {len(held)} held-out sources ({', '.join(held)})" if held else "val frames"
    desc = (f"composites: {len(train.stamps)} cut-outs from {Path(stamps).resolve()}/train on random crops of "
            f"{len(train.backgrounds)} frames from {Path(backgrounds).resolve()}/train "
            f"(1..{recipe.max_objects} objects, scale/rotation/flip/jitter/blur/occlusion/off-edge{bare}); "
            f"validation: {len(images)} fixed composites (seed {cfg.data.val_seed}) of val objects on {val_frames}")
    return TrainData(train, images, masks, desc, COMPOSITE_FLAGS)


def folder_data(images: str | Path, masks: str | Path, cfg: TrainConfig,
                val_images: str | Path | None = None, val_masks: str | Path | None = None) -> TrainData:
    size, classes = tuple(cfg.model.input_size), cfg.model.classes
    if (val_images is None) != (val_masks is None):
        raise DataError("give both --val-images and --val-masks, or neither")
    pairs = pair_folders(images, masks)
    if val_images is None:
        if len(pairs) < 2:
            raise DataError(f"{images}: at least 2 image/mask pairs are needed to hold one out for validation")
        cut = len(pairs) - max(1, len(pairs) // 10)
        train, val = FolderSamples(pairs[:cut], size, classes), FolderSamples(pairs[cut:], size, classes)
        held = f"the last {len(pairs) - cut} pairs by name held out for validation"
    else:
        train = FolderSamples(pairs, size, classes)
        val = FolderSamples(pair_folders(val_images, val_masks), size, classes)
        held = f"validation: {len(val)} pairs from {Path(val_images).resolve()}"
    vi, vm = val.fixed()
    flags = "--images DIR --masks DIR" + ("" if val_images is None else " --val-images DIR --val-masks DIR")
    return TrainData(train, vi, vm, f"image folders: {len(train)} pairs from {Path(images).resolve()}; {held}", flags)


def select_data(cfg: TrainConfig, stamps: str | None = None, backgrounds: str | None = None,
                images: str | None = None, masks: str | None = None,
                val_images: str | None = None, val_masks: str | None = None) -> TrainData:
    """Composites (stamps + backgrounds) or folders (images + masks): exactly one recipe must be named."""
    composite, folders = (stamps, backgrounds), (images, masks)
    if any(composite) and any(folders):
        raise DataError("give either --stamps/--backgrounds (composites) or --images/--masks (folders), not both")
    if all(composite):
        return composite_data(stamps, backgrounds, cfg)
    if all(folders):
        return folder_data(images, masks, cfg, val_images, val_masks)
    raise DataError("training data: expected --stamps DIR --backgrounds DIR (each with train/ and val/) "
                    "or --images DIR --masks DIR; found " + (
                        "only one of --stamps/--backgrounds" if any(composite) else
                        "only one of --images/--masks" if any(folders) else "neither"))

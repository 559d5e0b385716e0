"""Score a model file with any engine on an image/mask folder: foreground Dice, IoU (per-image means) and F1.

Each image is resized (stretched) to the model input and segmented; its output scores are enlarged back to the
image's own size (preprocess.scores_to_frame, as `mbunet run` does) before the mask is compared with the true mask
at full resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..modelfile import ModelFile, load_model
from .folders import pair_folders, read_image, read_mask
from .metrics import Scores, ScoreSet


@dataclass(frozen=True)
class EvalResult:
    model: str
    engine: str
    scores: Scores
    image_dice: np.ndarray = field(repr=False)   # per image, in the folder's (sorted) order

    def to_json(self) -> dict:
        s = self.scores
        return {"model": self.model, "engine": self.engine, "images": s.images, "dice": s.dice, "iou": s.iou,
                "f1": s.f1}


def evaluate(model_ref: str | Path | ModelFile, images: str | Path, masks: str | Path, engine: str = "auto",
             batch: int = 8, progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Load the model (unless given loaded), create the engine, and score every image of the folder."""
    from ..api import Segmenter

    pairs = pair_folders(images, masks)  # checks the folders before the (slow) engine set-up
    model = model_ref if isinstance(model_ref, ModelFile) else load_model(model_ref)
    scores = ScoreSet()
    with Segmenter(model, engine, fit="resize") as seg:
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            frames = [read_image(p) for p in chunk]
            truth = [read_mask(p, f.shape[:2], model.arch.classes) for p, f in zip(chunk, frames)]
            for pred, t in zip(seg.batch(frames), truth):
                scores.add(pred, t)
            if progress:
                progress(min(start + batch, len(pairs)), len(pairs))
    return EvalResult(model.name, seg.engine_name, scores.result(), scores.image_dice())

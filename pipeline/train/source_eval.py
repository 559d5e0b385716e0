"""Accuracy on scenes a model never saw: composites of val objects on the held-out background sources, scored per
source, plus how much of a bare held-out frame (nothing pasted) a model marks as foreground.

Other frames of a training clip flatter a model (it has learnt that scene); a source that training never had is
what a user's camera is. Sample `i` draws its background from source `i mod S`, so every source weighs the same
however many frames it has, and the same (seed, count) gives the same images for every model: differences
between two models are paired over identical images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from .composite import CompositeGenerator, CompositeRecipe, load_backgrounds, load_stamps, source_of
from .data import validation_backgrounds
from .metrics import Scores, ScoreSet, paired_difference


@dataclass(frozen=True)
class SourceSet:
    """The test images: composites [N, H, W, 3] RGB with their masks, each image's source, and the bare frames."""

    images: np.ndarray
    masks: np.ndarray
    sources: list[str]
    bare: dict[str, list[np.ndarray]]     # source -> its val frames (RGB, as stored), nothing pasted


def held_out_set(stamps: str | Path, backgrounds: str | Path, count: int, size: tuple[int, int],
                 seed: int = 4321) -> SourceSet:
    """`count` composites (val objects on held-out sources' val frames) at `size` (height, width)."""
    files, held = validation_backgrounds(backgrounds)
    if not held:
        raise DataError(f"{backgrounds}: val/ has no source that train/ lacks (sources are named <source>_*.jpg): "
                        f"there is nothing unseen to score on")
    by_source = {s: [p for p in files if source_of(p) == s] for s in held}
    recipe = dataclasses.replace(CompositeRecipe(), size=tuple(size))
    side = max(size)
    cutouts = load_stamps(Path(stamps) / "val", max(256, 2 * side))
    gens = {s: CompositeGenerator(cutouts, load_backgrounds(fs, max(480, 3 * side)), recipe)
            for s, fs in by_source.items()}
    images, masks, sources = [], [], []
    for i in range(count):
        s = held[i % len(held)]
        image, mask = gens[s].item(seed, i)
        images.append(image)
        masks.append(mask)
        sources.append(s)
    return SourceSet(np.stack(images), np.stack(masks), sources, {s: g.backgrounds for s, g in gens.items()})


@dataclass
class SourceScores:
    model: str
    engine: str
    overall: Scores
    per_source: dict[str, Scores]
    bare_foreground: dict[str, float]     # source -> mean share of pixels marked on its bare frames
    image_dice: np.ndarray = field(repr=False)

    @property
    def bare_foreground_mean(self) -> float:
        """Mean over sources (each source weighs the same, as in the composites)."""
        return float(np.mean(list(self.bare_foreground.values())))

    def to_json(self) -> dict:
        return {"model": self.model, "engine": self.engine, **self.overall.to_json(),
                "per_source": {s: v.to_json() for s, v in self.per_source.items()},
                "bare_foreground": self.bare_foreground, "bare_foreground_mean": self.bare_foreground_mean}


def score_sources(segment: Callable[[list[np.ndarray]], list[np.ndarray]], test: SourceSet, model: str,
                  engine: str, batch: int = 8) -> SourceScores:
    """Score a segmenter (BGR frames -> frame-size masks, e.g. api.Segmenter(..., fit="resize").batch)."""
    overall, per = ScoreSet(), {s: ScoreSet() for s in dict.fromkeys(test.sources)}
    bgr = test.images[..., ::-1]
    for start in range(0, len(bgr), batch):
        preds = segment(list(bgr[start:start + batch]))
        for i, pred in enumerate(preds, start):
            overall.add(pred, test.masks[i])
            per[test.sources[i]].add(pred, test.masks[i])
    bare = {}
    for s, frames in test.bare.items():
        marked = [float(np.count_nonzero(m)) / m.size for m in segment([f[..., ::-1] for f in frames])]
        bare[s] = float(np.mean(marked))
    return SourceScores(model, engine, overall.result(), {s: v.result() for s, v in per.items()}, bare,
                        overall.image_dice())


def compare(a: SourceScores, b: SourceScores) -> tuple[float, float]:
    """Paired Dice difference a - b over the same composites, with its 95% interval half-width."""
    return paired_difference(a.image_dice, b.image_dice)


def format_scores(r: SourceScores) -> str:
    lines = [f"model {r.model}, engine {r.engine}: {r.overall.images} composites on {len(r.per_source)} unseen "
             f"sources: dice {r.overall.dice_text(', 95% CI')}; bare frames marked {r.bare_foreground_mean:.1%}",
             f"  {'source':<12} {'images':>6} {'dice':>7} {'+-95%':>7} {'bare marked':>11}"]
    for s, v in r.per_source.items():
        ci = f"{v.dice_ci95:.3f}" if v.dice_ci95 is not None else "-"
        lines.append(f"  {s:<12} {v.images:>6} {v.dice:>7.3f} {ci:>7} {r.bare_foreground[s]:>11.1%}")
    return "\n".join(lines)



def evaluate_sources(model_ref, test: SourceSet, engine: str = "auto", batch: int = 8) -> SourceScores:
    """Load the model (a shipped name, a path or a ModelFile) on an engine and score it on `test`."""
    from ..api import Segmenter

    with Segmenter(model_ref, engine, fit="resize") as seg:
        return score_sources(seg.batch, test, seg.model.name, seg.engine_name, batch)

"""Foreground scores: per-image Dice and IoU (averaged over images) and pixel F1 over a whole set.

Foreground is every label > 0. An image where both prediction and truth are empty scores 1 (a perfect
"nothing here"), the usual convention; one with foreground on one side only scores 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of the foreground."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {list(pred.shape)}, truth is {list(truth.shape)}; they must match")
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    tp = int(np.count_nonzero(p & t))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp


def _dice_iou(tp: int, fp: int, fn: int) -> tuple[float, float]:
    union = tp + fp + fn
    return (1.0, 1.0) if union == 0 else (2 * tp / (union + tp), tp / union)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|); 1 when both are empty."""
    return _dice_iou(*_counts(pred, truth))[0]


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩T| / |P∪T|; 1 when both are empty."""
    return _dice_iou(*_counts(pred, truth))[1]


@dataclass(frozen=True)
class Scores:
    images: int
    dice: float
    iou: float
    f1: float
    dice_ci95: float | None  # half-width of the 95% interval of the mean Dice (normal approx.); None for 1 image

    def to_json(self) -> dict:
        return asdict(self)

    def dice_text(self, ci_label: str = "") -> str:
        """'0.6736 (+-0.0329<ci_label>)', or just the Dice when one image gives no interval."""
        ci = "" if self.dice_ci95 is None else f" (+-{self.dice_ci95:.4f}{ci_label})"
        return f"{self.dice:.4f}{ci}"


class ScoreSet:
    """Accumulates images one by one (or in batches) without keeping them."""

    def __init__(self) -> None:
        self._dice: list[float] = []
        self._iou: list[float] = []
        self._tp = self._fp = self._fn = 0

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """One image [H, W] or a batch [N, H, W] of predicted and true labels."""
        if pred.ndim == 3:
            for p, t in zip(pred, truth):
                self.add(p, t)
            return
        tp, fp, fn = _counts(pred, truth)
        self._tp, self._fp, self._fn = self._tp + tp, self._fp + fp, self._fn + fn
        d, j = _dice_iou(tp, fp, fn)
        self._dice.append(d)
        self._iou.append(j)

    def image_dice(self) -> np.ndarray:
        """Dice of each image, in the order they were added (for paired comparisons of two models)."""
        return np.asarray(self._dice)

    def result(self) -> Scores:
        if not self._dice:
            raise ValueError("no images scored")
        f1 = _dice_iou(self._tp, self._fp, self._fn)[0]  # pixel F1 over the set = Dice of the pooled counts
        n = len(self._dice)
        ci = 1.96 * float(np.std(self._dice, ddof=1)) / np.sqrt(n) if n > 1 else None
        return Scores(n, float(np.mean(self._dice)), float(np.mean(self._iou)), f1, ci)


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b over the same images, and the half-width of its 95% confidence interval.

    Pairing removes the spread between easy and hard images, which dominates either model's own interval:
    two models can differ clearly even where their separate intervals overlap.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired scores need two equal lists of at least 2 images, got {a.shape} and {b.shape}")
    d = a - b
    return float(d.mean()), 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d))

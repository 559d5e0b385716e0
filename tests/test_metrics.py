"""Foreground Dice / IoU / F1 on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from mbunet.train.metrics import ScoreSet, dice, iou, paired_difference

P = np.array([[1, 1], [0, 0]], np.uint8)
T = np.array([[1, 0], [1, 0]], np.uint8)  # tp 1, fp 1, fn 1


def test_hand_computed_dice_and_iou():
    assert dice(P, T) == pytest.approx(2 / 4)
    assert iou(P, T) == pytest.approx(1 / 3)


@pytest.mark.parametrize("pred, truth, expected", [
    (np.zeros((2, 2)), np.zeros((2, 2)), 1.0),  # nothing to find, nothing found: perfect
    (np.ones((2, 2)), np.zeros((2, 2)), 0.0),
    (np.zeros((2, 2)), np.ones((2, 2)), 0.0),
    (np.ones((2, 2)), np.ones((2, 2)), 1.0),
])
def test_edge_cases(pred, truth, expected):
    assert dice(pred, truth) == expected and iou(pred, truth) == expected


def test_any_nonzero_label_is_foreground():
    assert dice(np.array([[2, 0]]), np.array([[1, 0]])) == 1.0


def test_set_means_dice_per_image_but_pools_pixels_for_f1():
    s = ScoreSet()
    s.add(P, T)                                                  # dice 0.5, iou 1/3
    s.add(np.ones((2, 2), np.uint8), np.ones((2, 2), np.uint8))  # dice 1, iou 1, tp 4
    r = s.result()
    assert r.images == 2
    assert r.dice == pytest.approx(0.75)
    assert r.iou == pytest.approx((1 / 3 + 1) / 2)
    assert r.f1 == pytest.approx(2 * 5 / (2 * 5 + 1 + 1))       # pooled: tp 5, fp 1, fn 1
    assert r.dice_ci95 == pytest.approx(1.96 * np.std([0.5, 1.0], ddof=1) / np.sqrt(2))


def test_one_image_has_no_confidence_interval():
    s = ScoreSet()
    s.add(P, T)
    assert s.result().dice_ci95 is None
    assert s.result().dice_text(", 95% CI") == f"{s.result().dice:.4f}"


def test_batches_equal_single_images():
    rng = np.random.default_rng(0)
    pred, truth = rng.integers(0, 2, (5, 8, 8)), rng.integers(0, 2, (5, 8, 8))
    a, b = ScoreSet(), ScoreSet()
    a.add(pred, truth)
    for p, t in zip(pred, truth):
        b.add(p, t)
    assert a.result() == b.result()


def test_shape_mismatch_and_empty_set():
    with pytest.raises(ValueError, match="must match"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no images"):
        ScoreSet().result()


def test_paired_difference_removes_the_spread_between_images():
    b = np.array([0.2, 0.9, 0.5, 0.7])
    assert paired_difference(b + 0.1, b) == pytest.approx((0.1, 0.0))
    a = b + np.array([0.1, 0.0, 0.1, 0.0])
    mean, ci = paired_difference(a, b)
    assert mean == pytest.approx(0.05) and ci == pytest.approx(1.96 * np.std([0.1, 0, 0.1, 0], ddof=1) / 2)
    with pytest.raises(ValueError, match="two equal lists"):
        paired_difference(b, b[:3])

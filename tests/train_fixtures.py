"""Tiny synthetic data trees for the training tests (no dependency on ../shared, fast to read).

Cut-outs are solid-colour discs with a hard alpha (train: red, val: green); backgrounds are flat grey frames
(train: black, val: grey 40), so every pixel of a composite tells where it came from.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TRAIN_RGB, VAL_RGB = (255, 0, 0), (0, 255, 0)
TRAIN_BG, VAL_BG = 0, 40


def _disc(rgb: tuple[int, int, int], h: int, w: int) -> np.ndarray:
    """BGRA image (OpenCV order) of an ellipse filling the canvas."""
    img = np.zeros((h, w, 4), np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, (*rgb[::-1], 255), -1)
    return img


def make_composite_tree(root: Path, stamps: int = 3, frames: int = 2) -> tuple[Path, Path]:
    """root/stamps/{train,val}/*.png and root/backgrounds/{train,val}/*.png; returns (stamps, backgrounds)."""
    for split, rgb, grey in (("train", TRAIN_RGB, TRAIN_BG), ("val", VAL_RGB, VAL_BG)):
        (root / "stamps" / split).mkdir(parents=True)
        (root / "backgrounds" / split).mkdir(parents=True)
        for i in range(stamps):
            cv2.imwrite(str(root / "stamps" / split / f"{split}_obj{i}.png"), _disc(rgb, 40 + 10 * i, 60))
        for i in range(frames):
            cv2.imwrite(str(root / "backgrounds" / split / f"{split}_frame{i}.png"),
                        np.full((90 + 10 * i, 120, 3), grey, np.uint8))
    return root / "stamps", root / "backgrounds"


def make_folder_pairs(root: Path, n: int = 4, size: tuple[int, int] = (40, 50)) -> tuple[Path, Path]:
    """root/images/*.png with root/masks/*.png (0/255 rectangles); returns (images, masks)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    h, w = size
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        mask = np.zeros((h, w), np.uint8)
        mask[5 + i:h // 2 + i, 8:w - 8 - i] = 255
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), mask)
    return root / "images", root / "masks"

"""Training batches as tensors: uint8 images to the network's input, and random crops of a batch."""
from __future__ import annotations

import numpy as np
import torch


def to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 RGB [N, H, W, 3] -> float [N, 3, H, W] in [0, 1] (the UNet normalises inside)."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255


def random_crop(images: np.ndarray, masks: np.ndarray, size: tuple[int, ...],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random (h, w) window per sample: same pixel scale as the full input, fewer pixels per step.
    The U-Net is fully convolutional, so weights trained on crops run unchanged at the full input size."""
    h, w = size
    ys = rng.integers(0, images.shape[1] - h + 1, len(images))
    xs = rng.integers(0, images.shape[2] - w + 1, len(images))
    return (np.stack([im[y:y + h, x:x + w] for im, y, x in zip(images, ys, xs)]),
            np.stack([m[y:y + h, x:x + w] for m, y, x in zip(masks, ys, xs)]))

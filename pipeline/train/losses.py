"""Segmentation loss: cross-entropy (BCE for one class) plus soft Dice, as in BiSegUNet and QuantU-Net, and the
distillation term that pulls a quantized student toward a full-precision teacher's soft output.

The pixel term gives dense gradients everywhere; the Dice term weighs small objects as much as large ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image and channel, averaged; probs and target are [N, C, H, W] in [0, 1]."""
    inter = (probs * target).sum(dim=(2, 3))
    total = probs.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    return (1 - (2 * inter + eps) / (total + eps)).mean()


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """logits [N, C, H, W], labels int64 [N, H, W] -> scalar loss (BCE + Dice for C == 1, CE + Dice else)."""
    if logits.shape[1] == 1:
        target = labels.unsqueeze(1).to(logits.dtype)
        pixel = F.binary_cross_entropy_with_logits(logits, target)
        probs = torch.sigmoid(logits)
    else:
        pixel = F.cross_entropy(logits, labels)
        probs = torch.softmax(logits, dim=1)
        target = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return pixel + dice_weight * soft_dice_loss(probs, target)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's logits against the teacher's probabilities, per pixel ([N, C, H, W] both).

    The teacher's soft output says how sure it is at each pixel (edges, thin parts), which the hard labels do
    not; the term is smallest, with zero gradient, where the student's logits equal the teacher's.
    """
    if student.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher))
    return -(torch.softmax(teacher, dim=1) * torch.log_softmax(student, dim=1)).sum(dim=1).mean()

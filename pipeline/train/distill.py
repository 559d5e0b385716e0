"""The teacher of knowledge distillation (`train.teacher`): a trained full-precision U-Net whose soft output the
quantized student learns besides the labels (losses.distillation_loss).

Binary activations are where MBU-Net loses most against the FP network (docs/training.md); the FP
network's per-pixel confidence is a denser target than 0/1 labels for the function the student can still fit.
The teacher only runs forward, in eval mode (its BatchNorm statistics fixed), on the student's own batch.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..modelfile import load_model
from ..nn import fp_unet


def load_teacher(ref: str, classes: int, device: torch.device) -> torch.nn.Module:
    """The FP network of model file `ref` (shipped name or path), frozen, for a student with `classes` outputs."""
    model = load_model(ref)
    if model.arch.quantized:
        raise ConfigError(f"train.teacher {ref} is a quantized ({model.kind}) model; the teacher must be a "
                          "full-precision model")
    if model.arch.classes != classes:
        raise ConfigError(f"train.teacher {ref}: {model.arch.classes} class(es), the student has {classes}")
    teacher = fp_unet(model).eval().to(device)
    teacher.requires_grad_(False)
    return teacher

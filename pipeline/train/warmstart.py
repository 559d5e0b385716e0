"""Start training from trained weights: a full-precision model file (a shipped name or a path) or a checkpoint.

Binary networks train better from a converged full-precision network than from random weights (the quantized
net keeps the FP net's features and only has to learn to survive sign()). The FP U-Net and the quantized one
share the conv weights, the BatchNorms and the output conv; their module trees differ in two places, which
`_quantized_key` maps:
  FP  <block>.0.weight / <block>.1.<bn field>   (Sequential of Conv2d, BatchNorm2d, ReLU)
  Q   <block>.weight   / <block>.bn.<bn field>  (QuantConv)
The FP transposed convs carry a bias where the quantized ones have a BatchNorm: the bias is dropped and the new
BatchNorm starts fresh. A quantized model *file* holds folded thresholds and bits, not trainable weights: it
starts a quantized network through from_bits, which rebuilds weights with the same function.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import MbunetError

_FP_BLOCK = re.compile(r"^(inc\.1|down\.\d+\.\d+|up_conv\.\d+\.\d+)\.(0|1)\.(.+)$")


def _quantized_key(fp_key: str) -> str:
    m = _FP_BLOCK.match(fp_key)
    if not m:
        return fp_key
    block, part, field = m.groups()
    return f"{block}.{field}" if part == "0" else f"{block}.bn.{field}"


def _checkpoint_state(path: Path) -> tuple[dict[str, torch.Tensor], bool, dict[str, str]]:
    """A checkpoint's trainable tensors, whether they belong to a full-precision U-Net, and the file's digest."""
    from .checkpoint import read_checkpoint

    state = read_checkpoint(path)
    with open(path, "rb") as f:  # streamed: a checkpoint is ~100 MB and its tensors are already in memory
        digest = {"file_sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    return state["model"], not state["config"]["model"].get("quantized", True), digest


def warm_start(model, ref: str | Path, calibration=None) -> dict:
    """Copy every tensor of `ref` that the model has (same name after mapping, same shape) into it; a quantized
    model file instead rebuilds the whole quantized network (from_bits), with BatchNorm statistics measured on
    `calibration()`, which returns (images, labels) of the training data.

    Returns {"copied": [...], "fresh": [...], "digest": {...}}: the model's tensors taken from `ref`, the weights
    and statistics left as initialised, and `ref`'s digest (with "rebuilt_from" where a quantized file was rebuilt).
    Raises if nothing matches (another width or network).
    """
    if Path(ref).suffix in (".pt", ".pth"):
        source, from_fp, digest = _checkpoint_state(Path(ref))
    else:
        from ..modelfile import load_model

        loaded = load_model(ref)
        digest = {"arrays_sha256": loaded.card["arrays_sha256"]}  # a shipped name outlives the file it named
        if loaded.arch.quantized:
            if not model.arch.quantized:
                raise MbunetError(f"--init {ref}: a {loaded.kind} model file can start a quantized network only; "
                                  f"start a full-precision one from a full-precision model or a checkpoint")
            from .from_bits import load_from_bits

            load_from_bits(model, loaded, calibration())
            # the card says the weights were rebuilt, not copied, and from which kind of network
            digest["rebuilt_from"] = loaded.kind
            return {"copied": list(model.state_dict()), "fresh": [], "digest": digest}
        source = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in loaded.arrays.items()}
        from_fp = True
    rename = from_fp and model.arch.quantized
    mapped = {(_quantized_key(k) if rename else k): v for k, v in source.items()}
    target = model.state_dict()
    copied = [k for k, v in target.items() if k in mapped and mapped[k].shape == v.shape]
    if not any(k.endswith("weight") and target[k].dim() == 4 for k in copied):
        raise MbunetError(f"--init {ref}: no conv weight of it fits this model (another width or network)")
    with torch.no_grad():
        for k in copied:
            target[k].copy_(mapped[k].to(target[k].dtype))
    # BatchNorm's batch counter is bookkeeping, not a weight: the FP file does not store it
    fresh = [k for k in target if k not in copied and not k.endswith("num_batches_tracked")]
    return {"copied": copied, "fresh": fresh, "digest": digest}

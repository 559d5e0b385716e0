"""Model files from trained PyTorch networks (export_model).

BatchNorm + sign folding (docs/design.md, section 4): sign(gamma*(z - mu)/sqrt(var+eps) + beta) >= 0 with
t = mu - beta*sqrt(var+eps)/gamma is z >= ceil(t) for gamma > 0 and z <= floor(t) for gamma < 0; the latter is
stored as -z >= -floor(t) by negating the channel's weights (swapping pos/neg planes), so every engine only ever
compares dot >= threshold. gamma == 0 gives a constant: threshold -2**30 (always +1) or 2**30 (always -1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .arch import Architecture, plan
from .bits import ALWAYS_OFF, ALWAYS_ON, weight_planes
from .modelfile import OUTPUT_BIAS_MAX, OUTPUT_WEIGHT_MAX, save_model

def fold_threshold(t: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float thresholds t (for z) -> (int32 thresholds for the possibly negated dot, flip mask).

    For integer z: gamma > 0: z >= t  <=>  z >= ceil(t);  gamma < 0: z <= t  <=>  -z >= -floor(t).
    """
    t = np.asarray(t, np.float64)
    flip = gamma < 0
    thr = np.where(flip, -np.floor(t), np.ceil(t))
    thr = np.where(gamma == 0, np.where(beta >= 0, ALWAYS_ON, ALWAYS_OFF), thr)
    thr = np.clip(np.nan_to_num(thr, nan=ALWAYS_OFF), ALWAYS_ON, ALWAYS_OFF)
    return thr.astype(np.int32), flip & (gamma != 0)


def _bn_threshold(bn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BatchNorm (eval) as `z >= t` (gamma > 0): t = mu - beta*sqrt(var+eps)/gamma; returns (t, gamma, beta)."""
    g = bn.weight.detach().double().numpy()
    b = bn.bias.detach().double().numpy()
    mu = bn.running_mean.detach().double().numpy()
    sd = np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mu - b * sd / g
    return t, g, b


def _export_input(conv_mod) -> tuple[dict, np.ndarray]:
    """Integer weights on raw pixels (see nn.pixel_domain_weights); the threshold moves to that scale.

    z = sum(u_int * x) / scale + k >= t  <=>  sum(u_int * x) >= scale * (t - k)  (scale > 0).
    """
    from .nn import pixel_domain_weights

    u_int, scale, k = (v.detach().double().numpy() for v in
                       pixel_domain_weights(conv_mod.conv.weight, conv_mod.mean, conv_mod.std))
    t, g, b = _bn_threshold(conv_mod.bn)
    thr, flip = fold_threshold((t - k) * scale, g, b)
    u_int[flip] *= -1
    return {"weight": u_int.transpose(0, 2, 3, 1).astype(np.int32), "threshold": thr}, flip


def _export_binary(mod, step) -> tuple[dict, np.ndarray]:
    """Quantized weights as pos/neg planes; the alpha scale moves into the threshold (dot >= t/alpha)."""
    from .nn import channel_scale, quantize_weight

    w = mod.weight.detach()
    out_dim = 1 if mod.transposed else 0
    q = quantize_weight(w, mod.kind, mod.mask_delta).double().numpy()
    alpha = channel_scale(w, out_dim).double().numpy().reshape(-1)
    q = q.transpose(1, 2, 3, 0) if mod.transposed else q.transpose(0, 2, 3, 1)   # -> [Cout, kh, kw, Cin]
    t, g, b = _bn_threshold(mod.bn)
    with np.errstate(divide="ignore", invalid="ignore"):
        thr, flip = fold_threshold(t / alpha, g, b)
    q[flip] *= -1
    pos, neg = weight_planes(q.astype(np.int8), step.cin_parts)
    return {"pos": pos, "neg": neg, "threshold": thr}, flip


def _export_output(conv) -> dict:
    """One scale for all classes (argmax compares them); |sum| stays < 2**24 so float32 is exact too."""
    w = conv.weight.detach().double().numpy()[:, :, 0, 0]
    b = conv.bias.detach().double().numpy()
    scale = OUTPUT_WEIGHT_MAX / max(np.abs(w).max(), 1e-30)
    bias = np.clip(np.round(b * scale), -OUTPUT_BIAS_MAX, OUTPUT_BIAS_MAX)
    return {"weight": np.round(w * scale).astype(np.int32), "bias": bias.astype(np.int32)}


def quantized_arrays(model, arch: Architecture) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Integer arrays of a quantized UNet (eval mode, quant mix 1) and the flipped channels per step."""
    from .nn import step_modules

    mods = step_modules(model)
    arrays: dict[str, np.ndarray] = {}
    flipped: dict[str, list[int]] = {}
    for s in plan(arch):
        if not s.has_weights:
            continue
        if s.op == "output":
            parts, flip = _export_output(mods[s.name]), None
        elif s.op == "input":
            parts, flip = _export_input(mods[s.name])
        else:
            parts, flip = _export_binary(mods[s.name], s)
        arrays.update({f"{s.name}.{k}": v for k, v in parts.items()})
        if flip is not None and flip.any():
            flipped[s.name] = np.flatnonzero(flip).tolist()
    return arrays, flipped


def export_model(model, arch: Architecture, card: dict, path) -> Path:
    """Write a trained UNet to a model file: integer/bit arrays for quantized nets, float16 state for FP."""
    from .nn import zero_fractions

    model.eval()
    card = dict(card)
    if arch.quantized:
        arrays, flipped = quantized_arrays(model, arch)
        card["thresholds"] = "folded from BatchNorm: out bit = dot >= threshold"
        card["flipped_channels"] = flipped
        card["zero_fraction"] = zero_fractions(model)
    else:
        # float16 halves the shipped file (31 -> 15.5 MB at width 32); inference casts back to float32
        arrays = {k: v.detach().half().numpy() for k, v in model.state_dict().items()
                  if v.dtype.is_floating_point}
    return save_model(path, arch, arrays, card)

"""Model files from trained PyTorch networks (export_model) or from random bits (random_quantized_model, tests/bench).

BatchNorm + sign folding (DESIGN.md section 4): sign(gamma*(z - mu)/sqrt(var+eps) + beta) >= 0 with
t = mu - beta*sqrt(var+eps)/gamma is z >= ceil(t) for gamma > 0 and z <= floor(t) for gamma < 0; the latter is
stored as -z >= -floor(t) by negating the channel's weights (swapping pos/neg planes), so every engine only ever
compares dot >= threshold. gamma == 0 gives a constant: threshold -2**30 (always +1) or 2**30 (always -1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .arch import Architecture, plan
from .bits import weight_planes
from .modelfile import ModelFile, arrays_sha256, default_labels, expected_arrays

ALWAYS_ON = -(1 << 30)
ALWAYS_OFF = 1 << 30


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


def random_quantized_model(arch: Architecture, seed: int = 0, zero_fraction: float = 0.6,
                           name: str = "random") -> ModelFile:
    """A model file of random bits with thresholds that keep every layer's outputs mixed (not all +1 or -1).

    Thresholds are drawn around the dot product's spread, and a few channels get the constant thresholds, so
    tests exercise ties, constants and both signs. Used by engine tests and by `mbunet bench --size`.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for s in plan(arch):
        if s.op == "input":
            w = rng.integers(-32767, 32768, size=(s.cout, 3, 3, 3)).astype(np.int32)
            centre = w.reshape(s.cout, -1).sum(1) * 110
            spread = np.abs(w).reshape(s.cout, -1).sum(1) * 40
            arrays[f"{s.name}.weight"] = w
            arrays[f"{s.name}.threshold"] = (centre + rng.normal(0, 1, s.cout) * spread).astype(np.int32)
        elif s.op in ("conv3x3", "convT2x2"):
            k = 3 if s.op == "conv3x3" else 2
            w = rng.choice([-1, 1], size=(s.cout, k, k, s.cin)).astype(np.int8)
            if s.kind == "masked":
                w[rng.random(w.shape) < zero_fraction] = 0
            pos, neg = weight_planes(w, s.cin_parts)
            arrays[f"{s.name}.pos"], arrays[f"{s.name}.neg"] = pos, neg
            spread = np.sqrt(np.maximum(1, np.abs(w).reshape(s.cout, -1).sum(1)))
            thr = np.round(rng.normal(0, 1, s.cout) * spread).astype(np.int32)
            thr[rng.random(s.cout) < 0.05] = ALWAYS_ON
            thr[rng.random(s.cout) < 0.05] = ALWAYS_OFF
            arrays[f"{s.name}.threshold"] = thr
        elif s.op == "output":
            arrays[f"{s.name}.weight"] = rng.integers(-32767, 32768, size=(s.cout, s.cin)).astype(np.int32)
            arrays[f"{s.name}.bias"] = rng.integers(-20000, 20000, size=(s.cout,)).astype(np.int32)
    assert set(arrays) == set(expected_arrays(arch))
    card = {"name": name, "format": "mbunet", "kind": arch.model_kind, "architecture": arch.to_json(),
            "labels": default_labels(arch.classes), "arrays_sha256": arrays_sha256(arrays),
            "training": {"data": f"none: random bits (seed {seed})"}}
    return ModelFile(None, arch, card, arrays)


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
    scale = 32767.0 / max(np.abs(w).max(), 1e-30)
    bias = np.clip(np.round(b * scale), -(1 << 23), 1 << 23)
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
    from .modelfile import save_model
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


def export_checkpoint(checkpoint, path, name: str | None = None) -> Path:
    """A training checkpoint (mbunet train) -> a model file, as the network stands at quant mix 1.

    The card records the recipe and steps; validation scores are those of `mbunet train`'s own exports, so a
    checkpoint exported by hand carries none (run `mbunet eval` on it).
    """
    import torch

    from .errors import MbunetError
    from .nn import UNet, set_quant_mix
    from .train.card import run_history
    from .train.config import config_from_dict
    from .train.trainer import read_checkpoint

    state = read_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"], f"{checkpoint} (stored recipe)")
    arch = cfg.model.architecture()
    model = UNet(arch, cfg.model.mask_delta)
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in state["model"].items()})
    except RuntimeError as e:
        raise MbunetError(f"checkpoint {checkpoint}: weights do not fit its recipe's architecture") from e
    set_quant_mix(model, 1.0)
    card = {"name": name or Path(path).stem,
            "training": {"recipe": cfg.to_json(), "steps": int(state["step"]),
                         "seconds": round(float(state.get("seconds", 0))), "checkpoint": str(checkpoint),
                         **run_history(state.get("stages") or [], state.get("init_digest", {}))}}
    return export_model(model, arch, card, path)

"""Trainable weights from a quantized model file, so that a shipped MBU-Net or Binary network can be fine-tuned.

A quantized file holds bits and integer thresholds: neither the latent float weights that trained them nor
BatchNorm's statistics. `load_from_bits` rebuilds a training network whose exported function (quant mix 1, eval
mode) is the file's, bit for bit, and whose BatchNorms, in training mode (batch statistics), stay close to it:
- a binary or masked layer's latent weights are its stored {-1, 0, +1} weights times one magnitude, so sign()
  and the masking threshold (mask_delta * mean|w|, below that magnitude) give the stored weights back;
- the input conv's 15-bit pixel-domain weights are scaled back to the normalised-input domain;
- every BatchNorm gets running statistics measured on calibration images (its input as the file's network
  computes it) and a shift that puts its threshold halfway between the stored integer and the one below (a dot
  product is an integer, so no pixel sits on the threshold); a constant channel gets gamma 0;
- the output conv's integer weights lost their scale at export: one scale is fitted to the calibration labels.
Exporting the result gives the file's arrays back (tests/test_train_from_bits.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..arch import plan
from ..bits import planes_to_weights
from ..errors import MbunetError
from ..bits import ALWAYS_OFF, ALWAYS_ON
from ..nn import INPUT_WEIGHT_MAX, pixel_domain_weights, set_quant_mix, step_modules
from .losses import segmentation_loss

LATENT_MAGNITUDE = 0.05   # |latent weight|: inside the clipped STE's |w| <= 1, where a few hundred Adam steps flip it
INPUT_WEIGHT_PEAK = 0.25  # the input conv's largest normalised-domain weight (about a trained FP input conv's)


def check_compatible(model_file, arch) -> None:
    """The file's network must be the target's, except that a binary layer may start a masked one (+-1 weights
    are masked weights with no zero); a masked layer's zeros have no binary counterpart."""
    f, t = model_file.arch, arch
    if (f.width, f.classes, f.mean, f.std) != (t.width, t.classes, t.mean, t.std):
        raise MbunetError(f"--init {model_file.name}: width {f.width}, {f.classes} class(es) does not fit the "
                          f"recipe's width {t.width}, {t.classes} class(es) (or their input normalisation differs)")
    for src, dst in zip(plan(f), plan(t)):
        if src.kind == "masked" and dst.kind == "binary":
            raise MbunetError(f"--init {model_file.name}: layer {src.layer or src.name} is masked there and binary "
                              f"in the recipe; its zero weights have no binary value (start a Binary network from "
                              f"a Binary file or an FP model)")


def load_from_bits(model, model_file, calibration: tuple[np.ndarray, np.ndarray], batch: int = 8) -> None:
    """Fill `model` (a quantized pipeline.nn.UNet) from `model_file` (a quantized ModelFile).

    `calibration`: (images uint8 [N, H, W, 3], labels [N, H, W]) drawn from the training data, which set the
    BatchNorm statistics and the output scale.
    """
    from .batches import to_input

    check_compatible(model_file, model.arch)
    was_training = model.training   # calibration runs in eval mode; training must not go on in it
    mods, arrays = step_modules(model), model_file.arrays
    thresholds: dict[str, torch.Tensor] = {}   # per BatchNorm: where the file's threshold sits in its input's units
    with torch.no_grad():
        for s in plan(model_file.arch):
            if s.op == "input":
                thresholds[s.name] = _input_conv(mods[s.name], arrays[f"{s.name}.weight"],
                                                 arrays[f"{s.name}.threshold"])
            elif s.op in ("conv3x3", "convT2x2"):
                q = planes_to_weights(arrays[f"{s.name}.pos"], arrays[f"{s.name}.neg"], s.cin, s.cin_parts)
                thresholds[s.name] = _quantized_conv(mods[s.name], q, arrays[f"{s.name}.threshold"])
        bns = {name: mods[name].bn for name in thresholds}
        for name, bn in bns.items():  # exact thresholds first, so calibration sees the file's function
            _set_threshold(bn, thresholds[name], torch.zeros_like(thresholds[name]), torch.ones_like(thresholds[name]))
        images, labels = calibration
        x = [to_input(images[i:i + batch], torch.device("cpu")) for i in range(0, len(images), batch)]
        model.eval()
        set_quant_mix(model, 1.0)
        means, variances = _input_statistics(model, bns, x)
        for name, bn in bns.items():
            _set_threshold(bn, thresholds[name], means[name], variances[name])
        _output_conv(model, mods["out"], arrays["out.weight"], arrays["out.bias"], x, labels)
    model.train(was_training)


def _input_conv(conv_mod, u_int: np.ndarray, thr: np.ndarray) -> torch.Tensor:
    """Normalised-domain weights whose pixel-domain integers (nn.pixel_domain_weights) are the stored ones.

    w = u * 255 * std * lam gives u_int back with scale 1/lam, since the stored |u| peaks at INPUT_WEIGHT_MAX;
    then z = lam * sum(u_int * pixel) + k, and the stored `sum >= thr` is z >= lam * (thr - 1/2) + k.
    """
    u = torch.from_numpy(u_int.astype(np.float64)).permute(0, 3, 1, 2)      # [C, kh, kw, 3] -> [C, 3, kh, kw]
    std, mean = conv_mod.std.double(), conv_mod.mean.double()
    lam = INPUT_WEIGHT_PEAK / (INPUT_WEIGHT_MAX * 255.0 * float(std.max()))
    w = u * 255.0 * std * lam
    conv_mod.conv.weight.copy_(w.float())
    _, _, k = pixel_domain_weights(w, mean, std)
    return _with_constants(lam * (torch.from_numpy(thr.astype(np.float64)) - 0.5) + k, thr)


def _quantized_conv(mod, q: np.ndarray, thr: np.ndarray) -> torch.Tensor:
    """Latent weights q * LATENT_MAGNITUDE; the layer computes alpha * dot with alpha = the channel's mean |w|."""
    w = torch.from_numpy(q.astype(np.float64)) * LATENT_MAGNITUDE              # [Cout, kh, kw, Cin]
    nonzero = float(np.mean(q != 0))
    if mod.kind == "masked" and mod.mask_delta * nonzero >= 1:
        raise MbunetError(f"--init: mask_delta {mod.mask_delta} would zero every weight of a layer that is "
                          f"{nonzero:.0%} nonzero in the file; use the recipe's mask_delta of the file")
    alpha = w.abs().mean(dim=(1, 2, 3))
    mod.weight.copy_((w.permute(3, 0, 1, 2) if mod.transposed else w.permute(0, 3, 1, 2)).float())
    thr = np.where(alpha.numpy() > 0, thr, np.where(thr <= 0, ALWAYS_ON, ALWAYS_OFF))  # no weights: dot is 0
    return _with_constants(alpha * (torch.from_numpy(thr.astype(np.float64)) - 0.5), thr)


def _with_constants(t: torch.Tensor, thr: np.ndarray) -> torch.Tensor:
    """Channels the file holds constant get the threshold -inf (always +1) or +inf (always -1)."""
    t = t.clone()
    t[torch.from_numpy(thr == ALWAYS_ON)] = -math.inf
    t[torch.from_numpy(thr == ALWAYS_OFF)] = math.inf
    return t


def _set_threshold(bn, t: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """BatchNorm with running statistics (mean, var) whose output is >= 0 exactly where its input is >= t:
    gamma 1, beta (mean - t) / sd; a constant channel (t = -inf or +inf) gets gamma 0 and beta +1 or -1."""
    sd = torch.sqrt(var + bn.eps)
    const = torch.isinf(t)
    bn.running_mean.copy_(mean.float())
    bn.running_var.copy_(var.float())
    bn.weight.copy_(torch.where(const, 0.0, 1.0))
    bn.bias.copy_(torch.where(const, -torch.sign(t), (mean - t) / sd).float())


def _input_statistics(model, bns: dict, batches: list[torch.Tensor]) -> tuple[dict, dict]:
    """Mean and variance per channel of every BatchNorm's input over the calibration images."""
    sums = {name: [0.0, 0.0, 0] for name in bns}

    def hook(name):
        def record(_module, inputs):
            z = inputs[0].double().transpose(0, 1).reshape(inputs[0].shape[1], -1)
            acc = sums[name]
            acc[0], acc[1], acc[2] = acc[0] + z.sum(1), acc[1] + (z * z).sum(1), acc[2] + z.shape[1]
        return record

    handles = [bn.register_forward_pre_hook(hook(name)) for name, bn in bns.items()]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    means = {name: s / n for name, (s, _, n) in sums.items()}
    variances = {name: (sq / n - means[name] ** 2).clamp_min(0.0) for name, (_, sq, n) in sums.items()}
    return means, variances


def _output_conv(model, outc, w_int: np.ndarray, b_int: np.ndarray, batches: list[torch.Tensor],
                 labels: np.ndarray) -> None:
    """logit = (w_int . a + b_int) / s: the mask ignores s > 0, the loss does not. s is the grid value (1/16 to 16
    times the integer logits' spread, in quarter powers of 2) with the lowest segmentation loss on the calibration
    labels."""
    outc.weight.copy_(torch.from_numpy(w_int.astype(np.float32))[:, :, None, None])
    outc.bias.copy_(torch.from_numpy(b_int.astype(np.float32)))
    raw = torch.cat([model(x) for x in batches]).double()
    target = torch.from_numpy(np.asarray(labels, np.int64))
    spread = float(raw.std()) or 1.0
    scales = [spread * 2.0 ** (e / 4) for e in range(-16, 17)]
    best = min(scales, key=lambda s: float(segmentation_loss(raw / s, target)))
    outc.weight.div_(best)
    outc.bias.div_(best)

"""The U-Net in PyTorch: full precision, or quantized as MBU-Net (docs/design.md, sections 1 and 2). Needs torch.

Input: float RGB [N, 3, H, W] in [0, 1]. The input conv pads with black (pixel 0) *before* normalising, so that
normalisation folds into integer weights on raw pixels at export. Output: logits [N, classes, H, W].

Quantized layers mix a full-precision path and the quantized one with `quant_mix` m in [0, 1]
(progressive binarisation): weights (1-m)*w + m*alpha*q(w), activations (1-m)*hardtanh(y) + m*sign(y).
At m = 1 the network is exactly the function the bit engines compute (up to float BatchNorm ties):
sign(0) = +1 everywhere, binary activations padded with -1, weights binary {-1,+1} or masked {-1,0,+1} with
delta = mask_delta * mean|w| per layer (0.7 unless the recipe says otherwise), alpha = mean|w| per output
channel (a positive scale that BatchNorm absorbs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .arch import ACTIVATION_GRADS, LEVELS, MASK_DELTA, Architecture
from .errors import ModelFileError
from .modelfile import INPUT_WEIGHT_MAX  # 15-bit input-conv weights: exact int32 sums in every engine


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1, or, given delta, masked sign: 0 where |x| <= delta.

    Backward, "ste": the straight-through gradient clipped to |x| <= 1, for every input, the zeroed ones included (a
    weight the threshold drops can grow back; a gradient gated by the mask would freeze the zero pattern of the
    first quantized step). "approxsign" (Bi-Real Net's ApproxSign): the derivative of the piecewise quadratic
    that approximates sign, 2 - 2|x| on |x| < 1, the same area as "ste" but weighted towards the threshold, where
    a small change flips the bit.
    """

    @staticmethod
    def forward(ctx, x, delta=None, surrogate="ste"):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        s = torch.where(x >= 0, 1.0, -1.0)
        if delta is not None:
            s = torch.where(x.abs() > delta, s, 0.0)
        return s.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.surrogate == "approxsign":
            return grad * (2 - 2 * x.abs()).clamp_min(0), None, None
        return grad * (x.abs() <= 1).to(grad.dtype), None, None


def sign_ste(x: torch.Tensor, surrogate: str = "ste") -> torch.Tensor:
    return _SignSTE.apply(x, None, surrogate)


def quantize_weight(w: torch.Tensor, kind: str, mask_delta: float = MASK_DELTA) -> torch.Tensor:
    """Binary {-1,+1} or masked {-1,0,+1} weights (straight-through), without the alpha scale."""
    if kind == "masked":
        return _SignSTE.apply(w, mask_delta * w.detach().abs().mean())
    return sign_ste(w)


def channel_scale(w: torch.Tensor, out_dim: int) -> torch.Tensor:
    """alpha: mean |w| per output channel, shaped to broadcast against w."""
    dims = [d for d in range(w.dim()) if d != out_dim]
    return w.abs().mean(dim=dims, keepdim=True)


class QuantConv(nn.Module):
    """Binary/masked conv (3x3, -1 padding) or 2x2/s2 transposed conv, then BatchNorm and binary activation."""

    def __init__(self, cin: int, cout: int, kind: str, transposed: bool = False,
                 mask_delta: float = MASK_DELTA) -> None:
        super().__init__()
        self.kind, self.transposed, self.mask_delta = kind, transposed, mask_delta
        shape = (cin, cout, 2, 2) if transposed else (cout, cin, 3, 3)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bn = nn.BatchNorm2d(cout)
        self.quant_mix = 1.0
        self.activation_grad = "ste"

    def effective_weight(self) -> torch.Tensor:
        out_dim = 1 if self.transposed else 0
        w = self.weight
        q = quantize_weight(w, self.kind, self.mask_delta) * channel_scale(w, out_dim)
        return q if self.quant_mix >= 1 else (1 - self.quant_mix) * w + self.quant_mix * q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        if self.transposed:
            z = F.conv_transpose2d(x, w, stride=2)
        else:
            z = F.conv2d(F.pad(x, (1, 1, 1, 1), value=-1.0), w)
        return binary_activation(self.bn(z), self.quant_mix, self.activation_grad)


def binary_activation(y: torch.Tensor, mix: float, surrogate: str = "ste") -> torch.Tensor:
    s = sign_ste(y, surrogate)
    return s if mix >= 1 else (1 - mix) * F.hardtanh(y) + mix * s


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def pixel_domain_weights(w: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """The input conv on raw pixels 0..255: z = sum(u_int / scale * pixel) + k, u_int integers.

    z = sum W*((x/255 - m_c)/s_c) = sum (W/(255 s_c))*x - sum W*m_c/s_c; black padding is pixel 0 in both
    views, so k covers all 27 taps. Returns (u_int [C,3,3,3] float with integer values, scale [C], k [C]).
    """
    u = w / (255.0 * std.view(1, 3, 1, 1))
    k = -(w * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    scale = INPUT_WEIGHT_MAX / u.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-30)
    return _RoundSTE.apply(u * scale.view(-1, 1, 1, 1)), scale, k


class InputConv(nn.Module):
    """3x3 conv on the image: black padding, normalisation, conv, BN, activation.

    Fully quantized (quant mix 1), the conv runs on raw pixels with the 15-bit integer weights the model file
    stores (pixel_domain_weights), so the exported integer network computes this same function.
    """

    def __init__(self, cout: int, arch: Architecture) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(arch.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(arch.std).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, cout, 3, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.quantized = arch.quantized
        self.quant_mix = 1.0
        self.activation_grad = "ste"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), value=0.0)
        if self.quantized and self.quant_mix >= 1:
            u_int, scale, k = pixel_domain_weights(self.conv.weight, self.mean, self.std)
            z = F.conv2d(torch.round(x * 255.0), u_int / scale.view(-1, 1, 1, 1)) + k.view(1, -1, 1, 1)
        else:
            z = self.conv((x - self.mean) / self.std)
        y = self.bn(z)
        return binary_activation(y, self.quant_mix, self.activation_grad) if self.quantized else F.relu(y)


def _fp_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int, kind: str, mask_delta: float) -> nn.Module:
    return _fp_conv(cin, cout) if kind == "fp" else QuantConv(cin, cout, kind, mask_delta=mask_delta)


def _double(cin: int, cout: int, kind: str, mask_delta: float) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kind, mask_delta), _conv(cout, cout, kind, mask_delta))


def _up(cin: int, cout: int, kind: str, mask_delta: float) -> nn.Module:
    if kind == "fp":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return QuantConv(cin, cout, kind, transposed=True, mask_delta=mask_delta)


class UNet(nn.Module):
    """4-level U-Net; module names mirror arch.plan step names (inc.0 ~ "in.0", down[k-1] ~ "down{k}", ...)."""

    def __init__(self, arch: Architecture, mask_delta: float = MASK_DELTA) -> None:
        super().__init__()
        self.arch = arch
        c, d = arch.width, mask_delta
        self.inc = nn.Sequential(InputConv(c, arch), _conv(c, c, "masked" if arch.quantized else "fp", d))
        self.down = nn.ModuleList(_double(c * 2 ** k, c * 2 ** (k + 1), arch.kind_of(f"down-C{k + 1}"), d)
                                  for k in range(LEVELS))
        self.up = nn.ModuleList(_up(c * 2 ** (LEVELS - k), c * 2 ** (LEVELS - k - 1),
                                    arch.kind_of(f"up-CT{k + 1}"), d) for k in range(LEVELS))
        self.up_conv = nn.ModuleList(_double(c * 2 ** (LEVELS - k), c * 2 ** (LEVELS - k - 1),
                                             arch.kind_of(f"up-C{k + 1}"), d) for k in range(LEVELS))
        self.outc = nn.Conv2d(c, arch.classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inc(x)
        skips = [x]
        for down in self.down:
            x = down(F.max_pool2d(x, 2))
            skips.append(x)
        for k, (up, conv) in enumerate(zip(self.up, self.up_conv)):
            x = conv(torch.cat([skips[LEVELS - 1 - k], up(x)], dim=1))
        return self.outc(x)


def fp_unet(model) -> UNet:
    """The full-precision UNet of an FP model file (pipeline.modelfile.ModelFile), float32, on the CPU."""
    net = UNet(model.arch)
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v).float() for k, v in model.arrays.items()},
                                              strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # int counters not exported
    if missing or unexpected:
        raise ModelFileError(f"{model.name}: weights do not fit the architecture "
                             f"(missing: {missing[:3] or 'none'}, unexpected: {unexpected[:3] or 'none'})")
    return net


def set_quant_mix(model: nn.Module, mix: float) -> None:
    """Progressive binarisation: 0 = full-precision path, 1 = the exported binary/masked function."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"quant mix must be in [0, 1], got {mix}")
    for m in model.modules():
        if hasattr(m, "quant_mix"):
            m.quant_mix = float(mix)


def set_activation_grad(model: nn.Module, grad: str) -> None:
    """The surrogate gradient of every binary activation (ACTIVATION_GRADS); the forward function is unchanged."""
    if grad not in ACTIVATION_GRADS:
        raise ValueError(f"activation gradient {grad!r}; valid: {', '.join(ACTIVATION_GRADS)}")
    for m in model.modules():
        if hasattr(m, "activation_grad"):
            m.activation_grad = grad


def zero_fractions(model: UNet) -> dict[str, float]:
    """Fraction of zero weights per masked configurable layer (paper Fig. 3a reports > 80%)."""
    out: dict[str, float] = {}
    for layer, modules in _layer_modules(model).items():
        masked = [m for m in modules if isinstance(m, QuantConv) and m.kind == "masked"]
        if masked:
            with torch.no_grad():
                zeros = sum(int((quantize_weight(m.weight, "masked", m.mask_delta) == 0).sum()) for m in masked)
            out[layer] = zeros / sum(m.weight.numel() for m in masked)
    return out


def step_modules(model: UNet) -> dict[str, nn.Module]:
    """Module computing each weighted step of arch.plan (the exporter's map from torch to the file)."""
    out: dict[str, nn.Module] = {"in.0": model.inc[0], "in.1": model.inc[1], "out": model.outc}
    for k in range(LEVELS):
        out[f"down{k + 1}.0"], out[f"down{k + 1}.1"] = model.down[k]
        out[f"up{k + 1}.ct"] = model.up[k]
        out[f"up{k + 1}.0"], out[f"up{k + 1}.1"] = model.up_conv[k]
    return out


def _layer_modules(model: UNet) -> dict[str, list[nn.Module]]:
    out: dict[str, list[nn.Module]] = {}
    for k in range(LEVELS):
        out[f"down-C{k + 1}"] = list(model.down[k])
        out[f"up-CT{k + 1}"] = [model.up[k]]
        out[f"up-C{k + 1}"] = list(model.up_conv[k])
    return out

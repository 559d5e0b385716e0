"""`torch-fp32` and `torch-fp16`: the same network in PyTorch (cuDNN, channels_last), the baselines.

An FP model file runs as the full-precision UNet. A quantized file runs as a float network computing the same
function as the bit engines: convs with weights pos - neg in {-1, 0, +1}, -1 padding, `>= threshold` in place
of BatchNorm + sign. Integer weights of the input and output convs are divided by 32767 so that fp16 cannot
overflow; fp16 rounding (dots above 2048 are not exact in fp16) can flip bits at near-ties, which is why
`mbunet bench` reports every engine's agreement with `reference` instead of assuming it.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..arch import plan
from ..bits import planes_to_weights
from ..modelfile import ModelFile
from .base import Engine, register_engine

INT_SCALE = 32767.0


def _torch():
    import torch

    return torch


@contextlib.contextmanager
def cudnn_setting(name: str, value: bool):
    """torch.backends.cudnn.<name> = value for the duration, then as it was (so training in the same process keeps
    its own settings)."""
    cudnn = _torch().backends.cudnn
    before = getattr(cudnn, name)
    setattr(cudnn, name, value)
    try:
        yield
    finally:
        setattr(cudnn, name, before)


def ieee_fp32():
    """cuDNN convolutions in true FP32 for the duration: PyTorch lets cuDNN use TF32 by default on Ampere and newer,
    which rounds the pixels and input-conv weights to 10 mantissa bits (an H200 bench saw torch-fp32 agree with the
    reference on 99.76% of pixels at batch 64 that way, and 100% at batch 1 where cuDNN picked a non-TF32 kernel)."""
    return cudnn_setting("allow_tf32", False)


def deployed_network(model: ModelFile):
    """A torch module computing a quantized model file's function in float (see module docstring)."""
    torch = _torch()
    F = torch.nn.functional

    class Deployed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps = plan(model.arch)
            a = model.arrays
            for s in self.steps:
                if s.op == "input":
                    self._param(s.name, a[f"{s.name}.weight"].transpose(0, 3, 1, 2) / INT_SCALE,
                                a[f"{s.name}.threshold"] / INT_SCALE)
                elif s.op in ("conv3x3", "convT2x2"):
                    w = planes_to_weights(a[f"{s.name}.pos"], a[f"{s.name}.neg"], s.cin, s.cin_parts).astype(np.float32)
                    # conv weight [Cout, Cin, k, k]; transposed conv weight [Cin, Cout, k, k]
                    w = w.transpose(3, 0, 1, 2) if s.op == "convT2x2" else w.transpose(0, 3, 1, 2)
                    self._param(s.name, w, a[f"{s.name}.threshold"].astype(np.float64))
                elif s.op == "output":
                    self._param(s.name, a["out.weight"][:, :, None, None] / INT_SCALE, a["out.bias"] / INT_SCALE)

        def _param(self, name: str, weight: np.ndarray, second: np.ndarray) -> None:
            key = name.replace(".", "_")
            self.register_buffer(f"{key}_w", torch.from_numpy(np.ascontiguousarray(weight, np.float32)))
            self.register_buffer(f"{key}_t", torch.from_numpy(np.asarray(second, np.float32)).view(1, -1, 1, 1))

        def forward(self, x):
            t = {"frames": x}
            for s in self.steps:
                key = s.name.replace(".", "_")
                w, thr = (getattr(self, f"{key}_w", None), getattr(self, f"{key}_t", None))
                src = t[s.inputs[0]]
                if s.op == "input":
                    z = F.conv2d(F.pad(src, (1, 1, 1, 1), value=0.0), w)
                elif s.op == "conv3x3":
                    z = F.conv2d(F.pad(src, (1, 1, 1, 1), value=-1.0), w)
                elif s.op == "convT2x2":
                    z = F.conv_transpose2d(src, w, stride=2)
                elif s.op == "pool":
                    t[s.name] = F.max_pool2d(src, 2)
                    continue
                elif s.op == "concat":
                    t[s.name] = torch.cat([t[n] for n in s.inputs], dim=1)
                    continue
                else:
                    return F.conv2d(src, w) + thr
                t[s.name] = torch.where(z >= thr, 1.0, -1.0).to(z.dtype)
            raise AssertionError("plan has no output step")

    return Deployed()


class _TorchEngine(Engine):
    kinds = ("fp", "binary", "mbunet")
    dtype_name = "float32"

    @classmethod
    def _device_reason(cls) -> str | None:
        try:
            _torch()
        except ImportError:
            return "PyTorch is not installed (pip install 'mbunet[torch]')"
        return None

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        return cls._device_reason() or super().unavailable(model)

    def load(self, model: ModelFile) -> None:
        torch = _torch()
        self.model = model
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, self.dtype_name)
        if model.arch.quantized:
            net = deployed_network(model)
            self.scale = 1.0  # the deployed network takes raw 0..255 pixels
        else:
            from ..nn import fp_unet

            net = fp_unet(model)
            self.scale = 1 / 255.0
        self.net = net.eval().to(self.device, self.dtype, memory_format=torch.channels_last)

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        torch = _torch()
        frames = self.check_frames(frames)
        with torch.inference_mode(), self.precision():
            masks, logits = self._run(frames)
        kept = {"out.logits": logits.permute(0, 2, 3, 1).cpu().numpy()} if keep_logits else {}
        return masks.cpu().numpy(), kept

    def _run(self, frames: np.ndarray):
        """(masks, logits) on the device for checked uint8 frames [N, H, W, 3] on the host."""
        return self._infer(_torch().from_numpy(frames).to(self.device))

    def _infer(self, pixels):
        """uint8 pixels [N, H, W, 3] on the device -> (uint8 masks [N, H, W], float32 logits [N, classes, H, W])."""
        torch = _torch()
        x = pixels.permute(0, 3, 1, 2).to(self.dtype) * self.scale
        logits = self.net(x.contiguous(memory_format=torch.channels_last)).float()
        if logits.shape[1] == 1:
            return (logits[:, 0] >= 0).to(torch.uint8), logits
        return logits.argmax(dim=1).to(torch.uint8), logits

    def precision(self):
        """The numeric mode the network runs in (the dtype says the rest)."""
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            _torch().cuda.synchronize()

    def close(self) -> None:
        """Give the cached device memory back, so that the next engine of a bench has the whole GPU."""
        if self.device.type == "cuda":
            self.net = None
            _torch().cuda.empty_cache()


@register_engine
class TorchFP32(_TorchEngine):
    name = "torch-fp32"
    priority = 5
    dtype_name = "float32"

    def precision(self):
        return ieee_fp32()


@register_engine
class TorchFP16(_TorchEngine):
    name = "torch-fp16"
    priority = 10
    dtype_name = "float16"

    @classmethod
    def _device_reason(cls) -> str | None:
        why = super()._device_reason()
        if why is None and not _torch().cuda.is_available():
            why = "fp16 baseline runs on CUDA only, and PyTorch sees no CUDA device here"
        return why

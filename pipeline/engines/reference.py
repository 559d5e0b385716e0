"""`reference`: the integer maths of docs/design.md, section 4, in plain numpy. Slow; the golden answer.

Both dot-product forms are implemented and selectable (`form="and"` or `"xor"`), so tests can prove they agree:
  AND: dot = 2*popc(a & pos) - 2*popc(a & neg) - (popc(pos) - popc(neg))
  XOR: dot = popc(a ^ neg) - popc(a ^ pos)
Derivation, per bit (a in {0,1} encodes -1/+1, weight b = pos - neg, and x^y = x + y - 2xy):
  AND: (2a-1)(pos-neg) = 2(a&pos) - 2(a&neg) - (pos - neg)
  XOR: (a^neg) - (a^pos) = (a + neg - 2a*neg) - (a + pos - 2a*pos) = (2a-1)(pos-neg)
Channel padding (pos = neg = 0) contributes 0 to both.
Spatial padding is the word 0 (all -1), used as-is by both forms.
"""
from __future__ import annotations

import numpy as np

from ..arch import plan
from ..bits import pack_bits, unpack_signs
from ..modelfile import ModelFile
from .base import Engine, register_engine
from .program import execute

_CHUNK = 1 << 22  # elements of the broadcast popcount temporary, bounds memory on big layers


def _popc_sum(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int32)


def _dot(windows: np.ndarray, pos: np.ndarray, neg: np.ndarray, form: str) -> np.ndarray:
    """windows [..., Cw] uint32 x planes [Cout, Cw] -> int32 [..., Cout] (one tap)."""
    a = windows[..., None, :]
    if form == "and":
        const = _popc_sum(pos) - _popc_sum(neg)
        return 2 * _popc_sum(a & pos) - 2 * _popc_sum(a & neg) - const
    if form == "xor":
        return _popc_sum(a ^ neg) - _popc_sum(a ^ pos)
    raise ValueError(f"form must be 'and' or 'xor', got {form!r}")


def _cout_blocks(pixels: int, cout: int, cw: int):
    step = max(1, _CHUNK // max(1, pixels * cw))
    for start in range(0, cout, step):
        yield slice(start, min(cout, start + step))


class ReferenceKernels:
    """Kernel set of numpy functions (see program.py for the interface)."""

    def __init__(self, form: str = "and") -> None:
        self.form = form

    def input_conv(self, frames: np.ndarray, weight: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        n, h, w, _ = frames.shape
        x = np.zeros((n, h + 2, w + 2, 3), np.int64)  # black padding: pixel value 0
        x[:, 1:-1, 1:-1] = frames
        patches = np.stack([x[:, kh:kh + h, kw:kw + w] for kh in range(3) for kw in range(3)], axis=3)
        z = np.tensordot(patches.reshape(n, h, w, 27), weight.reshape(weight.shape[0], 27).T.astype(np.int64), 1)
        return pack_bits(z >= threshold)

    def conv3x3_dots(self, x: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """int32 dot products [N, H, W, Cout] of a 3x3 conv with -1 (bit 0) spatial padding."""
        n, h, w, cw = x.shape
        cout = pos.shape[0]
        xp = np.zeros((n, h + 2, w + 2, cw), np.uint32)
        xp[:, 1:-1, 1:-1] = x
        dot = np.zeros((n, h, w, cout), np.int32)
        for block in _cout_blocks(n * h * w, cout, cw):
            for kh in range(3):
                for kw in range(3):
                    win = xp[:, kh:kh + h, kw:kw + w]
                    dot[..., block] += _dot(win, pos[block, kh, kw], neg[block, kh, kw], self.form)
        return dot

    def conv3x3(self, x: np.ndarray, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray,
                cout: int) -> np.ndarray:
        return pack_bits(self.conv3x3_dots(x, pos, neg) >= threshold)

    def pool(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0::2, 0::2] | x[:, 0::2, 1::2] | x[:, 1::2, 0::2] | x[:, 1::2, 1::2]

    def conv_t2x2_dots(self, x: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """int32 dots [N, 2H, 2W, Cout]: input pixel (y, x) with taps (i, j) lands at (2y+i, 2x+j)."""
        n, h, w, _ = x.shape
        dot = np.zeros((n, 2 * h, 2 * w, pos.shape[0]), np.int32)
        for i in range(2):
            for j in range(2):
                dot[:, i::2, j::2] = _dot(x, pos[:, i, j], neg[:, i, j], self.form)
        return dot

    def conv_t2x2(self, x: np.ndarray, pos: np.ndarray, neg: np.ndarray, threshold: np.ndarray,
                  cout: int) -> np.ndarray:
        return pack_bits(self.conv_t2x2_dots(x, pos, neg) >= threshold)

    def concat(self, skip: np.ndarray, up: np.ndarray) -> np.ndarray:
        return np.concatenate([skip, up], axis=-1)

    def output(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        signs = unpack_signs(x, weight.shape[1]).astype(np.int32)
        logits = np.tensordot(signs, weight.T.astype(np.int32), 1).astype(np.int32) + bias
        return logits, class_mask(logits)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return array


def class_mask(logits: np.ndarray) -> np.ndarray:
    """Integer logits [..., classes] -> uint8 mask: logit >= 0 for one class, else first argmax."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] >= 0).astype(np.uint8)
    return np.argmax(logits, axis=-1).astype(np.uint8)


@register_engine
class ReferenceEngine(Engine):
    name = "reference"
    priority = 0

    def __init__(self, form: str = "and") -> None:
        super().__init__()
        self.kernels = ReferenceKernels(form)

    def load(self, model: ModelFile) -> None:
        self.model = model
        self.steps = plan(model.arch)

    def run_layers(self, frames: np.ndarray, wrap) -> tuple[list, str | None]:
        execute(self.steps, self.model.arrays, self.check_frames(frames), wrap(self.kernels))
        return self.steps, None

    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frames = self.check_frames(frames)
        masks, logits, kept = execute(self.steps, self.model.arrays, frames, self.kernels, keep_bits)
        if keep_logits:
            kept["out.logits"] = logits
        return masks, kept

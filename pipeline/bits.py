"""Bit layout shared by every engine (docs/design.md, section 3), as pure numpy functions.

Activations: NHWC, channel c -> word c // 32, bit c % 32 (little-endian), uint32 words; bit 1 means +1.
Bits above the real channel count are always 0, so two engines' packed tensors can be compared word for word.
Weights: two planes `pos`, `neg` of shape [Cout][kh][kw][Cin_words]; value = pos - neg.
"""
from __future__ import annotations

import numpy as np

from .arch import words

# Thresholds of a channel whose output is constant (BatchNorm gamma == 0, or no weights left): every dot product
# is above ALWAYS_ON and below ALWAYS_OFF, so the comparison dot >= threshold gives +1 or -1 whatever the input.
ALWAYS_ON = -(1 << 30)
ALWAYS_OFF = 1 << 30


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack the last axis of a ±1 (or >=0 means +1) array into uint32 words, bit 1 = +1."""
    bits = (np.asarray(x) >= 0)
    return pack_bits(bits)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean last axis into little-endian uint32 words (zero-padded to whole words)."""
    bits = np.asarray(bits, dtype=bool)
    c = bits.shape[-1]
    nw = words(c)
    padded = np.zeros(bits.shape[:-1] + (nw * 32,), dtype=np.uint8)
    padded[..., :c] = bits
    as_bytes = np.packbits(padded.reshape(bits.shape[:-1] + (nw, 4, 8)), axis=-1, bitorder="little")
    return as_bytes.reshape(bits.shape[:-1] + (nw, 4)).view("<u4").reshape(bits.shape[:-1] + (nw,)).astype(np.uint32)


def unpack_bits(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of pack_bits: uint32 words -> boolean array with `channels` entries on the last axis."""
    packed = np.ascontiguousarray(packed, dtype="<u4")
    as_bytes = packed.view(np.uint8).reshape(packed.shape[:-1] + (packed.shape[-1] * 4,))
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")
    return bits[..., :channels].astype(bool)


def unpack_signs(packed: np.ndarray, channels: int) -> np.ndarray:
    """Packed bits -> int8 array of ±1."""
    return np.where(unpack_bits(packed, channels), 1, -1).astype(np.int8)


def weight_planes(w: np.ndarray, cin_parts: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Ternary weights [Cout][kh][kw][Cin] in {-1,0,+1} -> (pos, neg) packed planes.

    With `cin_parts`, the input channels are a concat of parts, each padded to whole words.
    """
    w = np.asarray(w)
    if cin_parts:
        parts, start = [], 0
        for c in cin_parts:
            parts.append(weight_planes(w[..., start:start + c]))
            start += c
        return (np.concatenate([p for p, _ in parts], axis=-1), np.concatenate([n for _, n in parts], axis=-1))
    return pack_bits(w > 0), pack_bits(w < 0)


def is_binary(pos: np.ndarray, neg: np.ndarray, cin: int, cin_parts: tuple[int, ...] = ()) -> bool:
    """True when every weight is ±1 on every valid input bit (neg == ~pos there). Kernels then need only `pos`:
    a weight that is 0 on some channel everywhere is *not* binary, because its activation bits would still count."""
    valid = weight_planes(np.ones((1, 1, 1, cin), np.int8), cin_parts)[0][0, 0, 0]
    return not np.any(pos & neg) and bool(np.all((pos | neg) == valid))


def sign_and_nonzero(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The planes of the one-popcount masked form, dot = popc(nonzero) - 2 popc((a ^ sign) & nonzero): where the
    weight b = pos - neg is not 0, activation x weight is +1 exactly when the activation bit equals the sign bit.
    pos & ~neg and pos ^ neg keep b exact even where a file sets both bits (b = 0)."""
    return pos & ~neg, pos ^ neg


def planes_to_weights(pos: np.ndarray, neg: np.ndarray, cin: int, cin_parts: tuple[int, ...] = ()) -> np.ndarray:
    """Inverse of weight_planes: int8 {-1,0,+1} weights [..., cin] in logical channel order."""
    out, word = [], 0
    for c in cin_parts or (cin,):
        sl = slice(word, word + words(c))
        out.append(unpack_bits(pos[..., sl], c).astype(np.int8) - unpack_bits(neg[..., sl], c).astype(np.int8))
        word += words(c)
    return np.concatenate(out, axis=-1)

"""Frame <-> model-input geometry as pure functions (arrays in, arrays out; no I/O).

The engines take uint8 RGB frames at the model's input size: the bit engines fold the normalisation into their
first layer, and the torch engines normalise with the card's mean/std themselves, so preprocessing here is only
geometry and channel order. `fit="resize"` stretches the frame; `fit="letterbox"` keeps its aspect ratio and pads
with black. `scores_to_frame` undoes either, so masks line up with the original frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FITS = ("letterbox", "resize")


@dataclass(frozen=True)
class Geometry:
    """Where the frame's content lies in the model input: rows y0:y1, columns x0:x1 of an `input_size` canvas."""

    frame_size: tuple[int, int]   # (height, width) of the source frame
    input_size: tuple[int, int]   # (height, width) of the model input
    y0: int
    y1: int
    x0: int
    x1: int


def geometry(frame_size: tuple[int, int], input_size: tuple[int, int], fit: str = "letterbox") -> Geometry:
    """The placement of a frame of `frame_size` in the model input."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    fh, fw = frame_size
    ih, iw = input_size
    if fit == "resize":
        return Geometry(frame_size, input_size, 0, ih, 0, iw)
    scale = min(ih / fh, iw / fw)
    h, w = max(1, round(fh * scale)), max(1, round(fw * scale))
    y0, x0 = (ih - h) // 2, (iw - w) // 2
    return Geometry(frame_size, input_size, y0, y0 + h, x0, x0 + w)


def to_model_input(frame_bgr: np.ndarray, geo: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """BGR frame -> RGB uint8 [H, W, 3] at the model input size, written into `out` when given (no extra copy)."""
    import cv2

    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 BGR frame [H, W, 3], got {frame_bgr.dtype}{list(frame_bgr.shape)}")
    ih, iw = geo.input_size
    if out is None:
        out = np.empty((ih, iw, 3), np.uint8)
    h, w = geo.y1 - geo.y0, geo.x1 - geo.x0
    if (h, w) == (ih, iw):
        cv2.cvtColor(resize_frame(frame_bgr, (h, w)), cv2.COLOR_BGR2RGB, dst=out)
        return out
    out[:geo.y0] = 0
    out[geo.y1:] = 0
    out[:, :geo.x0] = 0
    out[:, geo.x1:] = 0
    out[geo.y0:geo.y1, geo.x0:geo.x1] = cv2.cvtColor(resize_frame(frame_bgr, (h, w)), cv2.COLOR_BGR2RGB)
    return out


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (height, width): bilinear when the height grows, else area (anti-aliased).

    OpenCV's INTER_AREA is fast only for whole factors (a 2x2 box average) and slow otherwise: on the 2-core
    development VM 1.2-1.7 ms for the bundled clip's 640x272 -> 192x82 and 13.8 ms for a 720p camera frame ->
    192x108, most of the pipeline's preprocess stage. So while the frame is at least twice the target in both axes
    (and of even size) it is halved on the whole-factor path, then area-resized the rest of the way: 0.34 ms and
    1.24 ms there, pixels within about one grey level of the one-step resize on average (max 15).
    """
    import cv2

    h, w = size
    if h >= image.shape[0]:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    while (image.shape[0] >= 2 * h and image.shape[1] >= 2 * w
           and image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0):
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def scores_to_frame(scores: np.ndarray, geo: Geometry) -> np.ndarray:
    """Model-size output scores [H, W, classes] -> frame-size uint8 class mask: crop the letterbox, enlarge the
    scores bilinearly, then decide per frame pixel (score >= 0 for one class, the first argmax otherwise).

    Deciding after the enlargement gives edges that follow the score's zero crossing between model pixels, where
    an enlarged class mask has a staircase of model-pixel blocks (8x8 frame pixels at 1080p for a 192x144 model).
    Every engine's scores go through here: the bit engines' integer logits are equal, so are their frame masks.
    """
    import cv2

    if scores.ndim != 3 or scores.shape[:2] != geo.input_size:
        raise ValueError(f"expected scores [{geo.input_size[0]}, {geo.input_size[1]}, classes], "
                         f"got {list(scores.shape)}")
    inner = scores[geo.y0:geo.y1, geo.x0:geo.x1].astype(np.float32)
    fh, fw = geo.frame_size
    if inner.shape[:2] != (fh, fw):
        classes = inner.shape[2]
        inner = cv2.resize(inner, (fw, fh), interpolation=cv2.INTER_LINEAR)
        inner = inner.reshape(fh, fw, classes)  # cv2 drops a single channel's axis
    if inner.shape[2] == 1:
        return (inner[..., 0] >= 0).astype(np.uint8)
    return np.argmax(inner, axis=-1).astype(np.uint8)


def to_bgr8(image: np.ndarray) -> np.ndarray | None:
    """Any decoded frame as BGR uint8 [H, W, 3]: gray and BGRA get colour channels, 16-bit keeps its top 8 bits.
    None for what is not an image (empty, another depth or channel count): the caller counts it as corrupt."""
    import cv2

    if image is None or image.size == 0 or image.dtype not in (np.uint8, np.uint16):
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image if image.ndim == 3 and image.shape[2] == 3 else None


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` fitted into `size` (height, width) with its aspect ratio kept, on black (a video file has one
    frame size, and a stream can change its own mid-run)."""
    geo = geometry(image.shape[:2], size)
    out = np.zeros((*size, *image.shape[2:]), image.dtype)
    out[geo.y0:geo.y1, geo.x0:geo.x1] = resize_frame(image, (geo.y1 - geo.y0, geo.x1 - geo.x0))
    return out

"""Composite training samples: RGBA cut-outs pasted onto random crops of real video frames.

A sample is 1..k cut-outs (random scale, rotation, flip, colour jitter, blur, some partly off the edge, some
partly hidden by an occluder) pasted onto a random crop of a background frame; the mask is the union of the
pasted alphas (alpha > 127 = foreground) minus what an occluder covers. Sample `i` of a set depends only on
(seed, i), so a validation set is fixed and a resumed training run sees the same stream it would have seen.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class CompositeRecipe:
    """How samples are drawn. Fractions are of the output's shorter side unless said otherwise."""

    size: tuple[int, int] = (144, 192)          # (height, width) of a sample
    max_objects: int = 3
    scale: tuple[float, float] = (0.3, 0.95)    # object's longer side / output's shorter side
    max_rotation: float = 30.0                  # degrees, uniform in [-r, r]
    flip_p: float = 0.5
    jitter: float = 0.25                        # brightness / contrast / saturation / channel-gain strength
    blur_p: float = 0.25                        # per object, and separately for the background
    occlusion_p: float = 0.3                    # per sample: one occluder over part of one object
    off_edge_p: float = 0.25                    # per object: centre anywhere, so part may leave the frame
    crop: tuple[float, float] = (0.35, 1.0)     # background crop side / largest crop of the output's aspect
    empty_p: float = 0.0                        # per training sample: no object at all, a bare background with
    #                                             an empty mask (real video has frames without any object)
    degrade_p: float = 0.0                      # per sample: the background (not the objects) is made to look like
    #                                             compressed video: downscaled and enlarged, JPEG-coded, noised
    mosaic_p: float = 0.0                       # per sample: the background is 2-4 crops of different frames, so
    #                                             no single scene fills the picture
    recolour_p: float = 0.0                     # per sample: the background's hue turned and its saturation scaled
    #                                             (the objects keep theirs), so colour alone cannot mark an object
    source_balance: float = 0.0                 # how backgrounds are drawn: a frame's weight is (frames of its
    #                                             source) ** -source_balance: 0 every frame alike, 1 every source
    #                                             alike (a package of 176 pictures then weighs what a clip of 20 does)
    draw_size: tuple[int, ...] = ()             # (height, width) to draw at, then shrunk to `size` the way `run`
    #                                             shrinks a camera frame; () draws at `size`

    @property
    def canvas(self) -> tuple[int, int]:
        """The size a sample is drawn at (objects placed, scaled and blurred in its pixels)."""
        return tuple(self.draw_size) if self.draw_size else tuple(self.size)


# The options that change only training samples' backgrounds, with how a run's description names them; validation
# draws with all of them off (judged on plain composites, every image with objects).
BACKGROUND_OPTIONS = {"empty_p": "bare backgrounds", "degrade_p": "video-look backgrounds",
                      "mosaic_p": "mosaic backgrounds", "recolour_p": "recoloured backgrounds"}


def _imread(path: Path, flags: int) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), flags)
    if img is None:
        raise DataError(f"{path}: not a readable image")
    return img


def _files(folder: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{folder}: no {'/'.join(suffixes)} files")
    return files


def _limit(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    s = max_side / max(img.shape[:2])
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                      interpolation=cv2.INTER_AREA)


def load_stamps(folder: str | Path, max_side: int = 384) -> list[np.ndarray]:
    """RGBA cut-outs (RGB order), shrunk to at most `max_side` pixels."""
    import cv2

    stamps = []
    for path in _files(folder, (".png",)):
        img = _imread(path, cv2.IMREAD_UNCHANGED)
        if img.ndim != 3 or img.shape[2] != 4:
            raise DataError(f"{path}: a cut-out must be RGBA (alpha = mask), found shape {list(img.shape)}")
        if not (img[..., 3] > 127).any():
            raise DataError(f"{path}: the alpha channel has no foreground (no value > 127)")
        stamps.append(_limit(cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA), max_side))
    return stamps


def background_files(folder: str | Path) -> list[Path]:
    return _files(folder, IMAGE_SUFFIXES)


def source_of(path: str | Path) -> str:
    """The source a background came from, by the naming convention `<source>_<name>.jpg` (a clip or a package):
    the unit that a split by source keeps whole."""
    return Path(path).stem.split("_")[0]


def heldout_sources(train: str | Path, val: str | Path) -> list[str]:
    """Sources with frames in `val` and none in `train`: whole scenes a model trained on `train` never saw."""
    seen = {source_of(p) for p in background_files(train)}
    return sorted({source_of(p) for p in background_files(val)} - seen)


def load_backgrounds(files: str | Path | list[Path], max_side: int = 480) -> list[np.ndarray]:
    """RGB background frames (a folder, or a list of files), shrunk to at most `max_side` pixels."""
    import cv2

    paths = background_files(files) if isinstance(files, (str, Path)) else files
    return [_limit(cv2.cvtColor(_imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), max_side) for p in paths]


class CompositeGenerator:
    """Draws (image uint8 [H, W, 3] RGB, mask uint8 [H, W] in {0, 1}) samples."""

    def __init__(self, stamps: list[np.ndarray], backgrounds: list[np.ndarray], recipe: CompositeRecipe,
                 sources: list[str] | None = None) -> None:
        """`sources`: each background's source (see source_of), needed when the recipe balances sources."""
        if not stamps or not backgrounds:
            raise DataError("a composite set needs at least one cut-out and one background")
        if recipe.max_objects < 1:
            raise DataError(f"max_objects must be >= 1, found {recipe.max_objects}")
        if not 0 <= recipe.empty_p <= 1:
            raise DataError(f"empty_p must be in [0, 1], found {recipe.empty_p}")
        if not 0 <= recipe.source_balance <= 1:
            raise DataError(f"source_balance must be in [0, 1], found {recipe.source_balance}")
        if recipe.draw_size and (len(recipe.draw_size) != 2 or recipe.draw_size[0] < recipe.size[0]
                                 or recipe.draw_size[1] < recipe.size[1]):
            raise DataError(f"draw_size {list(recipe.draw_size)}: expected [height, width], at least the sample "
                            f"size {list(recipe.size)}")
        if recipe.source_balance and (sources is None or len(sources) != len(backgrounds)):
            raise DataError("source_balance needs the source of every background")
        self.stamps, self.backgrounds, self.recipe = stamps, backgrounds, recipe
        self._background_p = _source_weights(sources, recipe.source_balance) if recipe.source_balance else None

    @classmethod
    def from_folders(cls, stamps: str | Path, backgrounds: str | Path | list[Path],
                     recipe: CompositeRecipe) -> "CompositeGenerator":
        """`backgrounds`: a folder, or a list of background files (one source, say)."""
        side = max(recipe.canvas)
        files = background_files(backgrounds) if isinstance(backgrounds, (str, Path)) else backgrounds
        return cls(load_stamps(stamps, max(256, 2 * side)), load_backgrounds(files, max(480, 3 * side)), recipe,
                   [source_of(p) for p in files])

    def item(self, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index` of the set named by `seed` (independent of any other sample)."""
        return self.sample(np.random.default_rng([seed, index]))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r = self.recipe
        image = self._background(rng).astype(np.float32)
        mask = np.zeros(r.canvas, dtype=bool)
        boxes = []
        # empty_p is drawn only when set, so the samples of a recipe without it stay what they always were
        empty = r.empty_p > 0 and rng.random() < r.empty_p
        for _ in range(0 if empty else int(rng.integers(1, r.max_objects + 1))):
            rgba = self._object(rng)
            boxes.append(_paste(image, mask, rgba, self._place(rng, rgba.shape[:2])))
        if boxes and rng.random() < r.occlusion_p:
            self._occlude(rng, image, mask, boxes[int(rng.integers(len(boxes)))])
        image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        if r.draw_size:
            image, mask = _shrink(image, mask, r.size)
        return image, mask.astype(np.uint8)

    def _crop(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """A random crop of a random background with the aspect of `size`, resized to `size` (float RGB)."""
        import cv2

        # the weighted draw only when balancing, so the samples of a recipe without it stay what they always were
        pick = rng.choice(len(self.backgrounds), p=self._background_p) if self._background_p is not None \
            else rng.integers(len(self.backgrounds))
        frame = self.backgrounds[int(pick)]
        h, w = size
        fit = min(frame.shape[0] / h, frame.shape[1] / w)  # largest crop of this aspect is (h, w) * fit
        s = fit * rng.uniform(*self.recipe.crop)
        ch, cw = max(1, int(h * s)), max(1, int(w * s))
        y, x = int(rng.integers(frame.shape[0] - ch + 1)), int(rng.integers(frame.shape[1] - cw + 1))
        out = cv2.resize(frame[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < self.recipe.flip_p:
            out = out[:, ::-1]
        return _jitter(out.astype(np.float32), rng, self.recipe.jitter)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        import cv2

        r = self.recipe
        # the new options draw from the stream only when set, so older recipes keep their exact samples
        if r.mosaic_p > 0 and rng.random() < r.mosaic_p:
            out = self._mosaic(rng)
        else:
            out = self._crop(rng, r.canvas)
        if rng.random() < r.blur_p:  # defocused background: the object stays sharp
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 2.0))
        if r.degrade_p > 0 and rng.random() < r.degrade_p:
            out = _video_look(out, rng)
        if r.recolour_p > 0 and rng.random() < r.recolour_p:
            out = _recolour(out, rng)
        return out

    def _mosaic(self, rng: np.random.Generator) -> np.ndarray:
        """Crops of 2-4 frames side by side: a vertical and/or horizontal cut at a random place."""
        H, W = self.recipe.canvas
        out = np.empty((H, W, 3), np.float32)
        ys = [0, int(rng.integers(H // 4, 3 * H // 4 + 1)), H] if rng.random() < 0.5 else [0, H]
        xs = [0, int(rng.integers(W // 4, 3 * W // 4 + 1)), W] if len(ys) == 2 or rng.random() < 0.5 else [0, W]
        for y0, y1 in zip(ys, ys[1:]):
            for x0, x1 in zip(xs, xs[1:]):
                out[y0:y1, x0:x1] = self._crop(rng, (y1 - y0, x1 - x0))
        return out

    def _object(self, rng: np.random.Generator) -> np.ndarray:
        """One cut-out, scaled, colour-jittered, flipped, rotated and maybe blurred.

        Returned as float RGBA with *premultiplied* colour (alpha 0..255): resampling premultiplied values
        keeps the colour of transparent pixels from bleeding into the object's edge as a dark fringe.
        """
        import cv2

        r = self.recipe
        stamp = self.stamps[int(rng.integers(len(self.stamps)))]
        s = rng.uniform(*r.scale) * min(r.canvas) / max(stamp.shape[:2])
        h, w = max(2, round(stamp.shape[0] * s)), max(2, round(stamp.shape[1] * s))
        obj = cv2.resize(_premultiply(stamp.astype(np.float32)), (w, h),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        alpha = obj[..., 3:4] / 255.0
        colour = _jitter(obj[..., :3] / np.maximum(alpha, 1e-6), rng, r.jitter)
        obj[..., :3] = colour * alpha
        if rng.random() < r.flip_p:
            obj = obj[:, ::-1]
        obj = _rotate(np.ascontiguousarray(obj), rng.uniform(-r.max_rotation, r.max_rotation))
        if rng.random() < r.blur_p:
            obj = cv2.GaussianBlur(obj, (0, 0), rng.uniform(0.5, 1.5))
        return obj

    def _place(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner: fully inside when it fits, or anywhere with the centre in the frame (off-edge)."""
        (H, W), (h, w) = self.recipe.canvas, shape
        if rng.random() < self.recipe.off_edge_p or h > H or w > W:
            return int(rng.integers(-(h // 2), H - h // 2)), int(rng.integers(-(w // 2), W - w // 2))
        return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))

    def _occlude(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
                 box: tuple[int, int, int, int]) -> None:
        """Cover part of one object with an ellipse of background texture; the covered pixels leave the mask."""
        import cv2

        y0, x0, y1, x1 = box
        if y1 - y0 < 4 or x1 - x0 < 4:
            return
        cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
        ay, ax = rng.uniform(0.15, 0.4) * (y1 - y0), rng.uniform(0.15, 0.4) * (x1 - x0)
        cover = np.zeros(mask.shape, np.uint8)
        cv2.ellipse(cover, (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        hide = cover.astype(bool)
        image[hide] = self._crop(rng, self.recipe.canvas)[hide]
        mask[hide] = False


def _shrink(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A sample drawn large, shrunk to `size`: the image as `run` shrinks a frame, the (bool) mask by area share
    (foreground where at least half of the target pixel is).

    A composite drawn at model size has its objects' edges, blur and the video look's noise in model pixels; a
    camera frame (and `mbunet eval`'s 480x360 composites) is shrunk to the model first, which softens all three.
    """
    import cv2

    from ..preprocess import resize_frame

    h, w = size
    share = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return resize_frame(image, size), share >= 0.5


def _source_weights(sources: list[str], balance: float) -> np.ndarray:
    """Draw probabilities of the backgrounds: each frame weighs (frames of its source) ** -balance."""
    counts = Counter(sources)
    w = np.array([counts[s] ** -balance for s in sources], dtype=np.float64)
    return w / w.sum()


def draw_batch(source, seed: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples start..start+n-1 of any source with `item(seed, index)`: images [n, H, W, 3], masks [n, H, W]."""
    pairs = [source.item(seed, i) for i in range(start, start + n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, saturation and per-channel gain, each by up to `strength` (float RGB 0..255)."""
    if strength <= 0:
        return rgb
    u = rng.uniform(-strength, strength, size=6)
    gray = rgb.mean(axis=-1, keepdims=True)
    out = gray + (rgb - gray) * (1 + u[0])                     # saturation
    out = (out - out.mean()) * (1 + u[1]) + out.mean()         # contrast
    out = out * (1 + u[2]) * (1 + 0.3 * u[3:6])                # brightness, white balance
    return np.clip(out, 0, 255)


def _video_look(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a sharp still look like a frame of compressed video: lose resolution (down, then up again), code it as a
    low-quality JPEG (block and ringing artefacts) and add sensor noise. Applied to the background only, so a model
    cannot tell background from object by the still photo's sharpness, which unseen video frames lack."""
    import cv2

    h, w = rgb.shape[:2]
    s = rng.uniform(0.4, 0.9)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, code = cv2.imencode(".jpg", np.clip(out + 0.5, 0, 255).astype(np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 75))])
    out = cv2.imdecode(code, cv2.IMREAD_UNCHANGED).astype(np.float32)
    out += rng.normal(0.0, rng.uniform(0.0, 5.0), out.shape).astype(np.float32)
    return np.clip(out, 0, 255)


def _recolour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn the hue by a random angle and scale the saturation by 0.4-1.8: models trained on composites learn that
    saturated warm colours are objects and paint such walls and floors; a background of any colour unlearns it."""
    import cv2

    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(0.0, 360.0)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.4, 1.8), 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def _premultiply(rgba: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    out[..., :3] *= rgba[..., 3:4] / 255.0
    return out


def _rotate(rgba: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre onto a canvas large enough for the whole object (transparent corners)."""
    import cv2

    h, w = rgba.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * s + w * c)), int(np.ceil(h * c + w * s))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(rgba, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0, 0))


def _paste(image: np.ndarray, mask: np.ndarray, rgba: np.ndarray, at: tuple[int, int]) -> tuple[int, int, int, int]:
    """Blend premultiplied `rgba` onto `image` at top-left `at` (clipped to the frame); returns the visible box."""
    H, W = mask.shape
    y, x = at
    y0, x0, y1, x1 = max(0, y), max(0, x), min(H, y + rgba.shape[0]), min(W, x + rgba.shape[1])
    if y1 <= y0 or x1 <= x0:
        return y0, x0, y0, x0
    part = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
    a = part[..., 3:4] / 255.0
    image[y0:y1, x0:x1] = part[..., :3] + (1 - a) * image[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] |= part[..., 3] > 127
    return y0, x0, y1, x1

"""Image + mask folders: pairs share a file stem; a mask is a PNG of 0/255 (or 0/1) or of class indices."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .composite import IMAGE_SUFFIXES


@dataclass(frozen=True)
class FolderPair:
    stem: str
    image: Path
    mask: Path


def pair_folders(images: str | Path, masks: str | Path) -> list[FolderPair]:
    """Every image with its mask (same stem, mask .png); a missing mask or folder is an error."""
    images, masks = Path(images), Path(masks)
    for folder, what in ((images, "images"), (masks, "masks")):
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder}: no such folder")
    found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DataError(f"images folder {images}: no {'/'.join(IMAGE_SUFFIXES)} files")
    stems = [p.stem for p in found]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise DataError(f"images folder {images}: several images share the stem {dup[0]!r}")
    pairs = [FolderPair(p.stem, p, masks / f"{p.stem}.png") for p in found]
    missing = [p.mask.name for p in pairs if not p.mask.is_file()]
    if missing:
        raise DataError(f"masks folder {masks}: {len(missing)} of {len(pairs)} images have no mask "
                        f"(expected {missing[0]}{' ...' if len(missing) > 1 else ''})")
    return pairs


def read_pair(pair: FolderPair, classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 [H, W, 3], labels uint8 [H, W]); the mask must have the image's size."""
    import cv2

    image = read_image(pair)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), read_mask(pair, image.shape[:2], classes)


def read_image(pair: FolderPair) -> np.ndarray:
    """The pair's image as BGR uint8 [H, W, 3] (OpenCV's order)."""
    import cv2

    image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{pair.image}: not a readable image")
    return image


def read_mask(pair: FolderPair, size: tuple[int, int], classes: int = 1) -> np.ndarray:
    """The pair's labels uint8 [H, W]; `size` (H, W) is its image's, which the mask must match."""
    import cv2

    mask = cv2.imread(str(pair.mask), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"{pair.mask}: not a readable mask")
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != tuple(size):
        raise DataError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                        f"its image is {size[1]}x{size[0]} (WxH); they must match")
    return mask_labels(mask, classes, pair.mask)


def mask_labels(mask: np.ndarray, classes: int, where: object = "mask") -> np.ndarray:
    """Raw mask values -> class labels: binary masks are 0 vs anything else; 0/255 means 0/1 for any classes."""
    if classes == 1:
        return (mask > 0).astype(np.uint8)
    values = np.unique(mask)
    if set(values.tolist()) <= {0, 255}:
        return (mask > 0).astype(np.uint8)
    if values.max() >= classes:
        raise DataError(f"{where}: class index {int(values.max())} found, the model has {classes} classes "
                        f"(expected 0..{classes - 1})")
    return mask.astype(np.uint8)


def write_folder(out: str | Path, images: np.ndarray, masks: np.ndarray, prefix: str = "val") -> Path:
    """Write RGB images [N, H, W, 3] and label masks [N, H, W] as out/images/*.png and out/masks/*.png.

    Images are PNG (lossless), so evaluating the folder sees exactly the pixels of the in-memory set;
    binary masks are written 0/255 so that they are visible in an image viewer.
    """
    import cv2

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    scale = 255 if masks.max(initial=0) <= 1 else 1
    for i, (img, m) in enumerate(zip(images, masks)):
        name = f"{prefix}_{i:04d}.png"
        if not (cv2.imwrite(str(out / "images" / name), img[..., ::-1])
                and cv2.imwrite(str(out / "masks" / name), (m * scale).astype(np.uint8))):
            raise DataError(f"{out}: cannot write {name}")
    return out


class FolderSamples:
    """Image/mask pairs (see pair_folders) as a sample source with the CompositeGenerator interface (`item`).

    Images are resized to the training size (area), masks with nearest neighbour; training draws a random
    pair and a random horizontal flip from (seed, index), so the stream is reproducible like composites.
    """

    def __init__(self, pairs: list[FolderPair], size: tuple[int, int], classes: int = 1) -> None:
        import cv2

        h, w = size
        self.images, self.masks = [], []
        for pair in pairs:
            img, lab = read_pair(pair, classes)
            self.images.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
            self.masks.append(cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST))

    def __len__(self) -> int:
        return len(self.images)

    def item(self, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, index])
        k = int(rng.integers(len(self.images)))
        img, lab = self.images[k], self.masks[k]
        if rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)

    def fixed(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole folder in order, unflipped (a validation set)."""
        return np.stack(self.images), np.stack(self.masks)

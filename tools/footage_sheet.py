"""The shipped models side by side on real footage: a contact sheet (one row per chosen frame, one column per model,
each model's mask blended over the frame and labelled with the share below) and, per clip and model, the mean share
of pixels marked foreground over evenly spaced frames. The clips carry no labels, so the share is what can be
measured: a model that paints walls and streets marks far more than the objects in view. docs/training.md shows a
result.

    python tools/footage_sheet.py samples/bikes-street.mp4 ../shared/data/videos/vtest.avi \\
        --models unet-fp-w32,mbunet-w32,binary-w32 --rows 1 --out docs/images/models-on-footage.jpg

Uses only the public API (mbunet.Segmenter, mbunet.frames); each model runs on the engine `auto` picks for it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def clip_frames(path: str, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip (its first and last included). The clip is decoded twice, once to
    count its frames (containers' frame counts are estimates) and once to keep the picks, so only those are held in
    memory (a whole 768x576 clip of 800 frames would take a gigabyte)."""
    from mbunet import frames

    total = sum(1 for _ in frames(path))
    if not total:
        raise SystemExit(f"{path}: no frames")
    picks = np.linspace(0, total - 1, count).round().astype(int)
    wanted = set(picks.tolist())
    kept = {i: frame for i, frame in enumerate(frames(path)) if i in wanted}
    return [kept[i] for i in picks]


def label(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return image


def main() -> None:
    import cv2

    from mbunet import Segmenter
    from mbunet.overlay import OverlayAnnotator

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+", help="video files")
    p.add_argument("--models", default="unet-fp-w32,mbunet-w32,binary-w32",
                   help="comma-separated model names or paths")
    p.add_argument("--samples", type=int, default=40, help="frames per clip for the marked share (default 40)")
    p.add_argument("--rows", type=int, default=1, help="frames per clip in the sheet (default 1)")
    p.add_argument("--width", type=int, default=320, help="width of one tile in pixels (default 320)")
    p.add_argument("--out", default="footage-sheet.jpg", help="sheet image (JPEG)")
    a = p.parse_args()

    segmenters = [Segmenter(m) for m in a.models.split(",")]
    painters = [OverlayAnnotator(seg.model.labels, 0.55) for seg in segmenters]
    sheet_rows = []
    print(f"{'clip':<22} " + " ".join(f"{s.model.name:>14}" for s in segmenters) + "   (share of pixels marked)")
    for clip in a.clips:
        sampled = clip_frames(clip, a.samples)
        masks = [seg.batch(sampled) for seg in segmenters]
        shares = [np.mean([np.count_nonzero(m) / m.size for m in per_model]) for per_model in masks]
        print(f"{Path(clip).name:<22} " + " ".join(f"{s:>14.1%}" for s in shares))
        for i in np.linspace(0, a.samples - 1, a.rows + 2).round().astype(int)[1:-1]:
            frame = sampled[i]
            h = round(frame.shape[0] * a.width / frame.shape[1])
            tiles = [label(cv2.resize(frame, (a.width, h)), Path(clip).stem)]
            for seg, painter, per_model, share in zip(segmenters, painters, masks, shares):
                painted = painter.annotate(frame.copy(), per_model[i])
                tiles.append(label(cv2.resize(painted, (a.width, h)), f"{seg.model.name}  {share:.0%}"))
            sheet_rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in sheet_rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in sheet_rows])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(a.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"sheet: {a.out}")


if __name__ == "__main__":
    main()

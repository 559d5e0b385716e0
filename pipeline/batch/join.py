"""Join a video's finished parts, in frame order, into its outputs, and publish them under OUT/<name>/.

Masks are one file per frame already numbered in the whole video, so they are linked into one folder; the JSON
lines are concatenated; overlay videos are re-encoded into one file when there are several parts (OpenCV's
writer is the only encoder we ship, and MKV segments cannot be concatenated byte-wise), else linked.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import SinkError
from ..sinks import VideoFileSink
from . import layout
from .options import OUTPUT_NAMES, BatchOptions


def join_parts(parts: list[Path], dest: Path, options: BatchOptions, fps: float) -> None:
    """Fill the empty folder `dest` with the outputs of `parts` (in order)."""
    if "masks" in options.outputs:
        masks = dest / OUTPUT_NAMES["masks"]
        masks.mkdir()
        for part in parts:
            for f in sorted((part / OUTPUT_NAMES["masks"]).iterdir()):
                layout.link_or_copy(f, masks / f.name)
    if "jsonl" in options.outputs:
        with open(dest / OUTPUT_NAMES["jsonl"], "wb") as out:
            for part in parts:
                with open(part / OUTPUT_NAMES["jsonl"], "rb") as f:
                    shutil.copyfileobj(f, out)
    if "overlay" in options.outputs:
        videos = [p / OUTPUT_NAMES["overlay"] for p in parts if (p / OUTPUT_NAMES["overlay"]).exists()]
        if len(videos) == 1:
            layout.link_or_copy(videos[0], dest / OUTPUT_NAMES["overlay"])
        elif videos:
            _concatenate(videos, dest / OUTPUT_NAMES["overlay"], fps)


def _concatenate(videos: list[Path], out: Path, fps: float) -> None:
    import cv2

    writer = VideoFileSink(str(out), fps)
    try:
        for video in videos:
            cap = cv2.VideoCapture(str(video))
            if not cap.isOpened():
                raise SinkError(f"{video}: a finished overlay part cannot be read back")
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                writer.write(0, frame, None)
            cap.release()
    finally:
        writer.close()

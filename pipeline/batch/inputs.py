"""`mbunet batch INPUTS...` -> the list of videos to segment, each with the name of its output folder.

An input is a video file, a folder (searched recursively for video suffixes), a glob, or a manifest of paths
(.txt: one path a line, # comments; .csv: the `video` or `path` column, else the first). Relative paths in a
manifest are relative to the manifest's folder. A file named explicitly is taken whatever its suffix (a corrupt
file then fails alone, in the batch manifest); folders and globs take only video suffixes.

Output names are paths relative to the deepest folder that holds every input *as given* (a folder argument counts
as itself, not as the videos found in it), suffix kept: `DIR/card1/DJI_0001.MP4` -> `card1/DJI_0001.MP4`. Two
cards with the same file names therefore never collide, and a folder that gains videos keeps its old names, so a
rerun on the same folder resumes.
"""
from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MbunetError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                  ".wmv", ".flv", ".3gp")
MANIFEST_SUFFIXES = (".txt", ".csv", ".lst")


@dataclass(frozen=True)
class Video:
    path: str   # absolute path of the video file
    name: str   # output folder under --out, unique in the batch


def expand_inputs(inputs: list[str], exclude: str | Path | None = None) -> list[Video]:
    """Every video named by `inputs`, deduplicated, in a stable order, leaving out files under `exclude` (the
    batch's own --out, whose overlays would otherwise be segmented by the next run over a folder that holds it);
    raises MbunetError for an input that names nothing (a typo must not turn into a silent empty batch)."""
    found: list[Path] = []
    roots: list[Path] = []
    for text in inputs:
        paths, root = _expand_one(text)
        found += paths
        roots.append(root)
    # names come from the paths as given (made absolute, links not followed: a link inside a folder must not name
    # its output after wherever it points); duplicates are found on the real file
    skip = Path(exclude).resolve() if exclude else None
    seen: set[Path] = set()
    unique = []
    for p in (Path(os.path.abspath(f)) for f in found):
        real = p.resolve()
        if real not in seen and not (skip and (real == skip or skip in real.parents)):
            seen.add(real)
            unique.append(p)
    if not unique:
        raise MbunetError(f"no videos in {' '.join(inputs)} outside the output folder {exclude}")
    base = os.path.commonpath([os.path.abspath(r) for r in roots])
    return sorted((Video(str(p), os.path.relpath(p, base)) for p in unique), key=lambda v: v.name)


def _expand_one(text: str) -> tuple[list[Path], Path]:
    """(videos, the folder their names are relative to) for one input."""
    p = Path(text).expanduser()
    if glob.has_magic(text):
        fixed = _leading_fixed(Path(text).expanduser().parts)
        base = Path(*fixed) if fixed else Path(".")
        hits = [Path(h) for h in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
        videos = [h for h in hits if h.is_file() and h.suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            raise MbunetError(f"{text}: the pattern matches no video file")
        return videos, base
    if p.is_dir():
        videos = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise MbunetError(f"{text}: no video files in this folder (suffixes: {', '.join(VIDEO_SUFFIXES)})")
        return videos, p
    if not p.exists():
        raise MbunetError(f"{text}: no such file or folder")
    if p.suffix.lower() in MANIFEST_SUFFIXES:
        entries = read_path_list(p)
        return entries, Path(os.path.commonpath([os.path.abspath(e.parent) for e in entries]))
    return [p], p.parent


def read_path_list(path: Path) -> list[Path]:
    """The video paths a .txt/.lst or .csv manifest lists (relative ones resolved against its folder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MbunetError(f"{path}: cannot read the list of videos ({e})") from e
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        column = next((header.index(k) for k in ("video", "path") if k in header), None)
        rows = rows[1:] if column is not None else rows
        names = [r[column or 0].strip() for r in rows if len(r) > (column or 0)]
    else:
        names = [line.strip() for line in text.splitlines()]
    entries = [(path.parent / Path(n).expanduser()) for n in names if n and not n.startswith("#")]
    if not entries:
        raise MbunetError(f"{path}: lists no videos")
    return entries  # a listed file that is missing fails alone, in the batch manifest


def _leading_fixed(parts: tuple[str, ...]) -> list[str]:
    """The folders of a glob before its first wildcard."""
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return fixed

"""Where a batch writes, and the rule that makes it resumable: nothing is under its final name until it is whole.

    OUT/<name>/                  a finished video: masks/, overlay.mkv, frames.jsonl and done.json
    OUT/.work/<name>.<key>/      a video in progress: part-00000/ ... (finished chunks), part-00001.tmp/ (one
                                 being written), final.tmp/ (the parts being joined)
    OUT/manifest.jsonl|.parquet  a row per video of the last run

A chunk is written into part-N.tmp/ and renamed to part-N/ when its last frame is written, and a video's outputs
are joined into final.tmp/, with done.json written last, and then renamed to OUT/<name>/. A kill (SIGINT, SIGTERM,
a lost node) at any moment therefore leaves only *.tmp folders, which the next run deletes and redoes, and finished
parts, which it reuses when the video, the model and the settings are the same (`key` hashes all three).
A video is complete when OUT/<name>/done.json records the same content hash and settings: then it is skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

DONE = "done.json"
WORK = ".work"


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """sha256 of a file's bytes (the video's identity for resuming: a renamed or touched file is still done)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def settings_key(settings: dict) -> str:
    """A short stable hash of the settings that change a video's outputs (model, outputs, fit, overlay)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def final_dir(out: Path, name: str) -> Path:
    return out / name


def work_dir(out: Path, name: str, sha256: str, key: str, chunk_frames: int) -> Path:
    """The video's work folder: a new one whenever the content, the settings or the chunk plan differ, so
    parts of another plan are never joined with these."""
    tag = hashlib.sha256(f"{sha256}|{key}|{chunk_frames}".encode()).hexdigest()[:12]
    return out / WORK / f"{name}.{tag}"


def part_dir(work: Path, index: int) -> Path:
    return work / f"part-{index:05d}"


def read_done(final: Path) -> dict | None:
    """The done.json of a finished video, or None (absent, or unreadable: then the video is redone)."""
    try:
        return json.loads((final / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, obj: dict) -> None:
    """Write a JSON file whole or not at all (temp name, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fresh_dir(path: Path) -> Path:
    """An empty folder at `path` (a leftover from a killed run is removed first)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def publish(tmp: Path, final: Path) -> None:
    """Move a finished folder to its final name, replacing an older one. The old done.json goes first, so a
    crash half-way through removing the old folder cannot leave a partial folder that looks finished."""
    if final.exists():
        (final / DONE).unlink(missing_ok=True)
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def prune_work(out: Path) -> None:
    """Remove the empty folders of OUT/.work (what an interrupted run left there is for the next one)."""
    work = out / WORK
    if not work.is_dir():
        return
    for folder, _, _ in sorted(os.walk(work), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(folder)
        except OSError:  # not empty
            pass


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when the file system allows (no data copied), else copy; the source stays intact, so a join
    that is interrupted can simply run again."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))

"""The archive's manifest: a row per video of the run, written whole at the end (and on interruption) as
OUT/manifest.jsonl (default) or OUT/manifest.parquet.

Columns (docs/batch.md has the same list):
    video         str    the input file's absolute path
    name          str    its output folder under OUT
    status        str    "ok" (segmented by this run), "skipped" (complete from an earlier run: its figures are
                         that run's), "failed" (see error)
    frames        int    frames segmented
    fps           float  frames per worker-second (the chunks of a split video may run on several workers)
    engine        str    the engine that ran it ("cpu", "bmma", ...; "a+b" if its chunks ran on both)
    joules        float  energy read while it ran, when the worker had a power meter to itself; else null
    error         str    the one-line reason it failed; null otherwise
    sha256        str    content hash of the video (with the model and settings, what resuming compares)
    model         str    the model's name
    chunks        int    parts it was split into
    worker_s      float  worker time spent on it, s
    decode_ms     float  decode time per frame, ms
    decode_share  float  decode's share of the pipeline's busy time (decode, resize, engine, overlay, writing)
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

COLUMNS = {"video": "string", "name": "string", "status": "string", "frames": "int64", "fps": "float64",
           "engine": "string", "joules": "float64", "error": "string", "sha256": "string", "model": "string",
           "chunks": "int64", "worker_s": "float64", "decode_ms": "float64", "decode_share": "float64"}
FORMATS = ("jsonl", "parquet")


def check_format(fmt: str) -> None:
    """Fail before any work when the chosen format cannot be written here."""
    if fmt not in FORMATS:
        raise ConfigError(f"--manifest must be jsonl or parquet, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise ConfigError("--manifest parquet needs pyarrow (pip install 'mbunet[ray]')") from e


def failed_row(video, error: str, sha256: str | None = None) -> dict:
    return {**dict.fromkeys(COLUMNS), "video": video.path, "name": video.name, "status": "failed",
            "error": error, "sha256": sha256}


def write_manifest(out: Path, rows: list[dict], fmt: str) -> Path:
    """Write the rows (ordered by name) under a temp name, then rename: a manifest is whole or absent."""
    rows = sorted(({k: r.get(k) for k in COLUMNS} for r in rows), key=lambda r: r["name"])
    path = out / f"manifest.{fmt}"
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(k, getattr(pa, t)()) for k, t in COLUMNS.items()])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    else:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(path: Path) -> list[dict]:
    """The rows of a manifest of either format (tests, and users' scripts)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

"""The worker of a batch: loads the model and engine once, then probes, segments and finishes videos on request.

The driver runs it as a Ray actor (`ray.remote(BatchWorker)`), but nothing here imports Ray: it is a plain class
that tests and a single-machine caller can use directly. Every method returns a dict instead of raising for
anything a video can cause, so one corrupt file becomes one line in the manifest and never a failed actor; a bug
still says what it was and prints its traceback into the worker's log.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import traceback
from pathlib import Path

from ..api import Segmenter, load_run_model
from ..errors import MbunetError, short_reason
from . import layout
from .chunk import ChunkSource, Interrupted, segment_chunk
from .inputs import Video
from .join import join_parts
from .options import BatchOptions

CHUNK_STATS = "chunk.json"


class BatchWorker:
    def __init__(self, model: str, model_sha256: str, engine: str, options: BatchOptions, out: str,
                 whole_gpu: bool = False) -> None:
        """`model` as the driver resolved it (an absolute path, a shipped name or random:...): each worker loads
        it itself, and `model_sha256` proves it is the driver's model (a node with another mbunet version or
        another file at that path must not quietly segment with a different network)."""
        self.options, self.out = options, Path(out)
        self.segmenter = None
        self.meter = None
        self.error: str | None = None
        try:
            loaded = load_run_model(model)
            if loaded.card["arrays_sha256"] != model_sha256:
                raise MbunetError(f"model {model or 'default'} on {socket.gethostname()} is not the driver's "
                                  f"(arrays sha256 {loaded.card['arrays_sha256'][:12]}, expected {model_sha256[:12]})")
            self.segmenter = Segmenter(loaded, engine, options.fit)
        except MbunetError as e:  # reported by ready(): an actor that raises here would only say "actor died"
            self.error = str(e)
            return
        if whole_gpu:
            # energy is read only when this worker has the GPU to itself: a board meter shared by several workers
            # would count each one's neighbours too
            from ..power import open_power_meter

            meter = open_power_meter()
            self.meter = meter if meter.available else None

    def ready(self) -> dict:
        return {"engine": self.segmenter.engine_name if self.segmenter else None, "error": self.error,
                "reason": self.segmenter.engine_reason if self.segmenter else None,
                "node": socket.gethostname(), "pid": os.getpid()}

    def probe(self, video: Video, key: str) -> dict:
        """Hash the video and decide: "skipped" (already done with this model and settings), "todo" (with its
        declared frame count and rate) or "failed" (unreadable, with the reason)."""
        try:
            sha = layout.file_sha256(video.path)
        except OSError as e:
            return {"status": "failed", "error": f"{video.path}: cannot read ({e.strerror})"}
        done = layout.read_done(layout.final_dir(self.out, video.name))
        if done and done.get("sha256") == sha and done.get("key") == key:
            return {"status": "skipped", "sha256": sha, "row": done["row"]}
        return self._guard(video, lambda: self._open(video, sha))

    def _open(self, video: Video, sha: str) -> dict:
        source = ChunkSource(video.path)
        source.open()  # a file OpenCV cannot decode fails here, in milliseconds
        try:
            if source.read().image is None:
                raise MbunetError(f"{video.path}: opens but yields no frame (corrupt or empty video)")
            return {"status": "todo", "sha256": sha, "frames": source.frame_count or 0, "fps": source.fps}
        finally:
            source.close()

    def segment(self, video: Video, sha: str, key: str, index: int, start: int, stop: int | None) -> dict:
        """Write chunk `index` (frames [start, stop)) into its part folder; a part finished by an earlier,
        interrupted run is reused as it is."""
        work = layout.work_dir(self.out, video.name, sha, key, self.options.chunk_frames)
        part = layout.part_dir(work, index)
        if (part / CHUNK_STATS).exists():
            return {**layout.read_json(part / CHUNK_STATS), "reused": True}
        tmp = layout.fresh_dir(part.with_name(part.name + ".tmp"))

        def run() -> dict:
            stats = {**segment_chunk(video.path, start, stop, tmp, self.segmenter, self.options, self.meter),
                     "engine": self.segmenter.engine_name}
            layout.write_json(tmp / CHUNK_STATS, stats)
            os.replace(tmp, part)
            return stats

        result = self._guard(video, run)
        if "error" in result:
            shutil.rmtree(tmp, ignore_errors=True)
        return result

    def finish(self, video: Video, sha: str, key: str, parts: int, fps: float | None) -> dict:
        """Join the finished parts into OUT/<name>/ and return the video's manifest row."""
        final = layout.final_dir(self.out, video.name)
        work = layout.work_dir(self.out, video.name, sha, key, self.options.chunk_frames)
        done = layout.read_done(final)
        if done and done.get("sha256") == sha and done.get("key") == key:  # a retried finish that had published
            shutil.rmtree(work, ignore_errors=True)
            return {"row": done["row"]}

        def run() -> dict:
            part_dirs = [layout.part_dir(work, i) for i in range(parts)]
            stats = [layout.read_json(p / CHUNK_STATS) for p in part_dirs]
            tmp = layout.fresh_dir(work / "final.tmp")
            join_parts(part_dirs, tmp, self.options, fps or 25.0)
            row = video_row(video, sha, stats, self.segmenter.model.name)
            layout.write_json(tmp / layout.DONE, {"sha256": sha, "key": key, "row": row})
            layout.publish(tmp, final)
            shutil.rmtree(work, ignore_errors=True)
            return {"row": row}

        return self._guard(video, run)

    @staticmethod
    def _guard(video: Video, body) -> dict:
        try:
            return body()
        except Interrupted as e:
            return {"error": str(e), "interrupted": True}
        except MbunetError as e:
            return {"error": short_reason(e, 300)}
        except Exception as e:  # a bug, or the OS (disk full): one line for the manifest, the traceback for the log
            traceback.print_exc(file=sys.stderr)
            return {"error": f"{video.path}: {type(e).__name__}: {short_reason(e, 240)}"}


def video_row(video: Video, sha: str, chunks: list[dict], model: str) -> dict:
    """The manifest row of a finished video from its chunks' statistics."""
    frames = sum(c["frames"] for c in chunks)
    worker_s = sum(c["wall_s"] for c in chunks)
    stage_ms: dict[str, float] = {}
    for c in chunks:
        for k, v in c["stage_ms"].items():
            stage_ms[k] = stage_ms.get(k, 0.0) + v
    busy = sum(stage_ms.values())
    joules = [c.get("joules") for c in chunks]
    return {
        "video": video.path, "name": video.name, "status": "ok", "frames": frames,
        # frames per worker-second: the chunks of one video may run on several workers at once
        "fps": round(frames / worker_s, 3) if worker_s else None,
        "engine": "+".join(sorted({c["engine"] for c in chunks})),
        "joules": round(sum(joules), 3) if joules and None not in joules else None,
        "error": None, "sha256": sha, "model": model, "chunks": len(chunks), "worker_s": round(worker_s, 3),
        "decode_ms": round(stage_ms.get("capture", 0.0) / frames, 3) if frames else None,
        # decode's share of the pipeline's busy time (all stages, each in its own thread)
        "decode_share": round(stage_ms.get("capture", 0.0) / busy, 4) if busy else None,
    }

"""Hands the batch's jobs to idle workers and collects their results, one video's state at a time.

Jobs per video: `probe` (hash, skip check, frame count), then `segment` once per chunk (on any workers, in
parallel), then `finish` (join the parts, publish). Idle workers take finish jobs first (they free disk and
complete rows), then probes (so the total, and the ETA, are known early), then chunks.

Failures: a video's error fails that video only (its queued chunks are dropped). A worker process that dies is
restarted by Ray, which re-runs its call (every job is idempotent: see layout); when Ray gives up on it, the job
goes to another worker once, and the video fails with "worker lost" after that. A chunk stopped by a signal to
its worker is re-queued the same way.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from .inputs import Video
from .manifest import failed_row
from .progress import Progress

ATTEMPTS = 2  # tries of one job on different workers after Ray's own restarts gave up
INTERRUPTED = "interrupted before it was finished; rerun the same command to resume"


@dataclass
class VideoState:
    video: Video
    sha: str | None = None
    fps: float | None = None
    chunks: list[tuple[int, int | None]] = field(default_factory=list)
    parts_done: int = 0
    row: dict | None = None   # set once the video is resolved (ok, skipped or failed)


def plan_chunks(frames: int, chunk_frames: int) -> list[tuple[int, int | None]]:
    """[start, stop) per chunk; the last one reads to the end of the file, since a container's declared frame
    count can be an estimate."""
    if not chunk_frames or frames <= chunk_frames:
        return [(0, None)]
    n = math.ceil(frames / chunk_frames)
    return [(i * chunk_frames, (i + 1) * chunk_frames if i < n - 1 else None) for i in range(n)]


class Scheduler:
    def __init__(self, ray, workers: list, videos: list[Video], key: str, chunk_frames: int, progress: Progress,
                 stop: threading.Event) -> None:
        self.ray, self.idle, self.key, self.chunk_frames = ray, list(workers), key, chunk_frames
        self.progress, self.stop = progress, stop
        self.states = [VideoState(v) for v in videos]
        self.queues: dict[str, deque] = {"finish": deque(), "probe": deque(), "segment": deque()}
        self.queues["probe"].extend((s, None) for s in self.states)
        self.inflight: dict = {}  # ObjectRef -> (worker, kind, state, payload, attempt)
        self.attempts: dict = {}

    def run(self) -> list[dict]:
        """Run every job; returns a row per video (unfinished ones, after a stop, as failed: interrupted)."""
        while any(s.row is None for s in self.states) and not self.stop.is_set():
            self._dispatch()
            if not self.inflight:
                self._fail_unresolved("no workers left: every worker process was lost")
                break
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            for ref in ready:
                self._collect(ref)
        self._fail_unresolved(INTERRUPTED)
        return [s.row for s in self.states]

    def _dispatch(self) -> None:
        while self.idle:
            job = self._next_job()
            if job is None:
                return
            kind, state, payload, attempt = job
            worker = self.idle.pop()
            v = state.video
            if kind == "probe":
                ref = worker.probe.remote(v, self.key)
            elif kind == "segment":
                index = payload
                start, stop = state.chunks[index]
                ref = worker.segment.remote(v, state.sha, self.key, index, start, stop)
            else:
                ref = worker.finish.remote(v, state.sha, self.key, len(state.chunks), state.fps)
            self.inflight[ref] = (worker, kind, state, payload, attempt)

    def _next_job(self):
        for kind in ("finish", "probe", "segment"):
            q = self.queues[kind]
            while q:
                state, payload, *rest = q.popleft()
                if state.row is None:  # a failed video's queued chunks are dropped here
                    return kind, state, payload, (rest[0] if rest else 0)
        return None

    def _collect(self, ref) -> None:
        worker, kind, state, payload, attempt = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:  # Ray's restarts of this worker are used up
            self._retry_or_fail(kind, state, payload, attempt, f"worker lost: {_first_line(e)}")
            return
        except self.ray.exceptions.RayError as e:
            self.idle.append(worker)
            self._resolve(state, failed_row(state.video, f"{state.video.path}: {_first_line(e)}", state.sha))
            return
        self.idle.append(worker)
        if state.row is not None:  # the video failed while this chunk was running
            return
        if result.get("interrupted"):
            self._retry_or_fail(kind, state, payload, attempt, result["error"])
        elif "error" in result:
            self._resolve(state, failed_row(state.video, result["error"], state.sha))
        elif kind == "probe":
            self._probed(state, result)
        elif kind == "segment":
            self.progress.frames(0 if result.get("reused") else result["frames"])
            state.parts_done += 1
            if state.parts_done == len(state.chunks):
                self.queues["finish"].append((state, None))
        else:
            self._resolve(state, {**result["row"], "status": "ok"})

    def _probed(self, state: VideoState, result: dict) -> None:
        state.sha = result["sha256"]
        if result["status"] == "skipped":
            self._resolve(state, {**result["row"], "video": state.video.path, "name": state.video.name,
                                  "status": "skipped"})
            return
        if result["status"] == "failed":
            self._resolve(state, failed_row(state.video, result["error"], state.sha))
            return
        state.fps = result["fps"]
        state.chunks = plan_chunks(result["frames"], self.chunk_frames)
        self.progress.add_frames_to_do(result["frames"])
        self.queues["segment"].extend((state, i) for i in range(len(state.chunks)))

    def _retry_or_fail(self, kind: str, state: VideoState, payload, attempt: int, error: str) -> None:
        if state.row is not None:
            return
        if attempt + 1 < ATTEMPTS and not self.stop.is_set():
            self.queues[kind].append((state, payload, attempt + 1))
        else:
            self._resolve(state, failed_row(state.video, error, state.sha))

    def _resolve(self, state: VideoState, row: dict) -> None:
        state.row = row
        self.progress.video(row)

    def _fail_unresolved(self, reason: str) -> None:
        for s in self.states:
            if s.row is None:
                s.row = failed_row(s.video, reason, s.sha)


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__

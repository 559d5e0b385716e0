"""Progress over the archive on stderr: a bar over frames (videos done, throughput, ETA) on a terminal, and a line
per finished video plus a periodic throughput line in a log (a cluster job's stderr is usually a file)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, videos: int, enabled: bool = True, log_every_s: float = 30.0) -> None:
        self.videos, self.enabled, self.log_every_s = videos, enabled, log_every_s
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.frames_total = self.frames_done = 0
        self.start = time.perf_counter()
        self._last_log = self.start
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def add_frames_to_do(self, n: int) -> None:
        """A probed video will segment about n frames (its declared count)."""
        self.frames_total += n
        if self._bar is not None:
            self._bar.total = self.frames_total
            self._bar.refresh()

    def frames(self, n: int) -> None:
        self.frames_done += n
        if self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix_str(self._videos_text(), refresh=False)
        elif self.enabled and time.perf_counter() - self._last_log >= self.log_every_s:
            self._last_log = time.perf_counter()
            self._print(f"{self._videos_text()}, {self.frames_done}/{self.frames_total} frames, "
                        f"{self.fps():.1f} FPS{self._eta()}")

    def video(self, row: dict) -> None:
        self.counts[row["status"]] += 1
        if row["status"] == "skipped" and self._bar is not None:
            self._bar.set_postfix_str(self._videos_text())
            return
        if row["status"] == "ok":
            what = f"ok      {row['name']}: {row['frames']} frames, {row['fps'] or 0:.1f} FPS"
        elif row["status"] == "failed":
            what = f"failed  {row['name']}: {row['error']}"
        else:
            what = f"skipped {row['name']} (done by an earlier run)"
        self._print(f"[{self.finished}/{self.videos}] {what}")

    def fps(self) -> float:
        return self.frames_done / max(time.perf_counter() - self.start, 1e-9)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _videos_text(self) -> str:
        c = self.counts
        return f"videos {self.finished}/{self.videos} ({c['ok']} ok, {c['skipped']} skipped, {c['failed']} failed)"

    def _eta(self) -> str:
        fps = self.fps()
        left = self.frames_total - self.frames_done
        return f", ETA {left / fps:.0f} s" if fps > 0 and left > 0 else ""

    def _print(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

"""Sources on real footage: every container the OpenCV wheel reads, image folders, globs, bad files, reconnect."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from mbunet.errors import SourceError, SourceUnavailable
from mbunet.sources import (Capture, FrameSource, Reconnecting, SourceOptions, Status, gstreamer_available,
                              open_source)
from mbunet.uri import parse_uri

CONTAINERS = [("mp4", "mp4v"), ("mkv", "mp4v"), ("avi", "MJPG"), ("mov", "mp4v"), ("webm", "VP80")]


def read_all(source, limit=1000):
    frames = []
    while len(frames) < limit:
        cap = source.read()
        if cap.status is Status.EOS:
            break
        if cap.status is Status.OK:
            frames.append(cap.image)
    return frames


@pytest.fixture(scope="module")
def footage_frames(videos):
    """The first 12 frames of balle-jbart.mp4 (real H.264 footage), read with OpenCV."""
    src = open_source(str(videos / "balle-jbart.mp4"))
    frames = read_all(src, 12)
    src.close()
    return frames


@pytest.mark.parametrize("ext, fourcc", CONTAINERS)
def test_every_container_reads_back(tmp_path, footage_frames, ext, fourcc):
    import cv2

    h, w = 144, 180
    path = tmp_path / f"clip.{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    assert writer.isOpened(), f"the OpenCV wheel cannot write {fourcc} into .{ext}"
    for f in footage_frames:
        writer.write(cv2.resize(f, (w, h)))
    writer.release()
    src = open_source(str(path))
    frames = read_all(src)
    src.close()
    assert len(frames) == len(footage_frames)
    assert frames[0].shape == (h, w, 3) and frames[0].dtype == np.uint8
    assert not src.live and src.problem is None


def test_shared_clips_open_with_their_sizes(videos):
    for name, size in [("vtest.avi", (576, 768)), ("bikes.mp4", (272, 640)), ("balle-jbart.mp4", (576, 720))]:
        src = open_source(f"file://{videos / name}")
        assert src.read().image.shape[:2] == size
        assert src.frame_count and src.fps
        src.close()


def test_input_size_option_resizes_files(videos):
    src = open_source(str(videos / "bikes.mp4"), SourceOptions(width=320, height=136))
    assert src.read().image.shape == (136, 320, 3)
    src.close()


def test_bundled_sample_clip_is_short_and_small():
    from mbunet.config import SAMPLE_CLIP

    assert SAMPLE_CLIP.stat().st_size < 2_000_000
    src = open_source(str(SAMPLE_CLIP))
    frames = read_all(src)
    assert 50 <= len(frames) <= 250 and src.problem is None


def test_image_folder_and_glob_skip_corrupt_images(tmp_path, footage_frames):
    import cv2

    for i, f in enumerate(footage_frames[:4]):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f)
    (tmp_path / "002b.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(str(tmp_path))
    assert parse_uri(str(tmp_path)).scheme == "images"
    assert len(read_all(src)) == 4 and src.corrupt == 1
    src = open_source(str(tmp_path / "00[01].png"))
    assert len(read_all(src)) == 2


def test_loop_rewinds(tmp_path, footage_frames):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), footage_frames[0])
    src = open_source(str(tmp_path))
    assert src.read().status is Status.OK and src.read().status is Status.EOS
    src.rewind()
    assert src.read().status is Status.OK


def test_synthetic_source():
    src = open_source("synthetic://?frames=3&width=64&height=48")
    frames = read_all(src)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert not (frames[0] == frames[2]).all()


@pytest.mark.parametrize("name, content, message", [
    ("missing.mp4", None, "no such file"),
    ("empty.mp4", b"", r"empty file \(0 bytes\)"),
    ("text.mp4", b"hello, I am text\n" * 50, "cannot decode"),
    ("", None, "no images found"),
])
def test_bad_files_raise_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        open_source(str(path))


def test_truncated_files(tmp_path, videos):
    mp4 = tmp_path / "cut.mp4"  # moov atom at the end: nothing is decodable
    mp4.write_bytes((videos / "balle-jbart.mp4").read_bytes()[:300_000])
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(str(mp4))
    avi = tmp_path / "cut.avi"  # index-less AVI: plays until the cut, then reports the truncation
    with open(videos / "vtest.avi", "rb") as f:
        avi.write_bytes(f.read(2_000_000))
    src = open_source(str(avi))
    n = len(read_all(src))
    assert 0 < n < src.frame_count
    assert "ended after" in src.problem and "truncated" in src.problem


def test_gstreamer_is_reported_plainly():
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer; the error path is for builds without it")
    # through OpenCV on request; by default these go through PyGObject (tests/test_gst.py)
    opencv = SourceOptions(backend="opencv")
    with pytest.raises(SourceError, match="needs OpenCV built with GStreamer; this OpenCV has none"):
        open_source("videotestsrc ! videoconvert ! appsink", opencv)
    with pytest.raises(SourceError, match="GStreamer"):
        open_source("csi://0", opencv)


def test_missing_camera(tmp_path):
    with pytest.raises(SourceError, match="camera cannot be opened"):
        open_source("/dev/video99", reconnect=False)


def test_missing_camera_is_waited_for_when_reconnecting():
    """A camera that is not there yet is what a reconnecting run waits for: open returns, and reads say TIMEOUT
    while each retry says what it waits for."""
    lines = []
    src = open_source("/dev/video99", backoff_s=0.01, backoff_max_s=0.02, log=lines.append)
    deadline = time.monotonic() + 1.0
    while len(lines) < 3 and time.monotonic() < deadline:
        assert src.read().status is Status.TIMEOUT
    src.close()
    assert lines[0].startswith("waiting for the source: /dev/video99: camera cannot be opened")
    assert lines[1].startswith("still waiting after ") and "next try in" in lines[1]


class Flaky(FrameSource):
    """A live source that fails `fail_opens` times after its first loss, then serves frames again."""

    live = True

    def __init__(self, fail_opens: int) -> None:
        super().__init__(parse_uri("synthetic://"), SourceOptions())
        self.fail_opens, self.opens, self.reads = fail_opens, 0, 0

    def open(self) -> None:
        self.opens += 1
        if 1 < self.opens <= 1 + self.fail_opens:
            raise SourceUnavailable("server down")

    def read(self) -> Capture:
        self.reads += 1
        if self.reads == 3:
            return Capture(Status.ERROR)
        return Capture(Status.OK, np.zeros((4, 4, 3), np.uint8))


def test_reconnect_with_backoff():
    src = Reconnecting(Flaky(fail_opens=2), backoff_s=0.01, backoff_max_s=0.02)
    src.open()
    statuses = [src.read().status for _ in range(200)]
    assert statuses[:2] == [Status.OK, Status.OK] and statuses[2] is Status.TIMEOUT
    assert Status.OK in statuses[3:] and src.reconnects == 1 and src.inner.opens == 4


def test_reconnect_gives_up_when_asked():
    src = Reconnecting(Flaky(fail_opens=10**6), backoff_s=0.01, backoff_max_s=0.01, give_up_s=0.05)
    src.open()
    with pytest.raises(SourceError, match="lost for more than 0.05 s, giving up"):
        for _ in range(1000):
            src.read()


def test_ffmpeg_decodes_what_opencv_writes(tmp_path, footage_frames):
    """Independent check of a written file with the ffmpeg CLI (skipped without it)."""
    import subprocess

    import cv2

    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (apt-get install -y ffmpeg)")
    path = tmp_path / "c.mkv"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for f in footage_frames[:5]:
        w.write(cv2.resize(f, (64, 48)))
    w.release()
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    assert out.stdout.strip() == "5"

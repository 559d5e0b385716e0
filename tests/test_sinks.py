"""Sinks: video files in every codec the wheel writes, image/mask sequences, JSON lines, fan-out, crash safety."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mbunet.errors import SinkError, SourceError
from mbunet.sinks import FanOut, FrameSink, NullSink, open_sink
from mbunet.sources import open_source

from conftest import count_frames


def frames(n=6, h=48, w=64):
    rng = np.random.default_rng(0)
    for i in range(n):
        image = np.full((h, w, 3), 30 * i, np.uint8)
        image[10:30, 10:40] = rng.integers(0, 256, 3, dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[10:30, 10:40] = 1 + i % 2
        yield i, image, mask


@pytest.mark.parametrize("name, codec", [("a.mkv", None), ("a.avi", None), ("a.mp4", None), ("a.mov", None),
                                         ("b.avi", "XVID"), ("b.mkv", "FFV1"), ("c.mkv", "MJPG")])
def test_video_files(tmp_path, name, codec):
    uri = str(tmp_path / name) + (f"?codec={codec}" if codec else "")
    sink = open_sink(uri, fps=10)
    for i, image, mask in frames():
        sink.write(i, image, mask)
    sink.close()
    assert count_frames(tmp_path / name) == 6


def test_video_keeps_its_size_when_the_stream_changes(tmp_path):
    sink = open_sink(str(tmp_path / "v.mkv"))
    sink.write(0, np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8))
    sink.write(1, np.zeros((96, 128, 3), np.uint8), np.zeros((96, 128), np.uint8))
    sink.close()
    src = open_source(str(tmp_path / "v.mkv"))
    assert src.read().image.shape == (48, 64, 3)


def _killed_recording(path, n=100):
    """A process that writes `n` noisy frames and dies without closing its writer (power cut, SIGKILL)."""
    code = (f"import os, numpy as np; from mbunet.sinks import open_sink; s = open_sink({str(path)!r}, 25)\n"
            f"rng = np.random.default_rng(0)\n"
            f"for i in range({n}): s.write(i, rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), None)\n"
            f"os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_killed_recording_stays_playable_in_mkv(tmp_path):
    """MKV (the default) keeps every frame FFmpeg had flushed; MP4 without its closing index is unreadable."""
    _killed_recording(tmp_path / "killed.mkv")
    assert count_frames(tmp_path / "killed.mkv") >= 80
    _killed_recording(tmp_path / "killed.mp4")
    with pytest.raises(SourceError, match="cannot decode"):
        count_frames(tmp_path / "killed.mp4")


def test_bad_video_settings(tmp_path):
    with pytest.raises(SinkError, match="codec must be a 4-letter FourCC"):
        open_sink(str(tmp_path / "x.mkv?codec=H2"))
    with pytest.raises(SinkError, match="cannot write codec avc1"):
        open_sink(str(tmp_path / "x.mp4?codec=avc1")).write(0, np.zeros((48, 64, 3), np.uint8), None)
    with pytest.raises(SinkError, match="fps must be a number"):
        open_sink(str(tmp_path / "x.mkv?fps=fast"))
    (tmp_path / "folder.mkv").mkdir()  # a path that cannot be written is not blamed on the codec
    with pytest.raises(SinkError, match="cannot write there"):
        open_sink(str(tmp_path / "folder.mkv")).write(0, np.zeros((48, 64, 3), np.uint8), None)
    assert not (tmp_path / "x.mp4").exists()  # the codec failure above left no probe file behind


def test_image_sequences(tmp_path):
    import cv2

    sink = open_sink(str(tmp_path / "f" / "%04d.png"))
    for i, image, mask in frames(3):
        sink.write(i, image, mask)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert (cv2.imread(str(tmp_path / "f" / "0002.png")) == list(frames(3))[2][1]).all()
    open_sink(f"images://{tmp_path / 'g'}?ext=jpg").write(7, np.zeros((8, 8, 3), np.uint8), None)
    assert (tmp_path / "g" / "000007.jpg").is_file()
    with pytest.raises(SinkError, match="numbered pattern"):
        open_sink(f"images://{tmp_path / 'one.png'}")


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_raw_masks_round_trip_exactly(tmp_path, fmt):
    import cv2

    sink = open_sink(f"masks://{tmp_path}?format={fmt}")
    written = list(frames(3))
    for i, image, mask in written:
        sink.write(i, image, mask)
    for i, _, mask in written:
        path = tmp_path / f"{i:06d}.{fmt}"
        back = np.load(path) if fmt == "npy" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint8 and (back == mask).all()
    with pytest.raises(SinkError, match="format must be png or npy"):
        open_sink(f"masks://{tmp_path}?format=tif")


def test_jsonl_lines(tmp_path):
    sink = open_sink(str(tmp_path / "t.jsonl"))
    sink.record({"frame": 0, "e2e_ms": 1.5})
    sink.record({"frame": 1, "e2e_ms": 2.5})
    lines = (tmp_path / "t.jsonl").read_text().splitlines()  # line-buffered: readable before close
    sink.close()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1]


class Broken(FrameSink):
    def close(self):
        raise SinkError("disk gone")


class Counting(FrameSink):
    def __init__(self):
        self.written, self.closed = 0, False

    def write(self, index, image, mask):
        self.written += 1

    def close(self):
        self.closed = True


def test_fanout_writes_to_all_and_closes_all():
    a, b = Counting(), Counting()
    fan = FanOut([a, Broken(), b, NullSink()])
    for i, image, mask in frames(4):
        fan.write(i, image, mask)
    assert a.written == b.written == 4
    with pytest.raises(SinkError, match="disk gone"):
        fan.close()
    assert a.closed and b.closed


def test_display_sink_is_marked():
    assert open_sink("display://0").needs_display and not open_sink("null://").needs_display

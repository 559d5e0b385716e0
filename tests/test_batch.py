"""`mbunet batch` on real Ray: a local cluster started here on 127.0.0.1 (two workers), eight real clips and one
corrupt file; the manifest, a rerun that skips everything, a SIGTERM and a resume that redoes nothing complete,
and the embedded default. The Ray-free parts (inputs, chunk plans) are tested directly.

Every Ray process here stays on the loopback interface: Ray replaces 127.0.0.1 by the machine's network address
unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which also limits the cluster to one node (so the two workers are two
actors on one node). `ray start` turns on token authentication: every process here gets the tests' own token.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLE_CLIP, VIDEOS

ray = pytest.importorskip("ray", reason="Ray is not installed here (pip install 'mbunet[ray]'; CI installs it)")

from mbunet.batch.inputs import expand_inputs  # noqa: E402
from mbunet.batch.manifest import read_manifest  # noqa: E402
from mbunet.batch.scheduler import plan_chunks  # noqa: E402

MODEL = ["--model", "random:4:32x32", "--engine", "cpu"]  # 2 s to load in a worker, under 1 ms a frame
FRAMES = 20
# a token of the tests' own: nothing read from or written to ~/.ray (a fresh CI machine has none)
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
       "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
RAY_BIN = str(Path(sys.executable).parent / "ray")


def cut(src: Path, start: int, dest: Path) -> None:
    """FRAMES frames of `src` from `start`, at most 240 px wide, as an MPEG-4 clip."""
    cap = cv2.VideoCapture(str(src))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    for _ in range(FRAMES):
        ok, frame = cap.read()
        assert ok, f"{src} has no frame {start + FRAMES}"
        h, w = frame.shape[:2]
        frame = cv2.resize(frame, (240, round(h * 240 / w) // 2 * 2), interpolation=cv2.INTER_AREA)
        if writer is None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), 25, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Eight clips (one in a subfolder) from the bundled clip and the shared footage, and one corrupt .mp4."""
    folder = tmp_path_factory.mktemp("archive")
    sources = [(SAMPLE_CLIP, 0), (SAMPLE_CLIP, 40), (SAMPLE_CLIP, 75)]
    if VIDEOS.is_dir():
        sources += [(VIDEOS / "bikes.mp4", 0), (VIDEOS / "bikes.mp4", 120), (VIDEOS / "balle-jbart.mp4", 0),
                    (VIDEOS / "balle-jbart.mp4", 150), (VIDEOS / "vtest.avi", 300)]
    else:  # the bundled clip alone still gives eight distinct clips
        sources += [(SAMPLE_CLIP, s) for s in (10, 20, 30, 50, 60)]
    for i, (src, start) in enumerate(sources):
        cut(src, start, folder / ("day2" if i == 7 else "") / f"clip{i}.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    return folder


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` on 127.0.0.1 with 2 CPUs; its address. Stopped (its whole process group) after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="mbray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen([RAY_BIN, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp, "--block"],
                            env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "This command will now block" not in (Path(temp) / "head.log").read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head failed:\n" + (Path(temp) / "head.log").read_text()[-2000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(5)
        with contextlib.suppress(ProcessLookupError):  # what is left of the group (Ray's own processes)
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbunet.app.cli", "batch", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def finished(out: Path) -> dict[str, int]:
    """Output name -> mtime (ns) of its done.json, for every video published under `out`."""
    return {str(p.parent.relative_to(out)): p.stat().st_mtime_ns for p in out.glob("**/done.json")
            if ".work" not in p.parts}


def published_dirs(out: Path) -> list[Path]:
    """Every folder under `out` that holds outputs (masks/ or an overlay), outside the work area."""
    return sorted({p.parent for p in out.glob("**/*") if p.name in ("masks", "overlay.mkv", "frames.jsonl")
                   and ".work" not in p.parts})


@pytest.fixture(scope="module")
def cluster_run(cluster, clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster") / "out"
    proc = batch(str(clips), "--out", str(out), *MODEL, "--address", cluster, "--workers", "2")
    return out, proc, read_manifest(out / "manifest.jsonl")  # the rows before a rerun rewrites the manifest


def test_cluster_batch_writes_every_clip_and_fails_the_corrupt_one_alone(cluster_run, clips):
    out, proc, first_rows = cluster_run
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mbunet batch: error: 1 of 9 videos failed")
    assert "2 CPU workers" in proc.stderr and "8 ok, 0 skipped" in proc.stdout
    rows = {r["name"]: r for r in first_rows}
    assert sorted(rows) == ["broken.mp4", "clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4", "clip4.mp4",
                            "clip5.mp4", "clip6.mp4", "day2/clip7.mp4"]
    bad = rows.pop("broken.mp4")
    assert bad["status"] == "failed" and "cannot decode" in bad["error"] and "\n" not in bad["error"]
    assert bad["video"] == str(clips / "broken.mp4")
    for name, row in rows.items():
        assert row["status"] == "ok" and row["frames"] == FRAMES and row["engine"] == "cpu", row
        assert row["fps"] > 0 and row["error"] is None and 0 < row["decode_share"] < 1 and len(row["sha256"]) == 64
        video = out / name
        assert json.loads((video / "done.json").read_text())["sha256"] == row["sha256"]
        masks = sorted((video / "masks").iterdir())
        assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(FRAMES)]
        frame = cv2.VideoCapture(str(clips / name)).read()[1]
        assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == frame.shape[:2]
        lines = (video / "frames.jsonl").read_text().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == list(range(FRAMES))
        assert (video / "overlay.mkv").stat().st_size > 0
    assert published_dirs(out) == sorted(out / n for n in rows)
    assert not (out / ".work").exists()


def test_a_second_run_skips_every_complete_video_and_rewrites_nothing(cluster_run, cluster, clips):
    out, _, _ = cluster_run
    before = finished(out)
    assert len(before) == 8
    proc = batch(str(clips), "--out", str(out), *MODEL, "--address", cluster, "--workers", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "0 ok, 8 skipped" in proc.stdout and "1 failed" in proc.stdout
    assert finished(out) == before
    statuses = sorted(r["status"] for r in read_manifest(out / "manifest.jsonl"))
    assert statuses == ["failed"] + ["skipped"] * 8


def test_the_embedded_default_gives_the_same_manifest_and_chunked_masks_join_exactly(cluster_run, clips,
                                                                                       tmp_path):
    """No --address: an embedded Ray. Chunks of 8 frames (3 per clip) must join into the unchunked masks."""
    out, _, first_rows = cluster_run
    mine = tmp_path / "out"
    proc = batch(str(clips), "--out", str(mine), *MODEL, "--workers", "2", "--chunk-frames", "8",
                 "--manifest", "parquet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    keys = ("video", "name", "status", "frames", "engine", "error", "sha256", "model")
    expected = [{k: r[k] for k in keys} for r in first_rows]
    rows = read_manifest(mine / "manifest.parquet")
    assert [{k: r[k] for k in keys} for r in rows] == expected
    assert {r["chunks"] for r in rows if r["status"] == "ok"} == {3}
    for row in rows[1:]:
        theirs, ours = (sorted((o / row["name"] / "masks").iterdir()) for o in (out, mine))
        assert [p.name for p in theirs] == [p.name for p in ours]
        for a, b in zip(theirs, ours):
            assert np.array_equal(cv2.imread(str(a), cv2.IMREAD_UNCHANGED), cv2.imread(str(b), cv2.IMREAD_UNCHANGED))
        assert (mine / row["name"] / "frames.jsonl").read_text().count("\n") == FRAMES


def test_sigterm_then_resume_redoes_nothing_complete(cluster, clips, tmp_path):
    out = tmp_path / "out"
    args = [str(clips), "--out", str(out), *MODEL, "--address", cluster, "--workers", "1", "--chunk-frames", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "mbunet.app.cli", "batch", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not finished(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr and "Traceback" not in stderr
    complete = finished(out)
    assert 1 <= len(complete) < 8, "the signal should land after the first video and before the last"
    assert published_dirs(out) == sorted(out / n for n in complete)  # nothing half-written under a final name
    rows = {r["name"]: r for r in read_manifest(out / "manifest.jsonl")}
    assert len(rows) == 9 and {n for n, r in rows.items() if r["status"] == "ok"} == set(complete)
    assert all("interrupted" in r["error"] or "cannot decode" in r["error"]
               for r in rows.values() if r["status"] == "failed")

    again = batch(*args)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"{8 - len(complete)} ok, {len(complete)} skipped" in again.stdout
    after = finished(out)
    assert len(after) == 8 and all(after[n] == t for n, t in complete.items())
    assert not (out / ".work").exists()


def test_user_errors_are_one_line_before_ray_starts(tmp_path):
    proc = batch(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == f"mbunet batch: error: {tmp_path / 'nowhere'}: no such " \
                                                           f"file or folder"
    proc = batch(str(SAMPLE_CLIP), "--out", str(tmp_path / "out"), "--outputs", "masks,movie", timeout=60)
    assert proc.returncode == 2 and "--outputs takes a comma-separated subset" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inputs_folders_globs_and_lists_name_outputs_by_relative_path(clips, tmp_path):
    names = [v.name for v in expand_inputs([str(clips)])]
    assert names[0] == "broken.mp4" and names[-1] == "day2/clip7.mp4" and len(names) == 9
    assert [v.name for v in expand_inputs([str(clips / "day2" / "*.mp4")])] == ["clip7.mp4"]
    listing = tmp_path / "videos.csv"
    listing.write_text(f"camera,video\nA,{clips / 'clip1.mp4'}\nB,{clips / 'day2' / 'clip7.mp4'}\n")
    assert [v.name for v in expand_inputs([str(listing)])] == ["clip1.mp4", "day2/clip7.mp4"]
    (tmp_path / "list.txt").write_text(f"# two clips, one twice\n{clips / 'clip1.mp4'}\n{clips / 'clip1.mp4'}\n")
    assert len(expand_inputs([str(tmp_path / "list.txt")])) == 1
    # an --out inside the archive: its overlays are not inputs of the next run
    (clips / "out" / "clip1.mp4").mkdir(parents=True, exist_ok=True)
    (clips / "out" / "clip1.mp4" / "overlay.mkv").write_bytes(b"x")
    try:
        assert len(expand_inputs([str(clips)], exclude=clips / "out")) == 9
    finally:
        (clips / "out" / "clip1.mp4" / "overlay.mkv").unlink()


def test_chunk_plans_cover_every_frame_and_leave_the_end_open():
    assert plan_chunks(100, 0) == [(0, None)] and plan_chunks(100, 100) == [(0, None)]
    assert plan_chunks(250, 100) == [(0, 100), (100, 200), (200, None)]
    assert plan_chunks(0, 100) == [(0, None)]

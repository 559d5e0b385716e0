"""Fault injection on real processes (issue 31): stop signals at start-up and mid-run, SIGKILL, a full disk and a
read-only one, odd frames, a live source that comes up late, and careless commands.

Each case runs `mbunet` as a child process, as a user, a shell script or a service manager would, sends it real
signals, and checks the one-line outcome and what was kept on disk (playable frames counted by decoding the file).
The full disk is a 2 MiB tmpfs where this machine lets the test mount one (root, or an unprivileged user and mount
namespace); elsewhere (a container without CAP_SYS_ADMIN) the video writer is made to fail as OpenCV does on a full
disk, and the test says so. docs/faults.md lists the outcomes measured by hand.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_CLIP

MBUNET = [sys.executable, "-m", "mbunet.app.cli"]
#: a run as fast as the pipeline goes: untrained width-4 model, no window, no meters, no status lines
FAST = ["--model", "random:4:32x32", "--headless", "--quiet", "--no-power"]
#: MKV clusters close after 5 s of video (FFmpeg's matroska muxer): what SIGKILL may lose, at the clip's 25 fps
CLUSTER_FRAMES = 5 * 25


def start(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(MBUNET + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def mbunet(args: list[str], cwd: Path, **kw) -> tuple[int, str]:
    return finish(start(args, cwd, **kw))


def one_error_line(err: str, command: str = "run") -> str:
    """The last stderr line, checked to be the CLI's one-line error (no traceback anywhere)."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mbunet {command}: error: "), err
    return last


def playable(path: Path) -> int:
    """Frames a decoder gets out of the file (0 when it is missing or unreadable)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


def run_dir(root: Path) -> Path:
    found = glob.glob(str(root / "*"))
    assert len(found) == 1, found
    return Path(found[0])


def telemetry_lines(root: Path) -> int:
    found = glob.glob(str(root / "*" / "telemetry.jsonl"))
    return sum(1 for _ in open(found[0])) if found else 0


def wait_frames(root: Path, proc: subprocess.Popen, n: int, timeout: float = 30) -> None:
    """Until the sinks have written `n` frames (telemetry.jsonl is line-buffered)."""
    deadline = time.monotonic() + timeout
    while telemetry_lines(root) < n:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the signal"
        time.sleep(0.05)


def wait_line(proc: subprocess.Popen, prefix: str) -> list[str]:
    """Read stderr until a line starts with `prefix`; returns the lines read."""
    lines = []
    while not lines or not lines[-1].startswith(prefix):
        line = proc.stderr.readline()
        assert line, f"stderr ended before a line starting {prefix!r}: {lines}"
        lines.append(line)
    return lines


# -- 1. stop signals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("burst", [("SIGTERM", "SIGTERM"), ("SIGINT", "SIGINT", "SIGINT"), ("SIGHUP", "SIGTERM")])
def test_signals_mid_run_keep_every_frame(tmp_path, burst):
    """What `timeout`, a double Ctrl-C or systemd send: the run ends 0 with a playable file whose frame count is
    summary.json's and telemetry.jsonl's (it used to leave a 0-byte MKV, or crash on 8K frames)."""
    runs, out = tmp_path / "runs", tmp_path / "out.mkv"
    proc = start(["run", str(SAMPLE_CLIP), str(out), "--loop", "--run-dir", str(runs), *FAST], tmp_path)
    wait_frames(runs, proc, 30)
    for name in burst:
        proc.send_signal(getattr(signal, name))
    rc, err = finish(proc)
    assert rc == 0 and "Traceback" not in err, err
    summary = json.loads((run_dir(runs) / "summary.json").read_text())
    assert summary["stopped_early"] and summary["error"] is None and summary["signals"][0] == burst[0]
    assert summary["frames"] >= 30 and playable(out) == summary["frames"] == telemetry_lines(runs)


def test_signals_at_start_up_end_the_run_cleanly(tmp_path):
    """Signals while the model is still loading: the run stops before its first frame, with a summary."""
    runs, out = tmp_path / "runs", tmp_path / "out.mkv"
    proc = start(["run", str(SAMPLE_CLIP), str(out), "--run-dir", str(runs), "--model", "random:16:256x256",
                  "--headless", "--no-power"], tmp_path)
    wait_line(proc, "source: ")  # printed once the signals are watched, before the model is built
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 0 and "Traceback" not in err, err
    summary = json.loads((run_dir(runs) / "summary.json").read_text())
    assert summary["stopped_early"] and summary["frames"] == playable(out) < 5


def test_sigkill_keeps_the_flushed_clusters(tmp_path):
    """SIGKILL cannot be caught: the MKV keeps every cluster FFmpeg finished; only the open one (at most 5 s of
    video) is lost, and the file still plays."""
    runs, out = tmp_path / "runs", tmp_path / "out.mkv"
    proc = start(["run", str(SAMPLE_CLIP), str(out), "--loop", "--run-dir", str(runs), *FAST], tmp_path)
    wait_frames(runs, proc, 4 * CLUSTER_FRAMES)
    proc.kill()
    proc.wait()
    written, kept = telemetry_lines(runs), playable(out)
    assert not (run_dir(runs) / "summary.json").exists()
    assert 0 < kept <= written and written - kept <= CLUSTER_FRAMES, (written, kept)


# -- 2. disk faults -------------------------------------------------------------------------------------------


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return mount.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (None where this machine does not let the test mount one); unmounted afterwards."""
    disk = tmp_path / "disk"
    mounted = os.geteuid() == 0 and _mount_tmpfs(disk, "size=2m")
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# Where no tmpfs can be mounted: OpenCV's writer answers False, as it does once FFmpeg cannot write (ENOSPC)
_FAILING_WRITER = """
import sys, cv2
from mbunet.app.cli import main
real = cv2.VideoWriter
class Full:
    def __init__(self, *a): self.w, self.n = real(*a), 0
    def isOpened(self): return self.w.isOpened()
    def write(self, image):
        self.n += 1
        return False if self.n > 20 else self.w.write(image)
    def release(self): self.w.release()
cv2.VideoWriter = Full
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_is_one_line_and_keeps_the_frames(tmp_path, small_disk):
    runs = tmp_path / "runs"
    out = (small_disk or tmp_path) / "out.mkv"
    args = ["run", str(SAMPLE_CLIP), str(out), "--loop", "--run-dir", str(runs), *FAST]
    if small_disk is None:
        proc = subprocess.Popen([sys.executable, "-c", _FAILING_WRITER, *args], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        rc, err = finish(proc)
    else:
        rc, err = mbunet(args, tmp_path)
    line = one_error_line(err)
    reason = "no space left on device" if small_disk else "the encoder refused the frame"
    assert rc == 2 and f"{out}: cannot write ({reason}" in line, line
    summary = json.loads((run_dir(runs) / "summary.json").read_text())
    assert f"{summary['frames']} frames written; summary {run_dir(runs)}/summary.json" in line
    # FFmpeg buffers before it writes: the frames it could not put on the disk are the last few it was given
    assert 0 < playable(out) <= summary["frames"] and summary["error"] in line


def test_read_only_run_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    if not (os.geteuid() == 0 and _mount_tmpfs(ro, "ro,size=1m")):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        rc, err = mbunet(["run", str(SAMPLE_CLIP), "--run-dir", str(ro / "runs"), *FAST], tmp_path)
        line = one_error_line(err)
        assert rc == 2 and str(ro / "runs") in line and "cannot create the run folder (Read-only file system)" in line
        rc, err = mbunet(["run", str(SAMPLE_CLIP), str(ro / "out.mkv"), "--run-dir", str(tmp_path / "runs"), *FAST],
                         tmp_path)
        assert rc == 2 and f"{ro / 'out.mkv'}: cannot write there (Read-only file system)" in one_error_line(err)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


# -- 3. odd frames --------------------------------------------------------------------------------------------


def test_odd_frames_run_without_a_traceback(tmp_path):
    """Gray, BGRA and 16-bit images, a size change mid-stream (letterboxed, aspect kept) and a corrupt file."""
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    wide = np.full((48, 64, 3), 200, np.uint8)
    cv2.imwrite(str(frames / "0.png"), wide)
    cv2.imwrite(str(frames / "1.png"), wide[..., 0])                                   # gray
    cv2.imwrite(str(frames / "2.png"), np.dstack([wide, wide[..., :1]]))              # BGRA
    cv2.imwrite(str(frames / "3.png"), wide.astype(np.uint16) * 257)                  # 16-bit
    cv2.imwrite(str(frames / "4.png"), np.full((64, 48, 3), 200, np.uint8))          # portrait: letterboxed
    (frames / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")                    # corrupt
    out, runs = tmp_path / "out.avi", tmp_path / "runs"
    rc, err = mbunet(["run", str(frames), f"{out}?codec=MJPG", "--run-dir", str(runs), *FAST, "--overlay", "mask"],
                     tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    summary = json.loads((run_dir(runs) / "summary.json").read_text())
    assert summary["frames"] == 5 and summary["corrupt"] == 1 and playable(out) == 5
    cap = cv2.VideoCapture(str(out))
    images = [cap.read()[1] for _ in range(5)]
    assert all(im.shape == (48, 64, 3) for im in images)
    # the 48x64 portrait frame fits 36 px wide in the middle of the 64 px: black bars left and right, not stretched
    portrait = images[4].max(axis=(0, 2))
    assert portrait[:10].max() < 40 and portrait[-10:].max() < 40 and portrait[20:44].min() > 40


def test_decoded_frames_of_any_layout_become_bgr8():
    """What a GStreamer pipeline or a camera may hand over (GRAY8, BGRx, 16-bit) before the pipeline sees it."""
    from mbunet.preprocess import to_bgr8

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for frame in (gray, gray[..., None], np.dstack([gray] * 4), gray.astype(np.uint16) << 8):
        bgr = to_bgr8(frame)
        assert bgr.dtype == np.uint8 and bgr.shape == (3, 4, 3) and (bgr[..., 1] == gray).all()
    empty, floats, two = np.zeros((0, 4, 3), np.uint8), np.zeros((3, 4, 3), np.float32), np.zeros((3, 4, 2), np.uint8)
    assert all(to_bgr8(broken) is None for broken in (None, empty, floats, two))


@pytest.mark.parametrize("name", ["one.png", "one.avi"])
def test_a_one_pixel_input_runs(tmp_path, name):
    import cv2

    src = tmp_path / name
    if name.endswith(".png"):
        cv2.imwrite(str(src), np.full((1, 1, 3), 120, np.uint8))
    else:
        w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 25, (1, 1))
        for i in range(5):
            w.write(np.full((1, 1, 3), 40 * i, np.uint8))
        w.release()
    out, runs = tmp_path / "out.mkv", tmp_path / "runs"
    rc, err = mbunet(["run", str(src), str(out), "--run-dir", str(runs), *FAST], tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    summary = json.loads((run_dir(runs) / "summary.json").read_text())
    assert summary["frames"] >= 1 and playable(out) == summary["frames"]


# -- 4. live sources that are not up yet ----------------------------------------------------------------------


def test_live_source_that_comes_up_late_is_waited_for(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (apt-get install -y ffmpeg)")
    from test_streams import free_port, http_server, stop

    port, runs = free_port(), tmp_path / "runs"
    proc = start(["run", f"http://127.0.0.1:{port}/live.ts", str(tmp_path / "out.mkv"), "--max-frames", "10",
                  "--open-timeout", "2", "--run-dir", str(runs), *FAST], tmp_path)
    waited = wait_line(proc, "waiting for the source: ")
    assert "cannot open (failed after 0." in waited[-1] and "retrying with back-off (until stopped)" in waited[-1]
    time.sleep(2)
    server = http_server(port)
    try:
        rc, err = finish(proc)
    finally:
        stop(server)
    assert rc == 0 and "Traceback" not in err and f"http://127.0.0.1:{port}/live.ts: up after " in err, err
    assert json.loads((run_dir(runs) / "summary.json").read_text())["frames"] >= 1


# -- 5. careless commands -------------------------------------------------------------------------------------


def test_train_without_torch_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "no-torch"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    rc, err = mbunet(["train", "--config", "mbunet"], tmp_path, env=env)
    assert rc == 2 and "needs PyTorch, which is not installed: pip install 'mbunet[torch]'" in one_error_line(
        err, "train")


def test_models_with_none_shipped_fails(tmp_path):
    rc, err = mbunet(["models"], tmp_path, env={**os.environ, "MBUNET_WEIGHTS": str(tmp_path)})
    assert rc == 2 and f"no shipped models in {tmp_path}" in one_error_line(err, "models")


def test_checkpoint_given_as_a_model_says_export_it(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = tmp_path / "last.pt"
    torch.save({"step": 1}, ckpt)
    rc, err = mbunet(["run", str(SAMPLE_CLIP), "--model", str(ckpt), "--headless"], tmp_path)
    assert rc == 2 and f"a training checkpoint, not a model file: convert it with `mbunet export {ckpt}" in \
        one_error_line(err)


def test_shipped_models_and_existing_files_are_never_replaced(tmp_path):
    """Following a card's Reproduce line (which used to say --export weights/<shipped>.safetensors) or exporting
    over a file fails before any work, and the shipped model is untouched."""
    from mbunet.modelfile import DEFAULT_MODEL, WEIGHTS_DIR

    shipped = WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"
    if not shipped.is_file():
        pytest.skip(f"no shipped {DEFAULT_MODEL} in {WEIGHTS_DIR}")
    before = shipped.stat().st_mtime_ns, shipped.read_bytes()
    rc, err = mbunet(["train", "--config", "mbunet", "--export", str(shipped)], tmp_path)
    assert rc == 2 and f"{shipped} is the shipped model {DEFAULT_MODEL}: " in one_error_line(err, "train")
    rc, err = mbunet(["export", str(tmp_path / "last.pt"), str(shipped)], tmp_path)
    assert rc == 2 and "pass --force to replace it" in one_error_line(err, "export")
    existing = tmp_path / "mine.safetensors"
    existing.write_bytes(b"keep me")
    rc, err = mbunet(["export", str(tmp_path / "last.pt"), str(existing)], tmp_path)
    assert rc == 2 and f"{existing} exists: " in one_error_line(err, "export") and existing.read_bytes() == b"keep me"
    assert (shipped.stat().st_mtime_ns, shipped.read_bytes()) == before


def test_new_training_runs_never_reuse_a_name_or_a_folder(tmp_path):
    pytest.importorskip("torch")
    from mbunet.errors import ConfigError
    from mbunet.modelfile import DEFAULT_MODEL
    from mbunet.train.runs import new_run

    assert new_run(DEFAULT_MODEL, root=tmp_path) == (f"{DEFAULT_MODEL}-2", tmp_path / f"{DEFAULT_MODEL}-2")
    assert new_run(DEFAULT_MODEL, DEFAULT_MODEL, root=tmp_path)[0] == DEFAULT_MODEL  # asked for: allowed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "last.pt").write_bytes(b"")
    assert new_run("mine", root=tmp_path) == ("mine-2", tmp_path / "mine-2")
    for asked, out in (("mine", None), (None, tmp_path / "mine")):
        with pytest.raises(ConfigError, match="already holds a run .* continue it with --resume"):
            new_run("mine", asked, out, root=tmp_path)

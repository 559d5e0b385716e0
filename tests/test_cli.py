"""The `mbunet` command: JSON outputs of cost/models, doctor, and one-line errors with exit status 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mbunet.app.cli import main


def test_cost_json_ranks_transposed_convs_first(capsys):
    assert main(["cost", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {tuple(sorted(r)) for r in rows} == {("layer", "ops", "params", "rank", "score")}
    first4 = {r["layer"] for r in rows if r["rank"] <= 4}
    assert first4 == {"up-CT1", "up-CT2", "up-CT3", "up-CT4"}
    assert {r["layer"] for r in rows} == {f"down-C{k}" for k in range(1, 5)} | {f"up-CT{k}" for k in range(1, 5)} \
        | {f"up-C{k}" for k in range(1, 5)}


def test_cost_table_for_another_network(capsys):
    assert main(["cost", "--width", "32", "--size", "192x144", "--w-op", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "width 32 at 192x144" in out and "up-CT4" in out


def test_models_json_schema(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for r in rows:
        assert set(r) == {"name", "kind", "input_size", "classes", "val_dice", "default"}
        assert r["kind"] in ("fp", "mbunet", "binary")
    assert sum(r["default"] for r in rows) <= 1


def test_doctor_lists_engines_and_power(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for word in ("numpy", "numba", "opencv", "reference", "torch-fp32", "power:", "--engine auto"):
        assert word in out


@pytest.mark.parametrize("argv,needle", [
    (["cost", "--size", "100x100"], "multiples of 16"),
    (["cost", "--w-op", "1.5"], "w_op"),
    (["models", "--card", "no-such-model"], "not a shipped model"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_console_script_runs_as_a_process():
    out = subprocess.run([sys.executable, "-m", "mbunet.app.cli", "cost", "--json", "--width", "8", "--size", "32x32"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)[0]["rank"] == 1


def test_unreadable_video_is_one_line_without_opencv_warnings(tmp_path):
    not_a_video = tmp_path / "clip.mp4"
    not_a_video.write_text("not a video")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    out = subprocess.run([sys.executable, "-m", "mbunet.app.cli", "bench", "--input", str(not_a_video), "--engines", "cpu"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"mbunet bench: error: {not_a_video}: cannot decode (not a video "
                                               "OpenCV's FFmpeg can read, or corrupt)"]

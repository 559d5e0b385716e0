"""`.ci/gpu-train` end to end on the CPU with one step and a handful of composites, so that the prepared training
call for the next GPU session cannot rot between sessions (issue 29): it trains, exports, and scores each model
against the shipped model of its kind and MBU-Net against the Binary model of its seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO
from train_fixtures import make_composite_tree


@pytest.mark.slow
def test_gpu_train_trains_exports_and_scores_every_model(tmp_path):
    make_composite_tree(tmp_path / "data")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "SEEDS": "0", "STEPS": "1", "EVAL_COUNT": "4",
           "THREADS": "1"}
    done = subprocess.run([str(REPO / ".ci" / "gpu-train"), str(tmp_path / "data"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    scores = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    pairs = {(s["model"], s["against"]["model"]) for s in scores}
    assert pairs == {("binary-w32-s0", "binary-w32"), ("mbunet-w32-s0", "mbunet-w32"),
                     ("mbunet-w32-s0", "binary-w32-s0")}, done.stdout[-3000:]
    assert all(s["images"] == 4 and "dice_difference_ci95" in s for s in scores)
    log = (out / "gpu-train.log").read_text()
    assert log.count("paired against") == 3 and "== done" in log
    with tarfile.open(out / "models.tgz") as tgz:
        names = {os.path.basename(n) for n in tgz.getnames()}
    assert {"mbunet-s0.safetensors", "binary-s0.safetensors", "mbunet-s0.md", "binary-s0.md"} <= names

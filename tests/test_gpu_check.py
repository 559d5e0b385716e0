"""`.ci/gpu-check` in its dry run (GPU_CHECK_DRY=1): the same steps on the CPU with tiny sizes and the CPU engines,
so that the one prepared call for the next GPU session cannot rot between sessions (issue 36)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO

STEPS = ["install", "doctor", "build-kernels", "mma-bench", "shipped-b1", "paper-b1", "pytest-gpu", "shipped-b2",
         "paper-b2", "clip-engine", "clip-pipeline", "pipeline-ratio"]
GPU_ONLY = {"build-kernels", "mma-bench"}


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_returns_the_bench_folders(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "MBUNET_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(REPO / ".ci" / "gpu-check"), str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    steps = [line.split("\t") for line in (out / "gpu-check-steps.tsv").read_text().splitlines()]
    assert [s[0] for s in steps] == STEPS, done.stdout[-3000:]
    for name, status, _ in steps:
        expected = "skipped: dry run" if name in GPU_ONLY else "ok"
        assert status.startswith(expected), f"{name}: {status}\n{done.stdout[-3000:]}"
    assert done.returncode == 0
    assert (out / "gpu-check.log").read_text().startswith("== ")

    with tarfile.open(out / "gpu-check.tgz") as tgz:
        tgz.extractall(tmp_path / "results", filter="data")
    results = tmp_path / "results"
    for name in ("shipped-b1", "shipped-b2", "paper-b1", "paper-b2"):
        rows = json.loads((results / name / "bench.json").read_text())
        assert [r["engine"] for r in rows] == ["cpu", "torch-fp32"] and all(r["skipped"] is None for r in rows)
        assert {r["reference_engine"] for r in rows} == {"cpu"} and rows[0]["agree_with_reference"] == 1.0
        assert {r["baseline"] for r in rows} == {"torch-fp32"}  # no fp16 baseline runs on a CPU
        assert rows[0]["size"] == ("64x64" if name.startswith("paper") else "192x144")
        assert rows[0]["batch"] == int(name[-1])
    assert (results / "shipped-b1" / "layers-cpu.csv").is_file()  # batch 1 times each layer too
    assert not (results / "shipped-b2" / "layers-cpu.csv").exists()
    ratio = json.loads((results / "pipeline.json").read_text())
    assert ratio["engine"] == "cpu" and ratio["pipeline_frames"] == 20 and ratio["pipeline_over_engine"] > 0
    assert {p.name for p in (results / "logs").iterdir()} == {f"{s}.txt" for s in STEPS if s not in GPU_ONLY}

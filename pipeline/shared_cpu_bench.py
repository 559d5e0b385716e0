"""The `cpu` engine on cores shared with other processes, beside onnxruntime int8 and fp32 of the full-precision
U-Net, all in one process (issue 35; the figures are in docs/benchmarks.md):

    python -m mbunet.shared_cpu_bench [--loads idle,busy1,busy2,torch2] [--rounds 4] [--seconds 1.5] [--out DIR]

Needs the bench extra (pip install 'mbunet[bench,torch]': onnx and onnxruntime, torch for the export and the
training load); the engine itself needs none of them.

Engines, on the same frames (the bundled clip, letterboxed to the model input, batch 1):
- `cpu` as shipped: the thread count chosen per call by measured latency (engines/cpu_threads.py), and the
  alternatives measured beside it: 2 threads fixed (the design before issue 35), 1 thread fixed, and 2 threads with
  dynamic chunks (numba.parallel_chunksize(1): each row tile taken by whichever thread is free);
- onnxruntime fp32 of `unet-fp-w32`, exported by torch.onnx, and its int8 static quantisation (QDQ, per-channel
  int8 weights, uint8 activations calibrated on the clip's frames), both on as many intra-op threads as usable
  cores, onnxruntime's defaults otherwise (what a user would pick).
Loads (pipeline.background_load for the busy loops): idle; busy1 / busy2: one / two busy processes; torch2: a
2-thread PyTorch job training a small U-Net of this repo on random data. Within a load the engines alternate in
rounds of `--seconds` each, so slow drifts of the machine fall on all of them; a row is the median over its rounds'
calls. Other processes on the machine are not ours to stop: the CPU time they took during each load is measured from
/proc and printed beside it, so a reader can tell a quiet run from a disturbed one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from . import OPENMP_DEFAULTS
from .background_load import BackgroundLoad
from .bench import video_frames
from .engines.base import create_engine
from .engines.cpu_threads import THREADS_ENV, usable_cores
from .modelfile import load_model
from .resources import sample_clip

LOADS = ("idle", "busy1", "busy2", "torch2")
# a 2-thread PyTorch training job: a width-16 U-Net of this repository on random 192x144 batches; it ends when its
# parent does, like the busy loops
TRAIN_JOB = """
import os, torch
from mbunet.arch import Architecture
from mbunet.nn import UNet
torch.set_num_threads(2)
parent = os.getppid()
net = UNet(Architecture(width=16, input_size=(144, 192), quantized=False))
opt = torch.optim.Adam(net.parameters(), 1e-3)
x, y = torch.rand(4, 3, 144, 192), (torch.rand(4, 1, 144, 192) > 0.5).float()
while os.getppid() == parent:
    opt.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
    opt.step()
"""


@contextmanager
def training_job():
    # without the OpenMP wait settings that importing mbunet put into this environment: a user's training job runs
    # with OpenMP's default, whose idle threads spin 300,000 rounds before they sleep
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_DEFAULTS}
    job = subprocess.Popen([sys.executable, "-c", TRAIN_JOB], stdin=subprocess.DEVNULL, env=env)
    try:
        time.sleep(3)  # past its start-up (imports, first allocations): the steady training loop is the load
        yield
    finally:
        job.terminate()
        job.wait()


def load_context(name: str):
    return {"idle": nullcontext, "busy1": lambda: BackgroundLoad(1), "busy2": lambda: BackgroundLoad(2),
            "torch2": training_job}[name]()


class OnnxUnet:
    """The full-precision U-Net in onnxruntime, fp32 or int8 static quantisation; segment() as the engines'."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def segment(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), np.float32) / 255.0
        logits = self.session.run(None, {"x": x})[0]
        return (logits[:, 0] >= 0).astype(np.uint8)


def export_fp32(path: Path, input_size: tuple[int, int]) -> Path:
    """The shipped full-precision U-Net as an fp32 ONNX file, batch 1, input x = RGB / 255 [1, 3, H, W].

    Runs before any frame is read: torch's TorchScript tracer aborted the process once the frame reader had loaded
    GStreamer's libraries (PyGObject) into it."""
    import torch

    from .nn import fp_unet

    net = fp_unet(load_model("unet-fp-w32")).eval()
    # the TorchScript exporter: the torch.export one needs onnxscript, one more dependency for the same graph
    torch.onnx.export(net, (torch.rand(1, 3, *input_size),), str(path), input_names=["x"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    return path


def quantize_int8(fp32: Path, path: Path, frames: np.ndarray) -> Path:
    """Static int8 quantisation of `fp32` (QDQ, per-channel int8 weights, uint8 activations) calibrated on `frames`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = path.with_name(path.stem + "-pre.onnx")
    quant_pre_process(str(fp32), str(pre))

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": f[None].transpose(0, 3, 1, 2).astype(np.float32) / 255.0} for f in frames])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(pre), str(path), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path


def cpu_engine(model, threads: int | None):
    """The `cpu` engine as shipped (threads None), or with its thread count pinned ($MBUNET_CPU_THREADS at load)."""
    if threads is None:
        return create_engine("cpu", model)
    os.environ[THREADS_ENV] = str(threads)
    try:
        return create_engine("cpu", model)
    finally:
        del os.environ[THREADS_ENV]


def dynamic_chunks(engine):
    """A callable running `engine` with numba's dynamic schedule: every row tile a chunk of its own."""
    import numba

    def segment(frames):
        with numba.parallel_chunksize(1):
            return engine.segment(frames)

    return segment


def time_calls(segment, frames: np.ndarray, seconds: float) -> list[float]:
    segment(frames)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        segment(frames)
        times.append(time.perf_counter() - start)
    return times


def busy_seconds() -> float:
    """CPU seconds every process has run since boot (user, nice, system, irq, softirq, steal) from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_seconds(pid: int) -> float:
    """CPU seconds of process `pid` and its children (the load processes are children of this one)."""
    seconds = 0.0
    for task in [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        try:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a load process that ended meanwhile
            continue
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def run(loads: list[str], rounds: int, seconds: float, out: Path) -> dict:
    model = load_model("mbunet-w32")
    cores = usable_cores()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(Path(tmp, "unet-fp32.onnx"), model.arch.input_size)
        frames = video_frames(str(sample_clip()), model.arch.input_size, 17)
        int8 = quantize_int8(fp32, Path(tmp, "unet-int8.onnx"), frames)
        shipped = cpu_engine(model, None)
        engines = {
            "cpu": shipped.segment,
            "cpu 2 threads fixed": cpu_engine(model, 2).segment,
            "cpu 1 thread fixed": cpu_engine(model, 1).segment,
            "cpu 2 threads dynamic chunks": dynamic_chunks(cpu_engine(model, 2)),
            "onnxruntime int8": OnnxUnet(int8, cores).segment,
            "onnxruntime fp32": OnnxUnet(fp32, cores).segment,
        }
        results = {"cores": cores, "model": model.name, "size": f"{frames.shape[2]}x{frames.shape[1]}", "loads": {}}
        one = frames[:1]
        for load in loads:
            times = {name: [] for name in engines}
            calls_before = dict(shipped.threads.calls)
            with load_context(load):
                busy0, ours0, wall0 = busy_seconds(), tree_seconds(os.getpid()), time.perf_counter()
                for _ in range(rounds):
                    for name, segment in engines.items():
                        times[name] += time_calls(segment, one, seconds)
                wall = time.perf_counter() - wall0
                others = (busy_seconds() - busy0 - (tree_seconds(os.getpid()) - ours0)) / wall
            row = {name: {"images_per_s": 1 / float(np.median(t)), "ms_p50": 1e3 * float(np.median(t)),
                          "ms_p95": 1e3 * float(np.percentile(t, 95)), "calls": len(t)} for name, t in times.items()}
            chosen = {count: n - calls_before[count] for count, n in shipped.threads.calls.items()}
            results["loads"][load] = {"engines": row, "other_processes_cores": others,
                                      "cpu_threads_calls": chosen, "loadavg": os.getloadavg()}
            print(format_load(load, results["loads"][load]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shared_cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "shared_cpu.md").write_text(markdown(results) + "\n")
    return results


def format_load(load: str, result: dict) -> str:
    rows = "\n".join(f"  {name:30s} {r['images_per_s']:8.1f} img/s  p50 {r['ms_p50']:7.2f} ms  "
                     f"p95 {r['ms_p95']:7.2f} ms" for name, r in result["engines"].items())
    threads = ", ".join(f"{count} threads on {n} calls" for count, n in result["cpu_threads_calls"].items())
    return f"{load}: other processes {result['other_processes_cores']:.2f} cores busy; cpu ran {threads}\n{rows}"


def markdown(results: dict) -> str:
    """One row per load: every engine's images/s (p50), the shipped engine's share of its idle speed and its ratio
    over onnxruntime int8."""
    loads = results["loads"]
    names = list(next(iter(loads.values()))["engines"])
    head = "| load | " + " | ".join(names) + " | cpu / idle cpu | cpu / ort int8 | other processes (cores) |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    idle = loads.get("idle", {}).get("engines", {}).get("cpu", {}).get("images_per_s")
    for load, r in loads.items():
        ips = {n: r["engines"][n]["images_per_s"] for n in names}
        share = f"{ips['cpu'] / idle:.0%}" if idle else "-"
        lines.append(f"| {load} | " + " | ".join(f"{ips[n]:.1f}" for n in names)
                     + f" | {share} | {ips['cpu'] / ips['onnxruntime int8']:.1f}x | {r['other_processes_cores']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mbunet.shared_cpu_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", default=",".join(LOADS), help=f"comma-separated, from {', '.join(LOADS)}")
    p.add_argument("--rounds", type=int, default=4, help="rounds of every engine per load (default 4)")
    p.add_argument("--seconds", type=float, default=1.5, help="timed seconds per engine and round (default 1.5)")
    p.add_argument("--out", default=f"runs/shared-cpu/{time.strftime('%Y%m%d-%H%M%S')}", help="results folder")
    args = p.parse_args(argv)
    loads = [name.strip() for name in args.loads.split(",") if name.strip()]
    unknown = set(loads) - set(LOADS)
    if unknown:
        p.error(f"unknown loads {sorted(unknown)}; valid: {', '.join(LOADS)}")
    results = run(loads, args.rounds, args.seconds, Path(args.out))
    print(markdown(results))
    print(f"results: {args.out}/shared_cpu.json, {args.out}/shared_cpu.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

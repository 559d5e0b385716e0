"""`mbunet batch`: connect to Ray (embedded, or a cluster), start the workers, run the scheduler, write the
manifest.

Why Ray actors and not Ray Data: the unit of work here is a video (or a chunk of one) that a worker decodes,
segments and writes where it lies, in frame order, into files on shared storage. Ray Data's unit is a block of
rows flowing through the object store: frames would be shipped between processes (a 1080p frame is 6 MB; our
engine reads 83 kB of it), the outputs would have to be re-assembled per video, and a row that fails fails the
dataset unless errors are tolerated blindly (max_errored_blocks), where we need a per-video row saying why. Actors
give what the work needs: the model and engine loaded once per worker (GPU workers with num_gpus), per-video
failure and resume state, and chunks of one video on several workers. Ray Data would fit a different split -
decode on CPU nodes, segment on GPU nodes - worth having only if decoding, not the engine, became the limit on
GPU nodes with few cores (docs/batch.md works this out).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..api import load_run_model
from ..engines.base import engine_class
from ..errors import EngineUnavailable, MbunetError
from ..signals import StopOnSignals
from . import layout
from .inputs import expand_inputs
from .manifest import check_format, write_manifest
from .options import BatchOptions
from .progress import Progress
from .scheduler import Scheduler
from .worker import BatchWorker

#: engines that need a GPU; "auto" and torch-fp32 use one when the cluster has one, cpu and reference never
GPU_ENGINES = ("bmma", "cuda", "cuda-graph", "torch-fp16", "torch-fp16-graph")
CPU_ENGINES = ("cpu", "reference")
#: the CLI's quieting of OpenCV/FFmpeg (app/cli.py), for worker processes, which do not inherit the driver's env
WORKER_ENV = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None    # None: an embedded Ray on this machine; "auto", "host:port" or "ray://host:10001"
    workers: int = 0              # 0: as many as the cluster's CPUs (or GPUs x workers_per_gpu) allow
    cpus_per_worker: float = 1.0
    workers_per_gpu: int = 1      # several decoders feeding one GPU, when one core cannot keep it busy


@dataclass
class BatchResult:
    rows: list[dict]
    manifest: Path
    workers: int
    engine: str
    wall_s: float          # from the first job to the last result
    startup_s: float       # connecting to Ray and loading the model in every worker
    interrupted: bool

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)


def run_batch(inputs: list[str], out: str | Path, model: str = "", engine: str = "auto",
              options: BatchOptions = BatchOptions(), cluster: ClusterOptions = ClusterOptions(),
              manifest_format: str = "jsonl", progress: bool = True,
              log: Callable[[str], None] | None = None) -> BatchResult:
    """Segment every video named by `inputs` into OUT/<name>/ and write OUT/manifest.<format>."""
    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    check_format(manifest_format)
    videos = expand_inputs(inputs, exclude=out)  # every user error before Ray starts
    if engine != "auto":
        engine_class(engine)
    loaded = load_run_model(model)
    if loaded.path is None:
        log(f"warning: model {loaded.name} has untrained random weights: the masks are noise")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MbunetError(f"{out}: cannot create the output folder ({e.strerror})") from e
    key = layout.settings_key(options.settings(loaded.card["arrays_sha256"]))
    ray = _import_ray(embedded=cluster.address is None)
    t0 = time.perf_counter()
    _connect(ray, cluster.address)
    stop = threading.Event()
    try:
        with StopOnSignals(stop):  # after ray.init, which installs handlers of its own
            workers, engine_name = _start_workers(ray, loaded, _model_ref(model), engine, options, out, cluster,
                                                  log, stop)
            t1 = time.perf_counter()
            bar = Progress(len(videos), progress)
            try:
                rows = Scheduler(ray, workers, videos, key, options.chunk_frames, bar, stop).run()
            finally:
                bar.close()
            wall = time.perf_counter() - t1
            for w in workers:  # end them now: a stopped batch must not leave chunks running on the cluster
                ray.kill(w)
    finally:
        ray.shutdown()
    manifest = write_manifest(out, rows, manifest_format)
    layout.prune_work(out)
    return BatchResult(rows, manifest, len(workers), engine_name, wall, t1 - t0, stop.is_set())


def _model_ref(model: str) -> str:
    """The --model value as every worker can load it: a file as an absolute path (on storage the workers see)."""
    return str(Path(model).resolve()) if model and Path(model).is_file() else model


def _import_ray(embedded: bool):
    if embedded:
        # Ray binds even a one-machine instance to the machine's network address; this switch (meant for laptops,
        # read when ray is imported) keeps the embedded Ray on 127.0.0.1, out of reach of the network
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as e:
        raise MbunetError("mbunet batch needs Ray: pip install 'mbunet[ray]'") from e
    return ray


def _connect(ray, address: str | None) -> None:
    """An embedded single-machine Ray (address None), or a running cluster."""
    # Ray's own notices (start-up, token authentication) would bury the batch's lines; its errors still show
    kwargs = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address is None:
            # "local": always a fresh Ray of our own, even where RAY_ADDRESS names another
            ray.init(address="local", include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        chain = [e]
        while chain[-1].__cause__ is not None:
            chain.append(chain[-1].__cause__)
        if any("InvalidAuthToken" in str(c) for c in chain):  # Ray nests the reason in its messages' text
            raise MbunetError(f"the Ray cluster at {address} wants its authentication token: export "
                              f"RAY_AUTH_MODE=token, with the token in ~/.ray/auth_token or $RAY_AUTH_TOKEN") from e
        raise MbunetError(f"cannot connect to the Ray cluster at {address or 'local'}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e


def _start_workers(ray, model, model_ref: str, engine: str, options: BatchOptions, out: Path,
                   cluster: ClusterOptions, log, stop: threading.Event) -> tuple[list, str]:
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if engine in GPU_ENGINES and not gpus:
        raise EngineUnavailable(f"engine {engine} needs a GPU, and the Ray cluster has none")
    use_gpu = gpus > 0 and engine not in CPU_ENGINES
    env = dict(WORKER_ENV)
    if use_gpu:
        fit = int(gpus * cluster.workers_per_gpu)
        opts = {"num_gpus": 1 / cluster.workers_per_gpu, "num_cpus": cluster.cpus_per_worker}
    else:
        fit = int(cpus // cluster.cpus_per_worker)
        opts = {"num_cpus": cluster.cpus_per_worker}
        # the cpu engine's thread pool sized to the worker's share, not to every core of the node
        env["NUMBA_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(max(1, int(cluster.cpus_per_worker)))
    if fit < 1:
        raise MbunetError(f"the Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs) has no room for a worker of "
                          f"{cluster.cpus_per_worker:g} CPUs")
    n = cluster.workers or fit
    if n > fit:
        log(f"warning: --workers {n}: only {fit} fit in the cluster ({cpus:g} CPUs, {gpus:g} GPUs); starting {fit}")
        n = fit
    actor = ray.remote(BatchWorker).options(max_restarts=2, max_task_retries=2, runtime_env={"env_vars": env},
                                            **opts)
    whole_gpu = use_gpu and cluster.workers_per_gpu == 1
    # the model travels as its name and hash, not its arrays: arguments that small are kept in the actor's
    # description, so Ray can restart a lost worker anywhere without an object-store copy of the model
    workers = [actor.remote(model_ref, model.card["arrays_sha256"], engine, options, str(out.resolve()), whole_gpu)
               for _ in range(n)]
    reports = _wait_ready(ray, workers, stop)
    good = [w for w, r in zip(workers, reports) if not r["error"]]
    if not good:
        raise EngineUnavailable(reports[0]["error"])
    for r in reports:
        if r["error"]:
            log(f"warning: a worker on {r['node']} could not start: {r['error']}")
    engines = sorted({r["engine"] for r in reports if r["engine"]})
    where = "GPU" if use_gpu else "CPU"
    log(f"{len(good)} {where} workers ({opts}), engine {', '.join(engines)} ({reports[0]['reason']}); "
        f"model {model.name}")
    return good, "+".join(engines)


def _wait_ready(ray, workers: list, stop: threading.Event) -> list[dict]:
    pending = {w.ready.remote(): i for i, w in enumerate(workers)}
    reports: list[dict | None] = [None] * len(workers)
    while pending:
        if stop.is_set():
            raise KeyboardInterrupt
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
        for ref in ready:
            i = pending.pop(ref)
            try:
                reports[i] = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker process itself failed (mbunet not installed there?)
                line = [x for x in str(e).strip().splitlines() if x.strip()][-1:] or [type(e).__name__]
                reports[i] = {"engine": None, "reason": None, "node": "?", "error": line[0].strip()}
    return reports

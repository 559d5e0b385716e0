"""`mbunet bench`: every engine on the same model and the same input, one run (docs/benchmarks.md).

Per engine: warm-ups (the first also gives the masks compared with the reference engine's), then timed
iterations, each ended by engine.sync() before the clock is read; median, p5, p95, images/s; the power meter's
window over the timed iterations gives W and J/image, beside the idle W measured once before any engine ran.
speedup = images/s / baseline images/s and energy_ratio = baseline J/image / J/image (both > 1 mean better than
the baseline), the baseline being the strongest fp16 one that ran (a GPU): the faster of torch-fp16 (eager) and
torch-fp16-graph (CUDA graphs, no launch overhead) at this batch size, else torch-fp32. Each row names it.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from .background_load import BackgroundLoad
from .background_load import describe as describe_load
from .engines.base import Engine, choose_engine, create_engine, engine_class, list_engines
from .errors import ConfigError, EngineUnavailable, MbunetError, SourceError
from .layer_times import LayerProfile, LayerTime, format_layers, layer_times
from .modelfile import ModelFile
from .power import PowerMeter

#: the fp16 baselines, of which the fastest that ran in a bench is the one the ratios are over
FP16_BASELINES = ("torch-fp16", "torch-fp16-graph")
#: the baseline where no fp16 one ran (no GPU)
FALLBACK_BASELINE = "torch-fp32"
REFERENCE = "reference"
#: a power window shorter than this holds few samples (and NVML's counter updates only every few tens of ms),
#: so the timed iterations go on past --iters until the window is this long (--min-seconds)
MIN_WINDOW_S = 1.0
#: a bench batch repeats at most this many distinct frames: no engine's time depends on pixel values, and the
#: numpy reference (about 1.5 s a frame at 192x144) then runs once per distinct frame, not 256 times at batch 256.
#: A prime, so that no power-of-two tiling of the batch lines up with the repeat.
DISTINCT_FRAMES = 17


@dataclass
class BenchRow:
    """One engine's result; every measured field is None where it could not be measured (`skipped` says why)."""

    engine: str
    batch: int
    size: str
    images_per_s: float | None = None
    ms_median: float | None = None
    ms_p5: float | None = None
    ms_p95: float | None = None
    iters: int | None = None  # timed iterations run: --iters, or more to fill --min-seconds
    load_s: float | None = None  # creating the engine: weights in place, kernels compiled or loaded from a cache
    agree_with_reference: float | None = None
    watts: float | None = None
    joules_per_image: float | None = None
    idle_watts: float | None = None
    power_source: str = ""
    speedup: float | None = None
    energy_ratio: float | None = None
    baseline: str | None = None
    reference_engine: str | None = None  # whose masks agree_with_reference compares with (--agree-with)
    skipped: str | None = None
    engine_detail: str | None = None  # what the engine chose where the machine decides (bmma: its library, why)
    background_load: int = 0  # busy processes running beside the engine (--background-load)
    #: --layers: the engine's per-layer times, or why it has none (bench.json only, and layers-<engine>.csv)
    layers: LayerProfile | str | None = None

    def to_json(self) -> dict:
        return asdict(self)


COLUMNS = tuple(f.name for f in fields(BenchRow) if f.name != "layers")


@dataclass(frozen=True)
class BenchSettings:
    batch: int = 1
    iters: int = 20
    warmup: int = 3
    idle_seconds: float = 2.0
    min_seconds: float = MIN_WINDOW_S
    #: the engine whose masks every row's agreement is measured against
    agree_with: str = REFERENCE
    #: busy processes started beside the engines (pipeline.background_load), none by default
    background_load: int = 0
    #: after each engine's timed calls, time its layers one by one (layer_times)
    layers: bool = False

    def __post_init__(self) -> None:
        if (self.batch < 1 or self.iters < 1 or self.warmup < 0 or self.idle_seconds < 0 or self.min_seconds < 0
                or self.background_load < 0):
            raise ConfigError(f"need batch >= 1, iters >= 1, warmup >= 0, idle >= 0, min seconds >= 0, background "
                              f"load >= 0; got batch {self.batch}, iters {self.iters}, warmup {self.warmup}, idle "
                              f"{self.idle_seconds}, min seconds {self.min_seconds}, background load "
                              f"{self.background_load}")


def parse_size(text: str) -> tuple[int, int]:
    """"WxH" -> (height, width), the order Architecture.input_size uses."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ConfigError(f"--size expects WxH such as 512x512, got {text!r}") from e
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        raise ConfigError(f"--size {text}: width and height must be positive multiples of 16")
    return h, w


def size_text(input_size: tuple[int, int]) -> str:
    return f"{input_size[1]}x{input_size[0]}"


def check_engine_names(names: list[str]) -> None:
    """An unknown name, or none at all, is a one-line error before anything runs (engine_class lists the valid
    ones)."""
    if not names:
        raise ConfigError(f"--engines names no engine; valid: auto, {', '.join(list_engines())}")
    for name in names:
        if name != "auto":
            engine_class(name)


def resolve_auto(names: list[str], model: ModelFile) -> list[str]:
    """"auto" becomes the engine `--engine auto` would pick for this model here."""
    return [choose_engine(model).name if n == "auto" else n for n in names]


def bench_model(model: ModelFile, size: tuple[int, int] | None, seed: int, width: int | None = None) -> ModelFile:
    """`model`, or a random model of its architecture (its masked and binary layer kinds) at `size` and `width`
    where either differs from the model's: `--size 512x512 --width 64` is the paper's network."""
    from .random_model import random_quantized_model

    arch = replace(model.arch, input_size=size or model.arch.input_size, width=width or model.arch.width)
    if arch == model.arch:
        return model
    asked = " ".join(([f"--size {size_text(size)}"] if size else []) + ([f"--width {width}"] if width else []))
    if not model.arch.quantized:
        raise ConfigError(f"{asked}: {model.name} is a full-precision model; "
                          f"only quantized models can be re-drawn at another size or width")
    return random_quantized_model(arch, seed, name=f"random bits, architecture of {model.name} at width "
                                                   f"{arch.width}, {size_text(arch.input_size)}")


def load_bench_model(ref: str | None, size: tuple[int, int] | None, seed: int, width: int | None = None) -> ModelFile:
    """--model (a path or shipped name), else the default shipped model; re-drawn at --size/--width if given."""
    from .modelfile import DEFAULT_MODEL, load_model

    if width is not None and width < 1:
        raise ConfigError(f"--width must be >= 1, got {width}")
    return bench_model(load_model(ref or DEFAULT_MODEL), size, seed, width)


def repeat_to(frames: np.ndarray, batch: int) -> np.ndarray:
    """`batch` frames cycling through `frames`."""
    return frames[np.arange(batch) % len(frames)]


def random_frames(input_size: tuple[int, int], batch: int, seed: int) -> np.ndarray:
    """Uniform random pixels: min(batch, DISTINCT_FRAMES) distinct frames repeated to `batch`."""
    h, w = input_size
    distinct = min(batch, DISTINCT_FRAMES)
    return repeat_to(np.random.default_rng(seed).integers(0, 256, size=(distinct, h, w, 3), dtype=np.uint8), batch)


def video_frames(uri: str, input_size: tuple[int, int], batch: int) -> np.ndarray:
    """The first min(batch, DISTINCT_FRAMES) frames of a video/images source, letterboxed to the model input,
    repeated to `batch`."""
    from .api import frames as read_frames
    from .preprocess import geometry, to_model_input

    frames = [to_model_input(f, geometry(f.shape[:2], input_size))
              for f in read_frames(uri, max_frames=min(batch, DISTINCT_FRAMES), reconnect=False)]
    if not frames:
        raise SourceError(f"--input {uri}: no frame could be read")
    return repeat_to(np.stack(frames), batch)


def percentile_row(times_s: list[float], batch: int) -> dict:
    ms = np.asarray(times_s) * 1e3
    median = float(np.median(ms))
    return {"ms_median": median, "ms_p5": float(np.percentile(ms, 5)), "ms_p95": float(np.percentile(ms, 95)),
            "images_per_s": batch * 1e3 / median}


def time_engine(engine: Engine, frames: np.ndarray, settings: BenchSettings,
                meter: PowerMeter) -> tuple[np.ndarray, list[float], object]:
    """(masks of the first call, per-iteration seconds, energy measurement of the timed window). At least
    `settings.iters` iterations, and more until they add up to `settings.min_seconds`."""
    masks = engine.segment(frames)
    engine.sync()
    for _ in range(settings.warmup - 1):
        engine.segment(frames)
    engine.sync()
    times, timed = [], 0.0
    meter.begin_window()
    try:
        while len(times) < settings.iters or timed < settings.min_seconds:
            t0 = time.perf_counter()
            engine.segment(frames)
            engine.sync()
            times.append(time.perf_counter() - t0)
            timed += times[-1]
    finally:
        energy = meter.end_window()
    return masks, times, energy


def add_energy(row: BenchRow, energy, timed_s: float, images: int, meter: PowerMeter) -> None:
    """W over the window, and J/image = W x the timed seconds / images, so that the window's own edges (thread
    start and join, one sample each side) are not charged to the engine. The source (or why none) is always named.
    """
    row.power_source = meter.source
    if energy.avg_watts is None:
        if meter.available:
            row.power_source = f"{meter.source} (not measured: {energy.note})"
        return
    row.watts = energy.avg_watts
    row.joules_per_image = energy.avg_watts * timed_s / images


def baseline_row(rows: list[BenchRow]) -> BenchRow | None:
    """The strongest fp16 baseline measured (most images/s), else torch-fp32 if measured, else None."""
    measured = {r.engine: r for r in rows if r.skipped is None}
    fp16 = [measured[b] for b in FP16_BASELINES if b in measured]
    if fp16:
        return max(fp16, key=lambda r: r.images_per_s)
    return measured.get(FALLBACK_BASELINE)


def add_ratios(rows: list[BenchRow]) -> None:
    """speedup and energy_ratio against baseline_row(rows), which every measured row names."""
    measured = {r.engine: r for r in rows if r.skipped is None}
    base = baseline_row(rows)
    if base is None:
        return
    for r in measured.values():
        r.baseline = base.engine
        r.speedup = r.images_per_s / base.images_per_s
        if r.joules_per_image and base.joules_per_image:
            r.energy_ratio = base.joules_per_image / r.joules_per_image


def repeat_period(frames: np.ndarray) -> int:
    """The shortest p <= DISTINCT_FRAMES with frames == repeat_to(frames[:p], len(frames)), else len(frames)."""
    for p in range(1, min(len(frames), DISTINCT_FRAMES) + 1):
        if np.array_equal(frames, repeat_to(frames[:p], len(frames))):
            return p
    return len(frames)


class ReferenceMasks:
    """The masks of the `engine` the agreement is measured against (default the numpy reference) for the bench
    input, computed once per distinct frame of a repeating batch (None with the reason where it can't run)."""

    def __init__(self, model: ModelFile, frames: np.ndarray, engine: str = REFERENCE) -> None:
        self.engine_name = engine
        self.masks: np.ndarray | None = None
        self.why_not = engine_class(engine).unavailable(model)
        if self.why_not is None:
            runner = create_engine(engine, model)
            try:
                self.masks = repeat_to(runner.segment(frames[:repeat_period(frames)]), len(frames))
            finally:
                runner.close()

    def agreement(self, masks: np.ndarray) -> float | None:
        return None if self.masks is None else float(np.mean(masks == self.masks))


def bench_engine(name: str, model: ModelFile, frames: np.ndarray, settings: BenchSettings, meter: PowerMeter,
                 reference: ReferenceMasks, idle_watts: float | None) -> BenchRow:
    row = BenchRow(name, settings.batch, size_text(model.arch.input_size), idle_watts=idle_watts,
                   power_source=meter.source, reference_engine=reference.engine_name,
                   background_load=settings.background_load)
    why = engine_class(name).unavailable(model)
    if why is not None:
        row.skipped = why
        return row
    t0 = time.perf_counter()
    try:
        engine = create_engine(name, model)
    except MbunetError as e:  # e.g. a kernel library that does not load: listed with its reason
        row.skipped = str(e)
        return row
    row.load_s = time.perf_counter() - t0
    try:
        masks, times, energy = time_engine(engine, frames, settings, meter)
        if settings.layers:
            row.layers = profile_layers(engine, frames, settings.iters)
    except MbunetError as e:  # e.g. a CUDA graph that cannot be captured: listed with its reason, the rest still run
        row.skipped = str(e)
        return row
    finally:
        row.engine_detail = engine.detail  # after the timed calls: what they ran with (cpu: its thread counts)
        engine.close()
    for key, value in percentile_row(times, settings.batch).items():
        setattr(row, key, value)
    row.iters = len(times)
    row.agree_with_reference = reference.agreement(masks)
    add_energy(row, energy, sum(times), len(times) * settings.batch, meter)
    return row


def profile_layers(engine: Engine, frames: np.ndarray, repeats: int) -> LayerProfile | str:
    """The engine's per-layer times, or why it has none (it runs the network in one call)."""
    try:
        return layer_times(engine, frames, repeats)
    except MbunetError as e:
        return str(e)


def run_bench(model: ModelFile, frames: np.ndarray, engines: list[str], settings: BenchSettings,
              meter: PowerMeter, progress=None) -> tuple[list[BenchRow], list[str]]:
    """Bench `engines` in order on `frames`: (rows, notes); `progress(text)` is told what runs."""
    check_engine_names(engines + [settings.agree_with])
    engines = resolve_auto(engines, model)
    say = progress or (lambda text: None)
    idle = None
    if meter.available and settings.idle_seconds > 0:
        say(f"idle power for {settings.idle_seconds:g} s ({meter.source})")
        idle = meter.measure_idle(settings.idle_seconds)
    say(f"{settings.agree_with} masks for agreement")
    reference = ReferenceMasks(model, frames, resolve_auto([settings.agree_with], model)[0])
    rows = []
    with BackgroundLoad(settings.background_load) as load:
        if settings.background_load:
            say(str(load))
        for name in engines:
            say(f"engine {name}")
            rows.append(bench_engine(name, model, frames, settings, meter, reference, idle))
    add_ratios(rows)
    notes = ([f"agree_with_reference is null: {reference.engine_name} cannot run ({reference.why_not})"]
             if reference.why_not else [])
    # every window lasted at least settings.min_seconds; the median underestimates a window's length
    short = [r.engine for r in rows if settings.min_seconds < MIN_WINDOW_S and r.watts is not None
             and r.ms_median * r.iters < MIN_WINDOW_S * 1e3]
    if short:
        notes.append(f"energy windows under {MIN_WINDOW_S:g} s ({', '.join(short)}): W and J/image are coarse; "
                     f"raise --min-seconds")
    if not any(r.baseline for r in rows):
        notes.append(f"speedup/energy_ratio are null: no baseline ({', '.join(FP16_BASELINES)} or "
                     f"{FALLBACK_BASELINE}) was measured")
    return rows, notes


def format_table(rows: list[BenchRow]) -> str:
    """A readable table; skipped engines are listed with their reason under it."""
    head = ("engine", "img/s", "ms p50", "ms p5", "ms p95", "agree", "W", "J/img", "speedup", "energy x", "load s")
    keys = ("images_per_s", "ms_median", "ms_p5", "ms_p95", "agree_with_reference", "watts", "joules_per_image",
            "speedup", "energy_ratio", "load_s")
    formats = ("{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.4%}", "{:.2f}", "{:.4g}", "{:.2f}", "{:.2f}", "{:.2f}")
    body = [[r.engine] + ["-" if getattr(r, k) is None else f.format(getattr(r, k)) for k, f in zip(keys, formats)]
            for r in rows if r.skipped is None]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [head, *body]]
    lines += [f"{r.engine}: not run: {r.skipped}" for r in rows if r.skipped is not None]
    if rows:
        r = rows[0]
        idle = "-" if r.idle_watts is None else f"{r.idle_watts:.2f} W"
        base = next((x.baseline for x in rows if x.baseline), None)
        strongest = " (the fastest fp16 baseline in this run)" if base in FP16_BASELINES else ""
        agree = "" if r.reference_engine in (None, REFERENCE) else f"; agreement with {r.reference_engine}"
        lines.append(f"batch {r.batch}, size {r.size}; idle {idle}; power: {r.power_source}"
                     + (f"; ratios over {base}{strongest}" if base else "") + f"; {describe_load(r.background_load)}"
                     + agree)
    return "\n".join(lines)


def format_layer_reports(rows: list[BenchRow]) -> str:
    """--layers: each profiled engine's table, or the one line saying why an engine has none."""
    return "\n".join(format_layers(r.layers) if isinstance(r.layers, LayerProfile) else r.layers
                     for r in rows if r.layers)


def write_results(rows: list[BenchRow], out_dir: Path, title: str) -> list[Path]:
    """bench.json (the rows), bench.csv and bench.png (images/s and J/image per engine) in `out_dir`, and with
    --layers a layers-<engine>.csv per profiled engine."""
    from .charts import bench_chart

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "bench.json", out_dir / "bench.csv", out_dir / "bench.png"]
    paths[0].write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    with paths[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.to_json() for r in rows)
    bench_chart([r for r in rows if r.skipped is None], paths[2], title)
    for r in rows:
        if isinstance(r.layers, LayerProfile):
            paths.append(out_dir / f"layers-{r.engine}.csv")
            with paths[-1].open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=[field.name for field in fields(LayerTime)])
                writer.writeheader()
                writer.writerows(layer.to_json() for layer in r.layers.layers)
    return paths


def mma_bench(iters: int = 20000, path: Path | None = None) -> dict:
    """Throughput of each MMA flavour on GPU 0, from the library at `path` (default: the one the engine loads).

    Returns {"device", "iters", "rows": [{"flavour", "ms", "tops"} or {"flavour", "error"}]}.

    b1 flavours count 2*16*8*256 ops per MMA, s8 2*16*8*32, f16 2*16*8*16 (dense-equivalent ops).
    """
    from .cudakernels.bmma.lib import FLAVOURS, load_library
    from .engines.bmma import device_problem, open_library

    why = device_problem()
    if why:
        raise EngineUnavailable(f"mma-bench: {why}")
    lib = load_library(path) if path else open_library()[0]
    dev = lib.device()
    rows = []
    for flavour in FLAVOURS:
        try:
            ms, tops = lib.mma_bench(flavour, iters)
            rows.append({"flavour": flavour, "ms": ms, "tops": tops})
        except MbunetError as e:  # an unsupported flavour on this GPU is a row, not the end of the table
            rows.append({"flavour": flavour, "error": str(e)})
    return {"device": f"{dev.name} ({dev.sm}, {dev.sm_count} SMs)", "iters": iters, "rows": rows}

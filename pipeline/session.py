"""One `mbunet run`: assemble source, model, engine, annotator, sinks and telemetry from a RunConfig, run them,
and write <run_dir>/<timestamp>/summary.json.

Order matters for the user: the source is opened first (a bad input fails in milliseconds, before any model is
loaded), then the model and engine (the chosen engine and why are logged), then the outputs.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

from . import modelfile
from .arch import Architecture
from .config import RunConfig
from .engines.base import choose_engine, create_engine
from .errors import ModelFileError, SourceError
from .overlay import create_annotator
from .runner import RunOptions, Runner
from .sinks import FanOut, open_sink
from .sources import SourceOptions, open_source
from .telemetry import Telemetry
from .uri import parse_uri

_RANDOM = re.compile(r"^random(?::(\d+))?(?::(\d+)x(\d+))?$")


def load_run_model(ref: str) -> modelfile.ModelFile:
    """A model path or shipped name; "" = the default shipped model; "random[:WIDTH[:HxW]]" = untrained weights.

    The random model exists for smoke tests and pipeline benchmarks without trained weights: its masks are noise,
    and the run says so.
    """
    m = _RANDOM.match(ref)
    if m:
        from .export import random_quantized_model

        width = int(m.group(1) or 16)
        size = (int(m.group(2)), int(m.group(3))) if m.group(2) else (256, 256)
        try:
            arch = Architecture(width=width, input_size=size)
        except ValueError as e:
            raise ModelFileError(f"--model {ref}: {e}") from e
        return random_quantized_model(arch, seed=0, name=f"random-w{width}-{size[0]}x{size[1]}")
    if not ref and modelfile.DEFAULT_MODEL not in modelfile.shipped_names():
        raise ModelFileError(f"the default model {modelfile.DEFAULT_MODEL} is not in {modelfile.WEIGHTS_DIR}; "
                             f"pass --model PATH (or --model random for an untrained smoke test)")
    return modelfile.load_model(ref or modelfile.DEFAULT_MODEL)


def make_run_dir(root: str) -> Path:
    """<root>/<YYYYmmdd-HHMMSS>[-N], created now."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / stamp
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    path.mkdir(parents=True)
    return path


def run(config: RunConfig, log: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Run the pipeline described by `config`; returns the summary (also written to summary.json)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    from .sinks import display_available

    headless = config.headless
    if not headless and not display_available():
        headless = True
        log("warning: no DISPLAY or WAYLAND_DISPLAY: running headless (no window)")
    if headless and any(parse_uri(o, "output").scheme == "display" for o in config.outputs):
        log("warning: headless: the display:// output is skipped")
    src_cfg = config.source
    source = open_source(src_cfg.uri, SourceOptions(src_cfg.width, src_cfg.height, src_cfg.rate, src_cfg.loop,
                                                    src_cfg.open_timeout_s, src_cfg.read_timeout_s,
                                                    src_cfg.rtsp_transport),
                         src_cfg.reconnect, src_cfg.backoff_s, src_cfg.backoff_max_s, src_cfg.give_up_s)
    try:
        return _run_source(config, source, headless, log, progress)
    finally:
        source.close()


def _run_source(config: RunConfig, source, headless: bool, log, progress: bool) -> dict:
    log(f"source: {source.describe()}" + (" (live: newest frame kept)" if source.live else ""))
    model = load_run_model(config.model)
    if model.path is None:
        log(f"warning: model {model.name} has untrained random weights: the masks are noise")
    reason = choose_engine(model).reason if config.engine == "auto" else "requested"
    engine = create_engine(config.engine, model)
    log(f"model: {model.name} ({model.kind}, input {model.arch.input_size[1]}x{model.arch.input_size[0]}); "
        f"engine: {engine.name} ({reason})")
    try:
        return _run_engine(config, source, model, engine, headless, log, progress)
    finally:
        engine.close()


def _run_engine(config: RunConfig, source, model, engine, headless: bool, log, progress: bool) -> dict:
    annotator = create_annotator(config.overlay.style, model.labels, config.overlay.alpha, config.overlay.blur,
                                 config.overlay.color, config.overlay.thickness)
    run_dir = make_run_dir(config.run_dir)
    outputs = _open_outputs(config, run_dir, headless, source.fps or 25.0)
    sinks = FanOut(list(outputs.values()))
    telemetry = Telemetry(config.telemetry.fps_window_s, _power_meter(config, log))
    options = RunOptions(config.fit, config.batch, config.queue_size, config.source.max_frames, config.source.loop,
                         config.source.rate, config.telemetry.status_interval_s, progress)
    runner = Runner(source, engine, annotator, sinks, telemetry, options)
    error: BaseException | None = None
    try:
        runner.run()
    except BaseException as e:  # the summary is written first, then the error is raised
        error = e
    finally:
        sinks.close()
    summary = _summary(config, source, model, engine, list(outputs), run_dir, telemetry, runner.stop.is_set(), error)
    if telemetry.meter is not None:
        telemetry.meter.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if error is not None:
        raise error
    if source.problem:
        raise SourceError(source.problem + f" (outputs and summary written to {run_dir})")
    return summary


def _open_outputs(config: RunConfig, run_dir: Path, headless: bool, fps: float) -> dict:
    """Output URI -> open sink (display sinks left out when headless)."""
    wanted = list(config.outputs) or [str(run_dir / "overlay.mkv")] + ([] if headless else ["display://0"])
    if config.telemetry.jsonl:
        wanted.append(str(run_dir / "telemetry.jsonl"))
    sinks: dict = {}
    try:
        for out in wanted:
            sink = open_sink(out, fps)
            if not (headless and sink.needs_display):
                sinks[out] = sink
    except BaseException:
        FanOut(list(sinks.values())).close()
        raise
    return sinks


def _power_meter(config: RunConfig, log):
    if not config.telemetry.power:
        return None
    from .power import open_power_meter

    meter = open_power_meter()
    log(f"power: {meter.source}")
    return meter


def _summary(config, source, model, engine, outputs, run_dir, telemetry, stopped, error) -> dict:
    summary = telemetry.summary()
    summary.update({
        "run_dir": str(run_dir), "source": str(source.uri), "live": bool(source.live),
        "model": model.name, "engine": engine.name, "fit": config.fit, "batch": config.batch,
        "overlay": config.overlay.style,
        "outputs": outputs,
        "stopped_early": stopped, "error": str(error) if error else source.problem,
    })
    return summary

"""One `mbunet run`: assemble source, model, engine, annotator, sinks and telemetry from a RunConfig, run them,
and write <run_dir>/<timestamp>/summary.json.

Order matters for the user: the source is opened first (a bad input fails in milliseconds, before any model is
loaded), then the model and engine (the chosen engine and why are logged), then the outputs.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .api import Segmenter, load_run_model
from .config import RunConfig, SourceConfig
from .errors import MbunetError, SinkError, SourceError
from .gst.pipelines import Encoding
from .overlay import create_annotator
from .runner import Runner, RunOptions
from .signals import StopOnSignals
from .sinks import FanOut, open_sink
from .sources import SourceOptions, open_source
from .telemetry import Telemetry
from .uri import parse_uri


def make_run_dir(root: str) -> Path:
    """<root>/<YYYYmmdd-HHMMSS>[-N], created now."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / stamp
    path, n = base, 1
    while path.exists():
        path, n = Path(f"{base}-{n}"), n + 1
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise SinkError(f"{path}: cannot create the run folder ({e.strerror})") from e
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
    uris = config.sources or (config.source.uri,)
    # watched from here on: a signal while a stream or the model is still being opened stops the run just as well
    with StopOnSignals(threading.Event()) as signals:
        if len(uris) > 1:
            from .multistream import run_streams

            return run_streams(config, headless, log, progress, signals)
        source = open_configured_source(config.source, uris[0], log)
        try:
            return _run_source(config, source, headless, log, progress, signals)
        finally:
            source.close()


def open_configured_source(src_cfg: SourceConfig, uri: str, log: Callable[[str], None]):
    """Open `uri` with the settings of the run's `source` section (one source, or each of several)."""
    return open_source(uri, SourceOptions(src_cfg.width, src_cfg.height, src_cfg.rate, src_cfg.loop,
                                          src_cfg.open_timeout_s, src_cfg.read_timeout_s, src_cfg.rtsp_transport,
                                          src_cfg.rtsp_latency_ms, src_cfg.backend),
                       src_cfg.reconnect, src_cfg.backoff_s, src_cfg.backoff_max_s, src_cfg.give_up_s, log)


def _run_source(config: RunConfig, source, headless: bool, log, progress: bool, signals: StopOnSignals) -> dict:
    log(f"source: {source.describe()}" + (" (live: newest frame kept)" if source.live else ""))
    model = load_run_model(config.model)
    if model.path is None:
        log(f"warning: model {model.name} has untrained random weights: the masks are noise")
    with Segmenter(model, config.engine, config.fit) as segmenter:
        log(f"model: {model.name} ({model.kind}, input {model.arch.input_size[1]}x{model.arch.input_size[0]}); "
            f"engine: {segmenter.engine_name} ({segmenter.engine_reason})"
            + (f"; {segmenter.engine.detail}" if segmenter.engine.detail else ""))
        return _run_engine(config, source, segmenter, headless, log, progress, signals)


def _run_engine(config: RunConfig, source, segmenter: Segmenter, headless: bool, log, progress: bool,
                signals: StopOnSignals) -> dict:
    model, engine = segmenter.model, segmenter.engine
    annotator = create_annotator(config.overlay.style, model.labels, config.overlay.alpha, config.overlay.blur,
                                 config.overlay.color, config.overlay.thickness)
    run_dir = make_run_dir(config.run_dir)
    outputs = _open_outputs(config, run_dir, headless, source.fps or 25.0)
    sinks = FanOut(list(outputs.values()))
    telemetry = Telemetry(config.telemetry.fps_window_s, _power_meter(config, log))
    options = RunOptions(config.batch, config.queue_size, config.source.max_frames, config.source.loop,
                         config.source.rate, config.telemetry.status_interval_s, progress)
    runner = Runner(source, segmenter, annotator, sinks, telemetry, options, signals.stop, signals.hurry)
    error: BaseException | None = None
    try:
        runner.run()
    except BaseException as e:  # the summary is written first, then the error is raised
        error = e
    finally:
        sinks.close()
    summary = _summary(config, source, model, engine, list(outputs), run_dir, telemetry, runner.stop.is_set(), error)
    summary["signals"] = signals.received
    if telemetry.meter is not None:
        telemetry.meter.close()
    written, kept = _write_summary(run_dir, summary, telemetry.frames)
    if isinstance(error, MbunetError):
        raise type(error)(f"{error}; {kept}") from error
    if error is not None:
        raise error
    if source.problem:
        raise SourceError(f"{source.problem}; {kept}")
    if not written:
        raise SinkError(kept)
    return summary


def _write_summary(run_dir: Path, summary: dict, frames: int) -> tuple[bool, str]:
    """Write summary.json; says what the run kept and where the summary is, or why it could not be written
    (a full or read-only disk must not turn into a traceback that hides the frames already written)."""
    path = run_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)  # a summary is whole or absent, never cut off by a full disk
    except OSError as e:
        tmp.unlink(missing_ok=True)
        return False, f"{frames} frames written; summary NOT written to {path} ({e.strerror})"
    return True, f"{frames} frames written; summary {path}"


def _open_outputs(config: RunConfig, run_dir: Path, headless: bool, fps: float) -> dict:
    """Output URI -> open sink (display sinks left out when headless)."""
    wanted = list(config.outputs) or [str(run_dir / "overlay.mkv")] + ([] if headless else ["display://0"])
    if config.telemetry.jsonl:
        wanted.append(str(run_dir / "telemetry.jsonl"))
    sinks: dict = {}
    try:
        for out in wanted:
            sink = open_sink(out, fps, Encoding(config.output_codec, config.bitrate), run_dir)
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

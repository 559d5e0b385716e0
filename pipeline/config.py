"""Run presets: YAML -> frozen dataclasses; unknown keys and wrong types are rejected with one line.

`load_config(path)` reads a preset (configs/desktop.yaml, ...); `override(config, {"source.width": 640})` applies
command-line flags on top (dotted names, the same keys as the YAML). No raw dicts travel past this module.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, short_reason
from .resources import configs_dir, sample_clip

CONFIG_DIR = configs_dir()
SAMPLE_CLIP = sample_clip()


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from; 0 means "the source's own" for width/height/rate and "no limit" for max_frames."""

    uri: str = str(SAMPLE_CLIP)
    width: int = 0
    height: int = 0
    rate: float = 0.0
    loop: bool = False
    max_frames: int = 0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"  # tcp or udp (some servers offer only one)
    rtsp_latency_ms: int = 200   # RTSP jitter buffer when GStreamer reads the stream (its own default is 2000)
    backend: str = "auto"        # auto, opencv or gst: who reads the source (pipeline.gst.choose says when which)
    reconnect: bool = True
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    give_up_s: float = 0.0  # live source lost for longer than this ends the run; 0 = retry for ever

    def __post_init__(self) -> None:
        for key in ("width", "height", "rate", "max_frames", "backoff_s", "backoff_max_s", "give_up_s",
                    "rtsp_latency_ms"):
            if getattr(self, key) < 0:
                raise ConfigError(f"source.{key} must be >= 0, got {getattr(self, key)}")
        if self.backend not in ("auto", "opencv", "gst"):
            raise ConfigError(f"source.backend must be auto, opencv or gst, got {self.backend!r}")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ConfigError(f"source timeouts must be > 0 s, got open {self.open_timeout_s}, "
                              f"read {self.read_timeout_s}")


@dataclass(frozen=True)
class OverlayConfig:
    style: str = "overlay"     # overlay, mask, side-by-side, blur, replace, contours
    alpha: float = 0.5
    blur: int = 31
    color: tuple[int, int, int] = (0, 0, 0)  # background colour for style "replace", RGB
    thickness: int = 2


@dataclass(frozen=True)
class TelemetryConfig:
    jsonl: bool = True          # write runs/<ts>/telemetry.jsonl beside the outputs
    status_interval_s: float = 1.0
    fps_window_s: float = 2.0
    power: bool = True          # read a power meter when one is available


@dataclass(frozen=True)
class RunConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: str = ""             # path or shipped name; "" = the default shipped model
    engine: str = "auto"
    fit: str = "letterbox"      # letterbox or resize
    batch: int = 1              # frames per engine call (files only; live sources always use 1; several
                                # sources: frames from all streams per call, 1 = one per stream)
    batch_timeout_ms: float = 20.0  # several sources: wait at most this for a batch to fill (nvstreammux-like)
    sources: tuple[str, ...] = ()   # several sources in one run (NAME=URI names one); () = source.uri alone
    queue_size: int = 4         # frames buffered between stages (files); live sources keep only the newest
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    outputs: tuple[str, ...] = ()  # () = runs/<ts>/overlay.mkv (+ a window when a display is available)
    output_codec: str = "h264"  # network outputs (rtp://, rtsp://): h264 or h265
    bitrate: int = 4_000_000    # network outputs, bits/s
    headless: bool = False
    run_dir: str = "runs"       # summary.json (and default outputs) go to <run_dir>/<timestamp>/
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def __post_init__(self) -> None:
        if self.batch_timeout_ms < 0:
            raise ConfigError(f"batch_timeout_ms must be >= 0, got {self.batch_timeout_ms}")
        if self.batch < 1 or self.queue_size < 1:
            raise ConfigError(f"batch and queue_size must be >= 1, got {self.batch} and {self.queue_size}")
        if self.fit not in ("letterbox", "resize"):
            raise ConfigError(f"fit must be letterbox or resize, got {self.fit!r}")
        if self.output_codec not in ("h264", "h265") or self.bitrate <= 0:
            raise ConfigError(f"output_codec must be h264 or h265 and bitrate > 0, got {self.output_codec!r} and "
                              f"{self.bitrate}")


# Shipped YAML files by kind: run presets (`mbunet run --config NAME`) and training recipes (`mbunet train
# --config NAME`) live in their own folders, so neither command lists or accepts the other's files.
KINDS = {"run": "run preset", "train": "training recipe"}


def shipped_configs(kind: str) -> list[str]:
    """Names of the shipped files of a kind ("run" or "train"): configs/<kind>/<name>.yaml."""
    return sorted(q.stem for q in (CONFIG_DIR / kind).glob("*.yaml"))


def run_presets() -> list[str]:
    return shipped_configs("run")


def read_yaml_config(ref: str | Path, kind: str) -> tuple[dict, Path]:
    """The mapping in a YAML file given by path or by shipped name, and the file it came from. The one reader
    for presets and recipes: a missing file or bad YAML is one line naming the file and the shipped names."""
    import yaml

    p = Path(ref)
    if not p.is_file() and p.name in shipped_configs(kind):
        p = CONFIG_DIR / kind / f"{p.name}.yaml"
    if not p.is_file():
        raise ConfigError(f"{KINDS[kind]} not found: {ref} (not a file, and not a shipped name: "
                          f"{', '.join(shipped_configs(kind))})")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({short_reason(e)})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a {KINDS[kind]} must be a YAML mapping, got {type(data).__name__}")
    return data, p


def load_config(ref: str | Path) -> RunConfig:
    """A run preset by path or by name (desktop, jetson-orin, drone)."""
    data, p = read_yaml_config(ref, "run")
    return build_dataclass(RunConfig, data, str(p))


def override(config: RunConfig, values: dict[str, object]) -> RunConfig:
    """Replace dotted fields ("source.width") with command-line values (None values are ignored)."""
    for key, value in values.items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            inner = override(getattr(config, head), {rest: value})
            config = dataclasses.replace(config, **{head: inner})
        else:
            config = dataclasses.replace(config, **{head: coerce_value(_hints(type(config))[head], value, key, "flag")})
    return config


def build_dataclass(cls: type, data: object, where: str, prefix: str = ""):
    """Frozen dataclass `cls` from a YAML mapping, recursively; unknown keys and wrong types are one-line
    ConfigErrors naming the dotted key ("FILE: source.width must be int"). Shared with the training recipes."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'top level'} must be a mapping, "
                          f"got {type(data).__name__}")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown key {prefix}{unknown[0]!s}; valid: {', '.join(hints)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value, where, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce_value(tp, value, f"{prefix}{key}", where)
    return cls(**kwargs)


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def coerce_value(tp: object, value: object, key: str, where: str) -> object:
    """Check a value against a field type (int, float, bool, str, tuple[...], X | None); ints are accepted as
    floats (YAML leaves and command-line flags)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        if value is None:
            return None
        tp = next(t for t in typing.get_args(tp) if t is not type(None))
        origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        if args and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{where}: {key} must have {len(args)} entries, got {len(value)}")
        item = [args[0]] * len(value) if args and args[-1] is Ellipsis else list(args)
        return tuple(coerce_value(t, v, key, where) for t, v in zip(item, value))
    ok = (isinstance(value, bool) if tp is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
          isinstance(value, int) and not isinstance(value, bool) if tp is int else isinstance(value, tp))
    if not ok:
        hint = " (YAML reads 1e-5 as text: write 1.0e-5)" if tp is float and isinstance(value, str) else ""
        raise ConfigError(f"{where}: {key} must be {tp.__name__}, got {value!r}{hint}")
    return float(value) if tp is float else value

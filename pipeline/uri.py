"""Resource URIs for inputs and outputs, following jetson-inference's conventions.

`parse_uri(text, role)` turns what a user types into a `Uri(scheme, location, options)`:

inputs                                           outputs
  0, 1, ...            -> v4l2://0  (camera index)  display://0           -> a window
  /dev/video0          -> v4l2:///dev/video0        out.mkv, file://x.avi -> video file (.mkv .avi .mp4 .mov)
  csi://0              -> MIPI CSI camera (GStreamer) frames/%06d.jpg     -> image sequence (printf pattern)
  clip.mp4, file://... -> file                      images://DIR?ext=png  -> image sequence in DIR
  DIR, *.jpg (glob)    -> images                    masks://DIR?format=npy -> raw class masks (png or npy)
  rtsp(s):// udp:// rtp:// http(s)://  -> network  log.jsonl, jsonl://x  -> JSON-lines telemetry
  gst://PIPELINE or "a ! b ! appsink"  -> gstreamer null://              -> discard
                                                 rtp://HOST:PORT       -> H.264/H.265 over RTP/UDP (+ an .sdp file)
                                                 rtsp://@:PORT/NAME    -> an RTSP server (pipeline.gst.output)
  synthetic://?frames=N&width=W&height=H&fps=F&live=1  -> generated test pattern (tests, demos)

Query options (`?key=value&...`) are kept as strings in `Uri.options`; each source or sink reads its own.
"""
from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from .errors import SinkError, SourceError

INPUT_SCHEMES = ("v4l2", "csi", "file", "images", "rtsp", "rtsps", "udp", "rtp", "http", "https", "gst", "synthetic")
OUTPUT_SCHEMES = ("display", "file", "images", "masks", "jsonl", "null", "rtp", "rtsp")
NETWORK_SCHEMES = ("rtsp", "rtsps", "udp", "rtp", "http", "https")
WRITER_SUFFIXES = (".mkv", ".avi", ".mp4", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", re.S)


@dataclass(frozen=True)
class Uri:
    """A parsed resource: `scheme` decides the source/sink class, `location` is what it opens."""

    scheme: str
    location: str
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def __str__(self) -> str:
        return self.text or f"{self.scheme}://{self.location}"


def parse_uri(text: str, role: str = "input") -> Uri:
    """Parse an input (`role="input"`) or output (`role="output"`) resource; unknown schemes raise."""
    if role not in ("input", "output"):
        raise ValueError(f"role must be 'input' or 'output', got {role!r}")
    error = SourceError if role == "input" else SinkError
    text = str(text).strip()
    if not text:
        raise error(f"empty {role} URI")
    if role == "input" and " ! " in text and "://" not in text.split(" ! ")[0]:
        return Uri("gst", text, {}, text)
    m = _SCHEME.match(text)
    if m is None:
        return _shorthand(text, role)
    scheme, rest = m.group(1).lower(), m.group(2)
    valid = INPUT_SCHEMES if role == "input" else OUTPUT_SCHEMES
    if scheme not in valid:
        raise error(f"unknown {role} URI scheme {scheme}:// in {text!r}; valid: {', '.join(s + '://' for s in valid)}")
    if (scheme in NETWORK_SCHEMES and role == "input") or scheme == "gst":
        return Uri(scheme, text if scheme != "gst" else rest, {}, text)  # the backend gets the whole URL
    location, options = _split_query(rest)
    if scheme == "file":
        return _shorthand(location, role, options, text)
    return Uri(scheme, location, options, text)


def _split_query(rest: str) -> tuple[str, dict[str, str]]:
    location, _, query = rest.partition("?")
    return location, dict(parse_qsl(query, keep_blank_values=True))


def _shorthand(text: str, role: str, options: dict[str, str] | None = None, original: str = "") -> Uri:
    """Scheme-less forms: a camera index, /dev/videoN, a directory, a glob, or a file chosen by suffix."""
    original = original or text
    if options is None:
        text, options = _split_query(text)
    if role == "input":
        if text.isdigit():
            return Uri("v4l2", text, options, original)
        if text.startswith("/dev/video"):
            return Uri("v4l2", text, options, original)
        if glob.has_magic(text) or Path(text).is_dir():
            return Uri("images", text, options, original)
        return Uri("file", text, options, original)
    suffix = Path(text).suffix.lower()
    if suffix == ".jsonl":
        return Uri("jsonl", text, options, original)
    if suffix in IMAGE_SUFFIXES:
        return Uri("images", text, options, original)
    if suffix in WRITER_SUFFIXES:
        return Uri("file", text, options, original)
    raise SinkError(f"cannot tell what output {original!r} is: expected a video file ({', '.join(WRITER_SUFFIXES)}), "
                    f"an image pattern like frames/%06d.jpg, a .jsonl file, or a scheme "
                    f"({', '.join(s + '://' for s in OUTPUT_SCHEMES)})")

"""parse_uri: jetson-inference style shorthands and schemes, inputs and outputs."""
from __future__ import annotations

import pytest

from mbunet.errors import SinkError, SourceError
from mbunet.uri import parse_uri


@pytest.mark.parametrize("text, scheme, location", [
    ("0", "v4l2", "0"),
    ("/dev/video2", "v4l2", "/dev/video2"),
    ("v4l2:///dev/video0", "v4l2", "/dev/video0"),
    ("csi://0", "csi", "0"),
    ("clip.mp4", "file", "clip.mp4"),
    ("file:///data/clip.mkv", "file", "/data/clip.mkv"),
    ("frames/*.jpg", "images", "frames/*.jpg"),
    ("rtsp://cam.local:8554/live", "rtsp", "rtsp://cam.local:8554/live"),
    ("udp://127.0.0.1:5000", "udp", "udp://127.0.0.1:5000"),
    ("rtp://127.0.0.1:5004", "rtp", "rtp://127.0.0.1:5004"),
    ("https://example.org/a.ts?token=1", "https", "https://example.org/a.ts?token=1"),
    ("videotestsrc ! videoconvert ! appsink", "gst", "videotestsrc ! videoconvert ! appsink"),
    ("gst://videotestsrc ! appsink", "gst", "videotestsrc ! appsink"),
    ("synthetic://?frames=5&width=64", "synthetic", ""),
])
def test_inputs(text, scheme, location):
    uri = parse_uri(text, "input")
    assert (uri.scheme, uri.location) == (scheme, location)


def test_directory_is_an_image_sequence(tmp_path):
    assert parse_uri(str(tmp_path)).scheme == "images"


def test_query_options_are_kept():
    uri = parse_uri("synthetic://?frames=5&width=64&live=1")
    assert uri.options == {"frames": "5", "width": "64", "live": "1"}
    assert parse_uri("out.mkv?codec=MJPG&fps=12", "output").options == {"codec": "MJPG", "fps": "12"}


@pytest.mark.parametrize("text, scheme, location", [
    ("display://0", "display", "0"),
    ("out.mkv", "file", "out.mkv"),
    ("file://rec/out.avi", "file", "rec/out.avi"),
    ("frames/%06d.jpg", "images", "frames/%06d.jpg"),
    ("images://frames?ext=png", "images", "frames"),
    ("masks://m?format=npy", "masks", "m"),
    ("log.jsonl", "jsonl", "log.jsonl"),
    ("null://", "null", ""),
])
def test_outputs(text, scheme, location):
    uri = parse_uri(text, "output")
    assert (uri.scheme, uri.location) == (scheme, location)


def test_unknown_input_scheme_lists_valid_ones():
    with pytest.raises(SourceError, match=r"unknown input URI scheme ftp://.*valid: .*rtsp://"):
        parse_uri("ftp://host/clip.mp4")


def test_unknown_output_scheme_and_unknown_suffix():
    with pytest.raises(SinkError, match="unknown output URI scheme http://"):
        parse_uri("http://host/out", "output")
    with pytest.raises(SinkError, match="cannot tell what output 'out.xyz' is"):
        parse_uri("out.xyz", "output")
    with pytest.raises(SourceError, match="empty input URI"):
        parse_uri("  ")


def test_network_outputs_keep_their_options():
    rtp = parse_uri("rtp://10.0.0.2:5004?codec=h265&bitrate=2000000", "output")
    assert (rtp.scheme, rtp.location, rtp.options) == ("rtp", "10.0.0.2:5004", {"codec": "h265", "bitrate": "2000000"})
    assert parse_uri("rtsp://@:8554/live", "output").location == "@:8554/live"

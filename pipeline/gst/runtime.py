"""Loading GStreamer through PyGObject once, and naming what to install when a part of it is missing.

Every failure here is one line for the user: the pip extra for PyGObject, the Debian package for a typelib or a
plugin (JetPack's for the NVIDIA elements).
"""
from __future__ import annotations

import re
import threading
from types import SimpleNamespace

INSTALL_GI = ("pip install 'mbunet[gst]' (PyGObject; it builds against apt-get install libgirepository1.0-dev "
              "libcairo2-dev pkg-config)")
#: typelib namespace -> the Debian/Ubuntu package that ships it
TYPELIBS = {"Gst": "gir1.2-gstreamer-1.0", "GstBase": "gir1.2-gstreamer-1.0",
            "GstRtspServer": "gir1.2-gst-rtsp-server-1.0"}
_JETPACK = "JetPack's nvidia-l4t-gstreamer (Jetson only)"
#: element -> the package that ships it, for the elements mbunet's own pipelines use
PACKAGES = {
    "appsink": "gstreamer1.0-plugins-base", "appsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base", "decodebin": "gstreamer1.0-plugins-base",
    "filesrc": "libgstreamer1.0-0", "v4l2src": "gstreamer1.0-plugins-good", "jpegdec": "gstreamer1.0-plugins-good",
    "rtspsrc": "gstreamer1.0-plugins-good", "udpsink": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good", "rtph265pay": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad", "h265parse": "gstreamer1.0-plugins-bad",
    "x264enc": "gstreamer1.0-plugins-ugly", "x265enc": "gstreamer1.0-plugins-bad", "avdec_h264": "gstreamer1.0-libav",
    "nvarguscamerasrc": _JETPACK, "nvvidconv": _JETPACK, "nvv4l2decoder": _JETPACK, "nvv4l2h264enc": _JETPACK,
    "nvv4l2h265enc": _JETPACK, "nvjpegdec": _JETPACK,
}

_NO_ELEMENT = re.compile(r'no element "([^"]+)"')
_lock = threading.Lock()
_loaded: dict[str, object] = {}


def problem(*namespaces: str) -> str | None:
    """Why GStreamer cannot be used through gi here (None when it can); `namespaces` beyond Gst, e.g.
    "GstRtspServer"."""
    try:
        load(*namespaces)
    except ImportError as e:
        return str(e)
    return None


def load(*namespaces: str) -> SimpleNamespace:
    """The gi modules Gst, GLib and `namespaces`, Gst initialised; ImportError with the install line if missing."""
    with _lock:
        for name in ("Gst", "GstBase", *namespaces):
            if name not in _loaded:
                _loaded[name] = _import(name)
        if "GLib" not in _loaded:
            from gi.repository import GLib

            _loaded["Gst"].init(None)
            _loaded["GLib"] = GLib
        return SimpleNamespace(**_loaded)


def _import(namespace: str):
    try:
        import gi
    except ImportError:
        raise ImportError(f"PyGObject is not installed: {INSTALL_GI}") from None
    try:
        gi.require_version(namespace, "1.0")
        module = __import__("gi.repository", fromlist=[namespace])
        return getattr(module, namespace)
    except (ValueError, ImportError) as e:  # gi raises ValueError for a typelib it cannot find
        raise ImportError(f"GStreamer typelib {namespace} not found ({e}): "
                          f"apt-get install {TYPELIBS.get(namespace, 'gir1.2-gstreamer-1.0')}") from None


def have(element: str) -> bool:
    """True when a GStreamer element of that name is installed (False also without gi)."""
    try:
        return load().Gst.ElementFactory.find(element) is not None
    except ImportError:
        return False


def missing(elements) -> str | None:
    """One line naming the packages for the elements not installed here, or None when all are."""
    gone = [e for e in dict.fromkeys(elements) if not have(e)]
    if not gone:
        return None
    unknown = [e for e in gone if e not in PACKAGES]
    if unknown:
        return f"no GStreamer element {unknown[0]} here (misspelt, or its plugin is not installed)"
    packages = dict.fromkeys(PACKAGES[e] for e in gone)
    plural = "s" if len(packages) > 1 else ""
    return (f"GStreamer element{'s' if len(gone) > 1 else ''} {', '.join(gone)} not installed "
            f"(package{plural}: {', '.join(packages)})")


def version() -> str:
    """"PyGObject 3.50.2, GStreamer 1.22.0"; raises ImportError like load()."""
    import gi

    return f"PyGObject {gi.__version__}, {load().Gst.version_string()}"


def parse(description: str, gi: SimpleNamespace):
    """Gst.parse_launch; ValueError with one line (the missing element and its package, or the parse error)."""
    try:
        return gi.Gst.parse_launch(description)
    except gi.GLib.Error as e:
        element = _NO_ELEMENT.search(e.message)
        raise ValueError(missing([element.group(1)]) if element else f"invalid pipeline ({e.message})") from None

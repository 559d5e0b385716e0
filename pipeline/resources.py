"""Where the installed package keeps its data: shipped models, presets and recipes, the sample clip.

Found through importlib.resources, so they are the same files from any working directory, in an editable
install (the repository's folders) and in a wheel (site-packages/mbunet/...).
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _package_dir(name: str) -> Path:
    # the wheel installs these packages as plain folders (zip-safe is not claimed), so a real path exists
    return Path(str(files(f"mbunet.{name}")))


def weights_dir() -> Path:
    return _package_dir("weights")


def configs_dir() -> Path:
    return _package_dir("configs")


def sample_clip() -> Path:
    return _package_dir("samples") / "bikes-street.mp4"

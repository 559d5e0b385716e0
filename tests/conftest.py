"""Shared fixtures. Tests that need a GPU carry @pytest.mark.gpu and skip themselves with the reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish uint8 RGB frames (a gradient plus noise), so thresholds see varied inputs."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy[..., None] * 3 + xx[..., None] * 5 + np.array([0, 80, 160])) % 256
    noise = g.integers(-60, 60, size=(n, h, w, 3))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


# --- video pipeline (tests/test_sources.py, test_runner.py, test_streams.py, ...) ---
VIDEOS = SHARED_DATA / "videos"
SAMPLE_CLIP = REPO / "samples" / "bikes-street.mp4"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small untrained model file (width 4, 32x32 input): fast on the reference engine."""
    from mbunet.arch import Architecture
    from mbunet.random_model import random_quantized_model
    from mbunet.modelfile import save_model

    m = random_quantized_model(Architecture(width=4, input_size=(32, 32)), seed=3, name="tiny")
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", m.arch, m.arrays, m.card)


@pytest.fixture(scope="session")
def videos() -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"shared test footage not present at {VIDEOS}")
    return VIDEOS


def shipped_bit_models() -> list[str]:
    """Shipped models the bit engines run (binary and mbunet kinds; full-precision ones are torch-only)."""
    from mbunet.modelfile import read_card, resolve_model, shipped_names

    return [n for n in shipped_names() if read_card(resolve_model(n)).get("kind") != "fp"]


def count_frames(path) -> int:
    """Frames a video file (or any source) yields from start to end, read through mbunet's own source."""
    from mbunet.sources import Status, open_source

    src = open_source(str(path))
    n = 0
    while src.read().status is Status.OK:
        n += 1
    src.close()
    return n

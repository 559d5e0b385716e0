"""Annotators: each style paints only what it should, in the card's colours."""
from __future__ import annotations

import numpy as np
import pytest

from mbunet.errors import ConfigError
from mbunet.overlay import STYLES, create_annotator, palette_bgr

LABELS = [{"name": "background", "color": [0, 0, 0]}, {"name": "person", "color": [255, 32, 96]},
          {"name": "car", "color": [10, 200, 30]}]


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 10:30] = 1
    mask[25:35, 35:55] = 2
    return frame, mask


def test_palette_is_bgr():
    assert palette_bgr(LABELS)[1].tolist() == [96, 32, 255]


def test_overlay_blends_foreground_only(scene):
    frame, mask = scene
    original = frame.copy()
    out = create_annotator("overlay", LABELS, alpha=0.25).annotate(frame, mask)
    bg = mask == 0
    assert (out[bg] == original[bg]).all()
    expected = np.round(original[mask == 1] * 0.75 + np.array([96, 32, 255]) * 0.25)
    assert np.abs(out[mask == 1].astype(int) - expected).max() <= 1


def test_mask_style_shows_class_colours(scene):
    frame, mask = scene
    out = create_annotator("mask", LABELS).annotate(frame, mask)
    assert out[mask == 2][0].tolist() == [30, 200, 10] and (out[mask == 0] == 0).all()


def test_side_by_side_keeps_the_original_on_the_left(scene):
    frame, mask = scene
    original = frame.copy()
    out = create_annotator("side-by-side", LABELS).annotate(frame, mask)
    assert out.shape == (40, 120, 3)
    assert (out[:, :60] == original).all() and not (out[:, 60:] == original).all()


@pytest.mark.parametrize("style", ["blur", "replace"])
def test_background_styles_keep_the_foreground(scene, style):
    frame, mask = scene
    original = frame.copy()
    out = create_annotator(style, LABELS, color=(1, 2, 3)).annotate(frame, mask)
    fg = mask > 0
    assert (out[fg] == original[fg]).all()
    assert (out[~fg] != original[~fg]).any()
    if style == "replace":
        assert (out[~fg] == [3, 2, 1]).all()


def test_contours_draw_on_region_borders(scene):
    frame, mask = scene
    original = frame.copy()
    out = create_annotator("contours", LABELS, thickness=1).annotate(frame, mask)
    changed = (out != original).any(axis=2)
    assert changed[5, 10:30].any()          # the top edge of class 1
    assert not changed[14:18, 15:25].any()  # the inside (below the class name) is left alone


def test_every_style_is_constructible(scene):
    frame, mask = scene
    for style in STYLES:
        assert create_annotator(style, LABELS).annotate(frame.copy(), mask).dtype == np.uint8


def test_bad_settings_and_shapes():
    with pytest.raises(ConfigError, match="unknown overlay style 'glow'; valid: overlay"):
        create_annotator("glow", LABELS)
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got 1.5"):
        create_annotator("overlay", LABELS, alpha=1.5)
    with pytest.raises(ValueError, match="same size"):
        create_annotator("overlay", LABELS).annotate(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), np.uint8))


@pytest.mark.parametrize("style", ["overlay", "blur", "replace"])
def test_reused_working_images_follow_the_frame_size(scene, style):
    """One annotator over frames of two sizes gives what a fresh annotator gives for each."""
    frame, mask = scene
    big_frame, big_mask = np.tile(frame, (2, 3, 1)), np.tile(mask, (2, 3))
    reused = create_annotator(style, LABELS, alpha=0.4)
    for f, m in ((frame, mask), (big_frame, big_mask), (frame[::-1].copy(), mask)):
        want = create_annotator(style, LABELS, alpha=0.4).annotate(f.copy(), m)
        assert np.array_equal(reused.annotate(f.copy(), m), want)


def test_colour_mask_writes_into_the_scratch_image(scene):
    from mbunet.overlay import Scratch, colour_mask

    _, mask = scene
    scratch = Scratch()
    out = colour_mask(palette_bgr(LABELS), mask, scratch)
    assert out is scratch("colour", (*mask.shape, 3)) or np.shares_memory(out, scratch("colour", (*mask.shape, 3)))
    assert np.array_equal(out, colour_mask(palette_bgr(LABELS), mask))  # same pixels as a fresh image

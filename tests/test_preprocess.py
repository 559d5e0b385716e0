"""Frame <-> model input geometry: letterbox/resize, channel order, and mapping masks back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbunet.preprocess import geometry, resize_frame, scores_to_frame, to_model_input


def test_letterbox_geometry_keeps_aspect_and_centres():
    geo = geometry((272, 640), (256, 256), "letterbox")
    assert (geo.x0, geo.x1) == (0, 256)
    assert geo.y1 - geo.y0 == round(272 * 256 / 640)
    assert geo.y0 == (256 - (geo.y1 - geo.y0)) // 2


def test_resize_geometry_fills_the_input():
    geo = geometry((272, 640), (64, 32), "resize")
    assert (geo.y0, geo.y1, geo.x0, geo.x1) == (0, 64, 0, 32)
    with pytest.raises(ValueError, match="fit must be one of"):
        geometry((10, 10), (16, 16), "crop")


def test_bgr_becomes_rgb_and_padding_is_black():
    frame = np.zeros((20, 80, 3), np.uint8)
    frame[..., 0] = 200  # pure blue in BGR
    geo = geometry(frame.shape[:2], (32, 32), "letterbox")
    out = to_model_input(frame, geo)
    content = out[geo.y0:geo.y1, geo.x0:geo.x1]
    assert (content[..., 2] == 200).all() and (content[..., :2] == 0).all()
    assert (out[:geo.y0] == 0).all() and (out[geo.y1:] == 0).all()


def test_writes_into_the_given_buffer():
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    batch = np.full((2, 32, 32, 3), 7, np.uint8)
    for fit in ("resize", "letterbox"):
        out = to_model_input(frame, geometry(frame.shape[:2], (32, 32), fit), batch[1])
        assert np.shares_memory(out, batch)
        assert (batch[0] == 7).all()  # the other slot is untouched


def test_rejects_non_bgr_frames():
    with pytest.raises(ValueError, match=r"expected a uint8 BGR frame \[H, W, 3\], got float32"):
        to_model_input(np.zeros((8, 8, 3), np.float32), geometry((8, 8), (16, 16)))


@pytest.mark.parametrize("fit", ["letterbox", "resize"])
def test_mask_maps_back_onto_the_frame(fit):
    """A region marked in frame coordinates survives frame -> model input -> scores -> frame mask."""
    frame_size, input_size = (90, 160), (64, 64)
    geo = geometry(frame_size, input_size, fit)
    frame = np.zeros((*frame_size, 3), np.uint8)
    frame[30:60, 40:120] = 255
    model_in = to_model_input(frame, geo)
    scores = model_in[..., :1].astype(np.int32) - 128  # a perfect "segmenter": >= 0 inside the region
    back = scores_to_frame(scores, geo)
    assert back.shape == frame_size and back.dtype == np.uint8
    truth = frame[..., 0] > 127
    assert (back.astype(bool) == truth).mean() > 0.97
    with pytest.raises(ValueError, match="expected scores"):
        scores_to_frame(np.zeros((10, 10, 1), np.int32), geo)


def test_enlarged_scores_have_no_blocks():
    """A diagonal edge: deciding after a bilinear enlargement follows the edge; an enlarged class mask would be a
    staircase of 8x8 blocks. Count the frame rows whose edge position is off the true line by more than 2 px."""
    n, scale = 24, 8
    yy, xx = np.mgrid[0:n, 0:n]
    scores = (xx - yy).astype(np.int32)[..., None] * 4 + 1   # >= 0 right of the diagonal
    geo = geometry((n * scale, n * scale), (n, n), "resize")
    mask = scores_to_frame(scores, geo)
    blocky = np.kron((scores[..., 0] >= 0).astype(np.uint8), np.ones((scale, scale), np.uint8))
    rows = np.arange(n * scale)
    true_edge = rows  # the zero crossing is the diagonal in frame pixels, give or take half a model pixel
    smooth_err = np.abs(mask.argmax(axis=1) - true_edge)
    blocky_err = np.abs(blocky.argmax(axis=1) - true_edge)
    assert np.count_nonzero(smooth_err[8:-8] > 6) == 0 and np.count_nonzero(blocky_err[8:-8] > 6) > 0


def test_several_classes_take_the_argmax_after_enlarging():
    scores = np.zeros((4, 4, 3), np.float32)
    scores[:, :2, 1] = 5.0
    scores[:, 2:, 2] = 5.0
    mask = scores_to_frame(scores, geometry((8, 8), (4, 4), "resize"))
    assert set(np.unique(mask)) == {1, 2} and (mask[:, 0] == 1).all() and (mask[:, -1] == 2).all()


def test_staged_area_resize_stays_close_to_one_step():
    """The halving step changes pixels by about a grey level; without it the resize is OpenCV's own."""
    import cv2

    cap = cv2.VideoCapture(str(Path(__file__).resolve().parent.parent / "samples" / "bikes-street.mp4"))
    ok, frame = cap.read()
    assert ok and frame.shape == (272, 640, 3)
    one_step = cv2.resize(frame, (192, 82), interpolation=cv2.INTER_AREA).astype(int)
    staged = resize_frame(frame, (82, 192)).astype(int)
    assert staged.shape == one_step.shape and 0 < np.abs(staged - one_step).mean() < 1.5
    odd = frame[:, :639]  # an odd width has no whole-factor step: exactly OpenCV's INTER_AREA
    assert np.array_equal(resize_frame(odd, (82, 192)), cv2.resize(odd, (192, 82), interpolation=cv2.INTER_AREA))
    small = frame[:150, :300]  # under twice the target: one step
    assert np.array_equal(resize_frame(small, (82, 192)),
                          cv2.resize(small, (192, 82), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize_frame(frame[:40, :90], (82, 192)),
                          cv2.resize(frame[:40, :90], (192, 82), interpolation=cv2.INTER_LINEAR))

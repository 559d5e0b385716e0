"""The Python API: Segmenter (frame -> mask at the frame's size) and stream (a source -> per-frame results)."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

import mbunet
from conftest import REPO, SAMPLE_CLIP


def first_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLE_CLIP))
    out = [cap.read()[1] for _ in range(n)]
    cap.release()
    assert all(f is not None for f in out)
    return out


def test_segmenter_returns_a_mask_of_the_frames_size_on_the_bundled_clip():
    frame = first_frames(1)[0]
    with mbunet.Segmenter("mbunet-w32", engine="auto") as seg:
        mask = seg(frame)
        assert seg.engine_name == "cpu" and "fastest available here" in seg.engine_reason
    assert mask.shape == frame.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}


def test_batch_equals_one_frame_at_a_time_and_takes_any_sizes(tiny_model_path):
    frames = first_frames(2)
    frames.append(cv2.resize(frames[0], (97, 61)))
    with mbunet.Segmenter(tiny_model_path, engine="reference") as seg:
        singles = [seg(f) for f in frames]
        batch = seg.batch(frames)
        assert seg.engine_reason == "requested"
    for one, many, frame in zip(singles, batch, frames):
        assert one.shape == frame.shape[:2]
        np.testing.assert_array_equal(one, many)
    assert seg.batch([]) == []


def test_the_api_mask_is_the_engines_scores_enlarged(tiny_model_path):
    """Segmenter = prepare (letterbox) -> engine scores -> scores_to_frame; checked step by step by hand."""
    from mbunet.engines.base import create_engine
    from mbunet.modelfile import load_model
    from mbunet.preprocess import geometry, scores_to_frame, to_model_input

    frame = first_frames(1)[0]
    model = load_model(tiny_model_path)
    geo = geometry(frame.shape[:2], model.arch.input_size, "letterbox")
    scores = create_engine("reference", model).segment_scores(to_model_input(frame, geo)[None])[1][0]
    with mbunet.Segmenter(model, engine="reference") as seg:
        np.testing.assert_array_equal(seg(frame), scores_to_frame(scores, geo))


def test_stream_yields_a_result_per_frame_with_timings(tiny_model_path):
    results = list(mbunet.stream(str(SAMPLE_CLIP), model=tiny_model_path, engine="reference", max_frames=4))
    assert [r.index for r in results] == [0, 1, 2, 3]
    with mbunet.Segmenter(tiny_model_path, engine="reference") as seg:
        for r, frame in zip(results, first_frames(4)):
            np.testing.assert_array_equal(r.frame, frame)
            np.testing.assert_array_equal(r.mask, seg(frame))
            assert set(r.ms) == {"capture", "preprocess", "segment", "resize"} and min(r.ms.values()) >= 0


def test_a_bad_fit_or_source_is_one_clear_error(tiny_model_path):
    with pytest.raises(ValueError, match="fit must be one of"):
        mbunet.Segmenter(tiny_model_path, engine="reference", fit="stretch")
    with pytest.raises(mbunet.MbunetError, match="nope.mp4"):
        next(mbunet.stream(str(REPO / "nope.mp4"), model=tiny_model_path, engine="reference"))


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python quickstart, as written, from another working directory."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has no ```python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})

"""Scoring on background sources that training never saw: the split by source, per-source Dice, bare frames."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mbunet.app.cli import main as cli
from mbunet.errors import DataError
from mbunet.train.composite import heldout_sources, source_of
from mbunet.train.source_eval import held_out_set, score_sources


@pytest.fixture
def tree(tmp_path):
    """stamps/{train,val} with one cut-out each; backgrounds: train has source 'city', val has 'city' (other
    frames of a training source) and the unseen sources 'lake' and 'wall'."""
    g = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / "stamps" / split).mkdir(parents=True)
        stamp = np.zeros((40, 40, 4), np.uint8)
        stamp[..., :3] = g.integers(0, 255, 3)
        stamp[8:32, 8:32, 3] = 255
        cv2.imwrite(str(tmp_path / "stamps" / split / "obj.png"), stamp)
    frames = {"train": ["city_000", "city_001"], "val": ["city_005", "lake_a", "lake_b", "wall_x"]}
    for split, names in frames.items():
        (tmp_path / "backgrounds" / split).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(tmp_path / "backgrounds" / split / f"{name}.jpg"), g.integers(0, 255, (60, 80, 3)))
    return tmp_path


def test_sources_are_named_by_prefix_and_only_unseen_ones_are_held_out(tree):
    assert source_of("lake_a_f03.jpg") == "lake"
    assert heldout_sources(tree / "backgrounds" / "train", tree / "backgrounds" / "val") == ["lake", "wall"]


def test_composites_spread_evenly_over_the_unseen_sources(tree):
    test = held_out_set(tree / "stamps", tree / "backgrounds", 6, (36, 48), seed=1)
    assert test.sources == ["lake", "wall"] * 3 and test.images.shape == (6, 36, 48, 3)
    assert set(test.bare) == {"lake", "wall"} and len(test.bare["lake"]) == 2
    again = held_out_set(tree / "stamps", tree / "backgrounds", 6, (36, 48), seed=1)
    np.testing.assert_array_equal(test.images, again.images)  # the same images for every model: paired


def test_scores_per_source_and_the_share_marked_on_bare_frames(tree):
    test = held_out_set(tree / "stamps", tree / "backgrounds", 4, (36, 48), seed=1)
    truth = iter(list(test.masks) * 2)
    perfect = score_sources(lambda frames: [next(truth) for _ in frames] if frames[0].shape[:2] == (36, 48)
                            else [np.zeros(f.shape[:2], np.uint8) for f in frames], test, "oracle", "x", batch=3)
    assert perfect.overall.dice == 1.0 and all(s.dice == 1.0 for s in perfect.per_source.values())
    assert perfect.bare_foreground == {"lake": 0.0, "wall": 0.0}
    everything = score_sources(lambda frames: [np.ones(f.shape[:2], np.uint8) for f in frames], test, "all", "x")
    assert everything.bare_foreground_mean == 1.0 and 0 < everything.overall.dice < 1


def test_a_folder_without_unseen_sources_is_one_error(tree):
    for p in (tree / "backgrounds" / "val").glob("[lw]*.jpg"):
        p.unlink()
    with pytest.raises(DataError, match="no source that train/ lacks"):
        held_out_set(tree / "stamps", tree / "backgrounds", 4, (36, 48))


def test_eval_cli_on_sources(tree, tiny_model_path, capsys):
    code = cli(["eval", "--stamps", str(tree / "stamps"), "--backgrounds", str(tree / "backgrounds"), "--count", "4",
                "--size", "48x36", "--model", str(tiny_model_path), "--against", str(tiny_model_path),
                "--engine", "reference", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["images"] == 4 and set(out["per_source"]) == {"lake", "wall"}
    assert out["dice_difference"] == 0.0 and 0.0 <= out["bare_foreground_mean"] <= 1.0

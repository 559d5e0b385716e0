"""Composite generator: shapes, mask = union of the pasted alphas (minus occluders), determinism, splits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mbunet.errors import DataError
from mbunet.train.composite import CompositeGenerator, CompositeRecipe, _recolour, draw_batch, load_stamps
from mbunet.train.config import TrainConfig
from mbunet.train.data import composite_data
from train_fixtures import TRAIN_BG, VAL_BG, make_composite_tree

# no colour changes and no blur: a pixel is red exactly where a (hard-alpha) red disc was pasted
PLAIN = CompositeRecipe(size=(48, 64), max_objects=3, jitter=0.0, blur_p=0.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_composite_tree(tmp_path_factory.mktemp("composite"))


def _generator(tree, recipe: CompositeRecipe = PLAIN, split: str = "train") -> CompositeGenerator:
    stamps, backgrounds = tree
    return CompositeGenerator.from_folders(stamps / split, backgrounds / split, recipe)


def test_sample_shapes_and_dtypes(tree):
    images, masks = draw_batch(_generator(tree), seed=0, start=0, n=5)
    assert images.shape == (5, 48, 64, 3) and images.dtype == np.uint8
    assert masks.shape == (5, 48, 64) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert all(m.any() for m in masks)  # at least one object, whose centre is always inside the frame


@pytest.mark.parametrize("options", [{"occlusion_p": 0.0}, {"occlusion_p": 1.0},
                                     {"degrade_p": 1.0, "mosaic_p": 1.0, "recolour_p": 1.0}])
def test_mask_is_union_of_pasted_alphas(tree, options):
    # black background, red discs: red > 127 <=> blended alpha > 127; occluders are black background texture, and
    # the background-only options (video look, mosaic, recolouring) leave the objects and the mask alone
    gen = _generator(tree, dataclasses.replace(PLAIN, max_objects=3, **options))
    images, masks = draw_batch(gen, seed=3, start=0, n=12)
    painted = images[..., 0] > 127
    disagree = np.count_nonzero(painted != masks.astype(bool))
    assert disagree <= 0.003 * masks.size  # only rounding at soft alpha edges may differ
    assert masks.sum() > 0.02 * masks.size


def test_recolouring_turns_the_hue_and_keeps_the_brightness():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    out = _recolour(rgb, np.random.default_rng(1))
    assert out.shape == rgb.shape and out.min() >= 0 and out.max() <= 255.001
    np.testing.assert_allclose(out.max(axis=-1), rgb.max(axis=-1), atol=0.05)  # HSV value = the largest channel
    assert np.abs(out - rgb).mean() > 10


def test_occluders_remove_foreground(tree):
    gen_free = _generator(tree, dataclasses.replace(PLAIN, occlusion_p=0.0))
    gen_occl = _generator(tree, dataclasses.replace(PLAIN, occlusion_p=1.0))
    free, occl = draw_batch(gen_free, 5, 0, 20)[1], draw_batch(gen_occl, 5, 0, 20)[1]
    assert occl.sum() < free.sum()


def test_same_seed_and_index_give_the_same_sample(tree):
    a, b = _generator(tree, CompositeRecipe(size=(48, 64))), _generator(tree, CompositeRecipe(size=(48, 64)))
    for i in (0, 7):
        ia, ma = a.item(11, i)
        ib, mb = b.item(11, i)
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert not np.array_equal(a.item(11, 0)[0], a.item(11, 1)[0])
    assert not np.array_equal(a.item(11, 0)[0], a.item(12, 0)[0])


def test_a_sample_drawn_large_is_the_large_sample_shrunk_as_run_shrinks_frames(tree):
    from mbunet.preprocess import resize_frame

    large = _generator(tree, dataclasses.replace(PLAIN, size=(96, 128)))
    drawn = _generator(tree, dataclasses.replace(PLAIN, draw_size=(96, 128)))
    for i in range(4):
        (big, big_mask), (image, mask) = large.item(5, i), drawn.item(5, i)
        assert image.shape == (48, 64, 3) and mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 1}
        assert np.array_equal(image, resize_frame(big, (48, 64)))
        # the mask is the large mask's 2x2 majority: a pixel is foreground when at least half of its block is
        share = big_mask.reshape(48, 2, 64, 2).mean(axis=(1, 3))
        assert np.array_equal(mask, (share >= 0.5).astype(np.uint8))
        assert mask.any()
    with pytest.raises(DataError, match="draw_size"):
        _generator(tree, dataclasses.replace(PLAIN, draw_size=(24, 32)))


def test_bare_backgrounds_have_empty_masks(tree):
    def draw(empty_p):
        return draw_batch(_generator(tree, dataclasses.replace(PLAIN, empty_p=empty_p)), 2, 0, 40)

    images, masks = draw(1.0)
    assert not masks.any() and (images[..., 0] <= TRAIN_BG).all()  # black frames, no red disc pasted
    images, masks = draw(0.5)
    bare = ~masks.reshape(len(masks), -1).any(axis=1)
    assert 8 <= bare.sum() <= 32  # about half of the 40
    with pytest.raises(DataError, match="empty_p must be in"):
        _generator(tree, dataclasses.replace(PLAIN, empty_p=1.5))


@pytest.mark.parametrize("balance, rare_share", [(0.0, 0.1), (1.0, 0.5), (0.5, 0.25)])
def test_source_balance_weighs_sources_not_frames(tree, tmp_path, balance, rare_share):
    # one source of 1 white frame, one of 9 black frames: bare backgrounds show which source was drawn; the white
    # one is 1/10 of the frames, 1/2 of the sources, and 1/(1 + 9 ** 0.5) = 1/4 with the square-root weighting
    import cv2
    for name, value in [("rare_0", 255)] + [(f"common_{i}", 0) for i in range(9)]:
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((48, 64, 3), value, np.uint8))
    recipe = dataclasses.replace(PLAIN, empty_p=1.0, source_balance=balance)
    gen = CompositeGenerator.from_folders(tree[0] / "train", tmp_path, recipe)
    images = draw_batch(gen, 0, 0, 600)[0]
    share = float(np.mean(images.mean(axis=(1, 2, 3)) > 127))
    assert abs(share - rare_share) < 0.06, share


def test_source_balance_needs_sources_and_a_valid_value():
    frame, stamp = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(DataError, match="needs the source of every background"):
        CompositeGenerator([stamp], [frame], dataclasses.replace(PLAIN, source_balance=1.0))
    with pytest.raises(DataError, match="source_balance must be in"):
        CompositeGenerator([stamp], [frame], dataclasses.replace(PLAIN, source_balance=2.0), ["a"])


def test_validation_has_objects_in_every_image_even_when_training_has_bare_backgrounds(tree):
    stamps, backgrounds = tree
    cfg = TrainConfig()
    recipe = dataclasses.replace(PLAIN, size=tuple(cfg.model.input_size), empty_p=1.0, source_balance=1.0)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_size=6, composite=recipe))
    data = composite_data(stamps, backgrounds, cfg)
    assert all(m.any() for m in data.val_masks)
    assert not draw_batch(data.train, 0, 0, 6)[1].any()
    assert "100% bare backgrounds" in data.description and "weighted by source (balance 1)" in data.description
    # validation draws plain composites: the same images whatever the training-only options are
    plain = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, composite=dataclasses.replace(
        recipe, empty_p=0.0, source_balance=0.0)))
    assert np.array_equal(composite_data(stamps, backgrounds, plain).val_images, data.val_images)


def test_validation_uses_only_val_objects_and_frames(tree):
    stamps, backgrounds = tree
    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_size=10, composite=dataclasses.replace(
        PLAIN, size=tuple(cfg.model.input_size))))
    data = composite_data(stamps, backgrounds, cfg)
    val = data.val_images.reshape(-1, 3)
    # val: grey frame blended with green objects only: red and blue never above the grey, green never below
    assert (val[:, [0, 2]] <= VAL_BG).all() and (val[:, 1] >= VAL_BG - 1).all()
    assert (val[:, 1] > 200).any()
    # train: black frame and red objects only
    train = draw_batch(data.train, 0, 0, 10)[0].reshape(-1, 3)
    assert (train[:, 1:] == TRAIN_BG).all() and (train[:, 0] > 200).any()


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_stamps(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .png files"):
        load_stamps(tmp_path / "empty")
    import cv2
    (tmp_path / "rgb").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="must be RGBA"):
        load_stamps(tmp_path / "rgb")

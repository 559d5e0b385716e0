"""Image/mask folders: pairing, mask decoding, clear errors, held-out split, writing a set to disk."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from mbunet.errors import DataError
from mbunet.train.config import TrainConfig
from mbunet.train.data import folder_data, select_data
from mbunet.train.folders import mask_labels, pair_folders, read_pair, write_folder
from train_fixtures import make_folder_pairs


@pytest.fixture
def pairs_dir(tmp_path):
    return make_folder_pairs(tmp_path, n=4)


def test_pairs_by_stem_and_reads_masks_as_labels(pairs_dir):
    pairs = pair_folders(*pairs_dir)
    assert [p.stem for p in pairs] == ["im0", "im1", "im2", "im3"]
    image, labels = read_pair(pairs[0])
    assert image.shape == (40, 50, 3) and labels.shape == (40, 50)
    assert set(np.unique(labels)) == {0, 1}


def test_missing_mask_names_the_expected_file(pairs_dir):
    images, masks = pairs_dir
    (masks / "im2.png").unlink()
    with pytest.raises(DataError, match=r"1 of 4 images have no mask \(expected im2.png"):
        pair_folders(images, masks)


def test_mask_of_another_size_is_an_error(pairs_dir):
    images, masks = pairs_dir
    cv2.imwrite(str(masks / "im1.png"), np.zeros((20, 50), np.uint8))
    with pytest.raises(DataError, match=r"mask is 50x20, its image is 50x40"):
        read_pair(pair_folders(images, masks)[1])


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(DataError, match="images folder .*: no such folder"):
        pair_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .jpg/.jpeg/.png/.bmp files"):
        pair_folders(tmp_path / "empty", tmp_path)


@pytest.mark.parametrize("values, classes, expected", [
    ([0, 255], 1, [0, 1]),
    ([0, 1], 1, [0, 1]),
    ([0, 255], 3, [0, 1]),
    ([0, 1, 2], 3, [0, 1, 2]),
    ([0, 7], 1, [0, 1]),
])
def test_mask_values_become_labels(values, classes, expected):
    assert mask_labels(np.array(values, np.uint8), classes).tolist() == expected


def test_class_index_beyond_the_model_is_an_error():
    with pytest.raises(DataError, match=r"class index 5 found, the model has 3 classes"):
        mask_labels(np.array([0, 1, 5], np.uint8), 3)


def test_write_folder_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 16, 32, 3), dtype=np.uint8)
    masks = (rng.random((3, 16, 32)) > 0.5).astype(np.uint8)
    out = write_folder(tmp_path / "val", images, masks)
    pairs = pair_folders(out / "images", out / "masks")
    assert len(pairs) == 3
    for pair, img, m in zip(pairs, images, masks):
        got_img, got_mask = read_pair(pair)
        assert np.array_equal(got_img, img) and np.array_equal(got_mask, m)
    assert cv2.imread(str(pairs[0].mask), cv2.IMREAD_UNCHANGED).max() == 255  # visible 0/255 on disk


def test_folder_data_holds_out_the_last_tenth(tmp_path):
    images, masks = make_folder_pairs(tmp_path, n=10)
    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_size=(32, 48)),
                              data=dataclasses.replace(cfg.data, composite=dataclasses.replace(
                                  cfg.data.composite, size=(32, 48))))
    data = folder_data(images, masks, cfg.validate())
    assert len(data.train) == 9 and data.val_images.shape == (1, 32, 48, 3) and data.val_masks.shape == (1, 32, 48)
    image, mask = data.train.item(0, 5)
    assert image.shape == (32, 48, 3) and set(np.unique(mask)) <= {0, 1}


def test_select_data_needs_exactly_one_recipe(tmp_path):
    with pytest.raises(DataError, match="found neither"):
        select_data(TrainConfig())
    with pytest.raises(DataError, match="only one of --stamps/--backgrounds"):
        select_data(TrainConfig(), stamps=str(tmp_path))
    with pytest.raises(DataError, match="not both"):
        select_data(TrainConfig(), stamps="a", backgrounds="b", images="c", masks="d")

"""`mbunet eval`: JSON schema, resize-to-input / nearest-back geometry, and error cases."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mbunet.app.cli import main as cli
from mbunet.arch import Architecture
from mbunet.engines.base import create_engine
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import save_model
from mbunet.train.evaluate import evaluate
from train_fixtures import make_folder_pairs

SIZE = (40, 50)  # images are not at the model's 32x32 input: eval must resize there and back


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    m = random_quantized_model(Architecture(width=4, input_size=(32, 32)), seed=3, name="rand-w4")
    return save_model(tmp_path_factory.mktemp("m") / "rand.safetensors", m.arch, m.arrays, m.card)


@pytest.fixture
def folders(tmp_path):
    return make_folder_pairs(tmp_path, n=3, size=SIZE)


def _eval_json(capsys, *args: str) -> dict:
    assert cli(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_schema(model_path, folders, capsys):
    images, masks = folders
    out = _eval_json(capsys, "--images", str(images), "--masks", str(masks), "--model", str(model_path),
                     "--engine", "reference")
    assert set(out) == {"model", "engine", "images", "dice", "iou", "f1"}
    assert out["model"] == "rand-w4" and out["engine"] == "reference" and out["images"] == 3
    assert all(0.0 <= out[k] <= 1.0 for k in ("dice", "iou", "f1"))


def test_masks_equal_to_the_engines_own_output_score_one(model_path, folders):
    """Write the engine's own prediction (input-size scores, bilinearly enlarged back and decided) as truth: a
    perfect score proves eval resizes to the input, enlarges the scores, and compares at full size."""
    from mbunet.modelfile import load_model
    from mbunet.preprocess import geometry, scores_to_frame

    images, masks = folders
    engine = create_engine("reference", load_model(model_path))
    found_foreground = False
    for path in sorted(images.glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA)
        scores = engine.segment_scores(small[None])[1][0]
        back = scores_to_frame(scores, geometry(SIZE, (32, 32), "resize"))
        found_foreground |= bool(back.any())
        cv2.imwrite(str(masks / path.name), back * 255)
    assert found_foreground  # otherwise the test would pass trivially on empty masks
    s = evaluate(model_path, images, masks, engine="reference").scores
    assert (s.dice, s.iou, s.f1) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("damage, message", [
    ("missing", "have no mask (expected im1.png"),
    ("resized", "mask is 50x20, its image is 50x40"),
])
def test_bad_masks_are_one_line_errors(model_path, folders, capsys, damage, message):
    images, masks = folders
    if damage == "missing":
        (masks / "im1.png").unlink()
    else:
        cv2.imwrite(str(masks / "im1.png"), np.zeros((20, 50), np.uint8))
    assert cli(["eval", "--images", str(images), "--masks", str(masks), "--model", str(model_path),
                "--engine", "reference", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1


def test_unknown_model_and_engine(model_path, folders, capsys):
    images, masks = folders
    assert cli(["eval", "--images", str(images), "--masks", str(masks), "--model", "no-such-model"]) == 2
    assert "model not found: no-such-model" in capsys.readouterr().err
    assert cli(["eval", "--images", str(images), "--masks", str(masks), "--model", str(model_path),
                "--engine", "warp-drive"]) == 2
    assert "unknown engine 'warp-drive'" in capsys.readouterr().err


def test_against_reports_the_paired_difference(model_path, folders, capsys, tmp_path):
    images, masks = folders
    other = random_quantized_model(Architecture(width=4, input_size=(32, 32)), seed=8, name="rand-b")
    other_path = save_model(tmp_path / "b.safetensors", other.arch, other.arrays, other.card)
    args = ["--images", str(images), "--masks", str(masks), "--engine", "reference"]
    out = _eval_json(capsys, *args, "--model", str(model_path), "--against", str(other_path))
    assert out["model"] == "rand-w4" and out["against"]["model"] == "rand-b"
    assert out["dice_difference"] == pytest.approx(out["dice"] - out["against"]["dice"])
    assert out["dice_difference_ci95"] >= 0
    assert cli(["eval", *args, "--model", str(model_path), "--against", str(model_path)]) == 0
    # same card name on both sides: each is named by the path given, not "rand-w4 - rand-w4"
    assert (f"dice difference {model_path} - {model_path}: +0.0000 +-0.0000 (95% CI, paired over the same images): "
            "no clear difference") in capsys.readouterr().out


def test_against_an_unknown_or_unsuitable_model_fails_before_scoring(model_path, folders, capsys, tmp_path):
    images, masks = folders
    torch = pytest.importorskip("torch")
    from mbunet.export import export_model
    from mbunet.nn import UNet

    fp = Architecture(width=4, input_size=(32, 32), quantized=False)
    torch.manual_seed(0)
    fp_path = export_model(UNet(fp).eval(), fp, {"name": "fp"}, tmp_path / "fp.safetensors")
    for against, message in (("no-such-model", "model not found: no-such-model"),
                             (str(fp_path), "engine cpu cannot run")):
        assert cli(["eval", "--images", str(images), "--masks", str(masks), "--model", str(model_path),
                    "--engine", "cpu", "--against", against]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "images" not in captured.err


def test_one_image_is_scored_without_an_interval(model_path, tmp_path, capsys):
    images, masks = make_folder_pairs(tmp_path, n=1, size=SIZE)
    assert cli(["eval", "--images", str(images), "--masks", str(masks), "--model", str(model_path),
                "--engine", "reference"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 images: dice " in line and "nan" not in line and "CI" not in line

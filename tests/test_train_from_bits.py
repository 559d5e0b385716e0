"""A quantized model file as `--init`: rebuilt as trainable weights whose export gives the file back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mbunet.app.cli import main as cli
from mbunet.errors import ConfigError, MbunetError
from mbunet.bits import ALWAYS_OFF, ALWAYS_ON
from mbunet.export import export_model, quantized_arrays
from mbunet.modelfile import load_model, save_model
from mbunet.nn import UNet, set_quant_mix
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data
from mbunet.train.from_bits import check_compatible, load_from_bits
from mbunet.train.batches import to_input
from mbunet.train.checkpoint import CHECKPOINT, read_checkpoint
from mbunet.train.trainer import Trainer
from train_fixtures import make_composite_tree, make_folder_pairs

# width 5: channel counts 5..80, none a multiple of 32; 48x32 input: odd sizes after the last pooling (3x2)
MBU = {"name": "tiny-mbu", "model": {"width": 5, "input_size": [32, 48], "masked": ["up-CT1", "down-C2", "up-C4"]},
       "data": {"composite": {"size": [32, 48], "max_objects": 2}, "val_size": 4},
       "train": {"steps": 2, "batch": 2, "val_every": 2, "warmup": 0.0, "ramp": 0.0}}
BINARY = {**MBU, "name": "tiny-bin", "model": {**MBU["model"], "masked": []}}


def _arch(raw):
    return config_from_dict(raw).model.architecture()


def _trained_like_file(raw, path, seed=0):
    """A model file as training exports one: random latent weights and BatchNorms (negative gammas included, so
    the file holds flipped channels) through export_model."""
    torch.manual_seed(seed)
    model = UNet(_arch(raw))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.normal_(0, 1)
                m.bias.normal_(0, 0.5)
    set_quant_mix(model, 1.0)
    return export_model(model, model.arch, {"name": raw["name"]}, path)


def _calibration(raw, n=6, seed=1):
    return _random_samples(*raw["model"]["input_size"], n, seed)


def _random_samples(h, w, n, seed):
    """(images, labels) of random pixels: the eval-mode function a rebuild gives back does not depend on them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), rng.integers(0, 2, (n, h, w), dtype=np.uint8)


def _rebuilt_arrays(raw, model_file, calibration=None):
    model = UNet(_arch(raw))
    load_from_bits(model, model_file, calibration or _calibration(raw))
    assert model.training  # calibrated in eval mode, handed back to training in training mode
    set_quant_mix(model, 1.0)
    return quantized_arrays(model.eval(), model.arch)[0]


def assert_same_arrays(rebuilt, original):
    """Every array equal, except the input conv's thresholds: pixel-domain integers, computed through a float32
    BatchNorm (24-bit mantissa) both at export and here from terms as large as the channel's largest dot product
    (255 x the sum of its |weights|, up to ~1e8), so they agree to a few parts in 1e7 of that (a dot within that
    of its threshold, a chance near 1e-7 per pixel, is the only one that can differ)."""
    assert set(rebuilt) == set(original)
    for name, array in original.items():
        if name == "in.0.threshold":
            span = 255.0 * np.abs(original["in.0.weight"].astype(np.float64)).reshape(len(array), -1).sum(1)
            slack = 1 + 4e-7 * np.maximum(np.abs(array.astype(np.float64)), span)
            assert np.all(np.abs(rebuilt[name].astype(np.int64) - array) <= slack), name
        else:
            assert np.array_equal(rebuilt[name], array), name


@pytest.mark.parametrize("raw", [MBU, BINARY], ids=["mbunet", "binary"])
def test_a_rebuilt_file_exports_to_the_same_arrays(raw, tmp_path):
    original = load_model(_trained_like_file(raw, tmp_path / "m.safetensors"))
    assert original.card["flipped_channels"]  # the file negated some channels' weights: rebuilt with gamma > 0
    assert_same_arrays(_rebuilt_arrays(raw, original), original.arrays)


def test_constant_channels_and_an_all_zero_masked_channel_keep_their_function(tmp_path):
    original = load_model(_trained_like_file(MBU, tmp_path / "m.safetensors"))
    arrays = dict(original.arrays)
    thr = arrays["down2.0.threshold"].copy()
    thr[:2] = ALWAYS_ON, ALWAYS_OFF
    arrays["down2.0.threshold"] = thr
    pos, neg = arrays["up1.ct.pos"].copy(), arrays["up1.ct.neg"].copy()
    pos[1], neg[1] = 0, 0             # a masked channel with no weight left: its dot is always 0 ...
    up_thr = arrays["up1.ct.threshold"].copy()
    up_thr[1] = -3                    # ... and 0 >= -3: always +1
    arrays.update({"up1.ct.pos": pos, "up1.ct.neg": neg, "up1.ct.threshold": up_thr})
    edited = load_model(save_model(tmp_path / "edited.safetensors", original.arch, arrays, {"name": "edited"}))
    rebuilt = _rebuilt_arrays(MBU, edited)
    assert list(rebuilt["down2.0.threshold"][:2]) == [ALWAYS_ON, ALWAYS_OFF]
    assert rebuilt["up1.ct.threshold"][1] == ALWAYS_ON
    rebuilt["up1.ct.threshold"][1] = -3
    assert_same_arrays(rebuilt, arrays)


def test_a_binary_file_starts_a_masked_network_but_not_the_reverse(tmp_path):
    binary = load_model(_trained_like_file(BINARY, tmp_path / "b.safetensors"))
    assert_same_arrays(_rebuilt_arrays(MBU, binary), binary.arrays)  # +-1 weights are masked weights, no zero
    masked = load_model(_trained_like_file(MBU, tmp_path / "m.safetensors"))
    with pytest.raises(MbunetError, match="masked there and binary in the recipe"):
        _rebuilt_arrays(BINARY, masked)
    wider = {**MBU, "model": {**MBU["model"], "width": 6}}
    with pytest.raises(MbunetError, match="does not fit"):
        _rebuilt_arrays(wider, masked)


def test_the_output_scale_is_fitted_to_the_calibration_labels(tmp_path):
    """The file keeps the output conv's integers, not their scale, which the mask ignores and the loss does not:
    labels that agree with the file's mask make the fitted logits confident, labels that contradict it timid."""
    original = load_model(_trained_like_file(MBU, tmp_path / "m.safetensors"))
    images, _ = _calibration(MBU)
    model = UNet(_arch(MBU))
    load_from_bits(model, original, (images, np.zeros(images.shape[:3], np.uint8)))
    with torch.no_grad():
        own = (model.eval()(to_input(images, torch.device("cpu"))) >= 0).squeeze(1).numpy().astype(np.uint8)
    scales = {}
    for name, labels in (("agree", own), ("contradict", 1 - own)):
        load_from_bits(model, original, (images, labels))
        scales[name] = float(model.outc.weight.detach().abs().max())
        assert np.array_equal(np.sign(model.outc.weight.detach().numpy()[:, :, 0, 0]),
                              np.sign(original.arrays["out.weight"]))
    assert scales["agree"] > 10 * scales["contradict"]


@pytest.mark.parametrize("name", ["mbunet-w32", "binary-w32"])
def test_a_shipped_model_rebuilds_to_its_own_arrays(name):
    shipped = load_model(name)
    model = UNet(shipped.arch)
    load_from_bits(model, shipped, _random_samples(*shipped.arch.input_size, n=2, seed=0))
    set_quant_mix(model, 1.0)
    assert_same_arrays(quantized_arrays(model.eval(), model.arch)[0], shipped.arrays)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_composite_tree(tmp_path_factory.mktemp("data"))


def test_cli_fine_tunes_a_quantized_file_and_the_card_names_it(tree, tmp_path, capsys):
    source = load_model(_trained_like_file(MBU, tmp_path / "start.safetensors"))
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(json.dumps({**MBU, "train": {**MBU["train"], "init": str(tmp_path / "start.safetensors")}}))
    out, model = tmp_path / "run", tmp_path / "ft.safetensors"
    assert cli(["train", "--config", str(recipe), "--stamps", str(tree[0]), "--backgrounds", str(tree[1]),
                "--out", str(out), "--no-progress", "--device", "cpu", "--export-final", str(model)]) == 0
    assert "as trainable weights with the same function" in capsys.readouterr().out
    digest = read_checkpoint(out / CHECKPOINT)["init_digest"]
    assert digest == {"arrays_sha256": source.card["arrays_sha256"], "rebuilt_from": "mbunet"}
    assert (f"(a quantized model file (kind mbunet), rebuilt as trainable weights with its function; its arrays_sha256 "
            f"{source.card['arrays_sha256']})") in (tmp_path / "ft.md").read_text()


def test_a_recipe_that_starts_in_full_precision_is_refused(tree, tmp_path):
    path = _trained_like_file(MBU, tmp_path / "start.safetensors")
    raw = {**MBU, "train": {**MBU["train"], "warmup": 0.5, "ramp": 0.5, "init": str(path)}}
    cfg = config_from_dict(raw)
    trainer = Trainer(cfg, composite_data(*tree, cfg), torch.device("cpu"), tmp_path / "run")
    with pytest.raises(ConfigError, match="warmup 0 and train.ramp 0"):
        trainer.warm_start()


@pytest.mark.parametrize("statistics", ["frozen", "batch"])
def test_frozen_batchnorm_statistics_stay_put_while_the_weights_train(tree, tmp_path, statistics):
    cfg = config_from_dict({**MBU, "train": {**MBU["train"], "bn_statistics": statistics, "val_every": 1}})
    trainer = Trainer(cfg, composite_data(*tree, cfg), torch.device("cpu"), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(progress=False)  # two steps, validation after each (which switches the model to eval and back)
    after = trainer.model.state_dict()
    running = [k for k in before if "running_" in k]
    assert all(torch.equal(before[k], after[k]) for k in running) == (statistics == "frozen")
    assert not torch.equal(before["inc.1.weight"], after["inc.1.weight"])


def test_an_unknown_batchnorm_statistics_setting_is_refused():
    with pytest.raises(ConfigError, match="train.bn_statistics 'moving'"):
        config_from_dict({**MBU, "train": {**MBU["train"], "bn_statistics": "moving"}})


def test_the_shipped_fine_tune_recipe_starts_binarised_from_the_shipped_mbunet_with_frozen_statistics():
    from mbunet.config import CONFIG_DIR
    from mbunet.train.config import load_config

    cfg = load_config("finetune-mbunet")
    t = cfg.train
    assert (t.init, t.warmup, t.ramp, t.bn_statistics) == ("mbunet-w32", 0.0, 0.0, "frozen")
    check_compatible(load_model(t.init), cfg.model.architecture())


def test_cli_fine_tunes_on_a_folder_of_images_and_masks(tmp_path):
    """The README's user case: the shipped kind of file, the user's own labelled images (any size, resized)."""
    _trained_like_file(MBU, tmp_path / "start.safetensors")
    images, masks = make_folder_pairs(tmp_path, n=4)
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(json.dumps({**MBU, "train": {**MBU["train"], "init": str(tmp_path / "start.safetensors"),
                                                   "bn_statistics": "frozen"}}))
    model = tmp_path / "mine.safetensors"
    assert cli(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out",
                str(tmp_path / "run"), "--no-progress", "--device", "cpu", "--export-final", str(model)]) == 0
    card = load_model(model).card
    assert card["training"]["steps"] == 2 and card["training"]["init_digest"]["rebuilt_from"] == "mbunet"
    text = (tmp_path / "mine.md").read_text()
    assert "BatchNorm statistics frozen" in text
    # the card tells the user how to train it again: their recipe file and the folder flags, not composites
    assert f"`mbunet train --config {recipe} --images DIR --masks DIR --steps 2 " in text

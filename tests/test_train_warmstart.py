"""Warm start (`train.init` / `mbunet train --init`): a quantized U-Net starts from a trained FP model's weights."""
from __future__ import annotations

import hashlib

import pytest
import torch

from mbunet.app.cli import main as cli
from mbunet.errors import MbunetError
from mbunet.nn import QuantConv, UNet
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data
from mbunet.train.checkpoint import CHECKPOINT
from mbunet.train.trainer import Trainer
from mbunet.train.warmstart import warm_start
from train_fixtures import make_composite_tree

FP = {
    "name": "tiny-fp",
    "model": {"width": 4, "input_size": [32, 32], "quantized": False},
    "data": {"composite": {"size": [32, 32], "max_objects": 2}, "val_size": 4},
    "train": {"steps": 2, "batch": 2, "val_every": 2, "warmup": 0.0, "ramp": 0.0},
}
QUANT = {**FP, "name": "tiny-q", "model": {"width": 4, "input_size": [32, 32], "masked": ["up-CT1", "down-C2"]},
         "train": {**FP["train"], "warmup": 0.5, "ramp": 0.5}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_composite_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def fp_file(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp")
    cfg = config_from_dict(FP)
    Trainer(cfg, composite_data(*tree, cfg), torch.device("cpu"), out).fit(out / "fp.safetensors", progress=False)
    return out / "fp.safetensors"


def _quantized(raw=QUANT) -> UNet:
    torch.manual_seed(1)
    return UNet(config_from_dict(raw).model.architecture())


def test_fp_file_fills_every_quantized_conv_and_batchnorm(fp_file):
    from safetensors.torch import load_file

    fp = load_file(str(fp_file))
    model = _quantized()
    started = warm_start(model, fp_file)
    # the double conv's first conv: FP Sequential (conv, bn, relu) -> QuantConv (weight, bn)
    q = model.down[1][0]
    assert isinstance(q, QuantConv) and q.kind == "masked"
    assert torch.equal(q.weight, fp["down.1.0.0.weight"].float())
    assert torch.equal(q.bn.running_var, fp["down.1.0.1.running_var"].float())
    assert torch.equal(model.inc[0].conv.weight, fp["inc.0.conv.weight"].float())
    assert torch.equal(model.inc[1].weight, fp["inc.1.0.weight"].float())
    assert torch.equal(model.up[2].weight, fp["up.2.weight"].float())
    assert torch.equal(model.outc.bias, fp["outc.bias"].float())
    # only the BatchNorms the FP net does not have (after its transposed convs) start fresh
    assert started["fresh"] and all(k.startswith("up.") and ".bn." in k for k in started["fresh"])


def test_checkpoint_of_the_same_network_is_copied_whole(tree, tmp_path):
    cfg = config_from_dict(QUANT)
    trainer = Trainer(cfg, composite_data(*tree, cfg), torch.device("cpu"), tmp_path)
    trainer.train_step()
    trainer.save()
    model = _quantized()
    started = warm_start(model, tmp_path / CHECKPOINT)
    assert started["fresh"] == []
    assert started["digest"] == {"file_sha256": hashlib.sha256((tmp_path / CHECKPOINT).read_bytes()).hexdigest()}
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_quantized_model_file_cannot_start_a_full_precision_network(tree, tmp_path):
    """(It starts a quantized one: tests/test_train_from_bits.py.)"""
    cfg = config_from_dict(QUANT)
    trainer = Trainer(cfg, composite_data(*tree, cfg), torch.device("cpu"), tmp_path)
    trainer.fit(tmp_path / "q.safetensors", progress=False)
    with pytest.raises(MbunetError, match="can start a quantized network only"):
        warm_start(_quantized(FP), tmp_path / "q.safetensors")


def test_another_width_is_refused(fp_file):
    wider = {**QUANT, "model": {**QUANT["model"], "width": 8}}
    with pytest.raises(MbunetError, match="another width"):
        warm_start(_quantized(wider), fp_file)


def test_cli_init_trains_from_the_fp_file_and_records_it(tree, fp_file, tmp_path, capsys):
    import yaml

    recipe = tmp_path / "q.yaml"
    recipe.write_text(yaml.safe_dump(QUANT))
    out = tmp_path / "run"
    assert cli(["train", "--config", str(recipe), "--stamps", str(tree[0]), "--backgrounds", str(tree[1]),
                "--init", str(fp_file), "--out", str(out), "--export", str(tmp_path / "q.safetensors"),
                "--no-progress"]) == 0
    assert "initialised" in capsys.readouterr().out
    stored = torch.load(out / CHECKPOINT, weights_only=True)["config"]["train"]["init"]
    assert stored == str(fp_file)
    # the card names the exact weights it started from: a file under the same name may be replaced later
    from mbunet.modelfile import load_model

    fp_digest = load_model(fp_file).card["arrays_sha256"]
    assert load_model(tmp_path / "q.safetensors").card["training"]["init_digest"] == {"arrays_sha256": fp_digest}
    assert f"initialised from `{fp_file}` (trained weights, copied where the networks share them; its " \
           f"arrays_sha256 {fp_digest})" in (tmp_path / "q.md").read_text()
    # a resume keeps it (the checkpoint carries it), and so does a checkpoint exported by hand
    assert cli(["export", str(out / CHECKPOINT), str(tmp_path / "by-hand.safetensors")]) == 0
    assert load_model(tmp_path / "by-hand.safetensors").card["training"]["init_digest"] == {"arrays_sha256": fp_digest}


@pytest.mark.parametrize("flag", ["--init", "--teacher"])  # the two flags that name a model file to read
def test_cli_missing_model_file_is_one_line(tree, tmp_path, capsys, flag):
    import yaml

    recipe = tmp_path / "q.yaml"
    recipe.write_text(yaml.safe_dump(QUANT))
    code = cli(["train", "--config", str(recipe), "--stamps", str(tree[0]), "--backgrounds", str(tree[1]),
                flag, str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "nope.safetensors" in err

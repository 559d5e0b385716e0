"""`mbunet export CKPT OUT`: a training checkpoint becomes a verified model file; bad checkpoints fail in one line."""
from __future__ import annotations

import numpy as np
import torch

from mbunet.app.cli import main as cli
from mbunet.engines.base import create_engine
from mbunet.modelfile import load_model
from mbunet.nn import set_quant_mix
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data
from mbunet.train.trainer import Trainer
from train_fixtures import make_composite_tree

RECIPE = {
    "name": "tiny-export",
    "model": {"width": 4, "input_size": [32, 32], "masked": ["up-CT2"]},
    "data": {"composite": {"size": [32, 32], "max_objects": 2}, "val_size": 4},
    "train": {"steps": 2, "batch": 2, "val_every": 2, "warmup": 0.5, "ramp": 0.0},
}


def test_export_checkpoint_matches_the_trained_network(tmp_path, capsys):
    cfg = config_from_dict(RECIPE)
    trainer = Trainer(cfg, composite_data(*make_composite_tree(tmp_path / "data"), cfg), torch.device("cpu"),
                      tmp_path / "run")
    trainer.begin_stage()
    for _ in range(2):
        trainer.train_step()
    ckpt = trainer.save()
    out = tmp_path / "model.safetensors"
    assert cli(["export", str(ckpt), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model_file = load_model(out)
    assert model_file.kind == "mbunet" and model_file.card["training"]["steps"] == 2
    # the stages say how the checkpoint was trained (the card's commands that reproduce it)
    assert [(s["start"], s["steps"]) for s in model_file.card["training"]["stages"]] == [(0, 2)]
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    net = trainer.model.eval()
    set_quant_mix(net, 1.0)
    with torch.no_grad():
        expected = (net(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)[:, 0] >= 0).numpy()
    assert (create_engine("reference", model_file).segment(frames) == expected).mean() >= 0.999


def test_export_of_a_non_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint")
    assert cli(["export", str(bad), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable training checkpoint (not a PyTorch file" in err and len(err.splitlines()) == 1
    assert cli(["export", str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err

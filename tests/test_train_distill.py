"""Knowledge distillation (`train.teacher` / `mbunet train --teacher`): a quantized student learns an FP teacher's
soft output besides the labels."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mbunet.app.cli import main as cli
from mbunet.errors import ConfigError
from mbunet.export import export_model
from mbunet.nn import UNet
from mbunet.train.composite import draw_batch
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data
from mbunet.train.distill import load_teacher
from mbunet.train.losses import distillation_loss
from mbunet.train.batches import to_input
from mbunet.train.checkpoint import CHECKPOINT
from mbunet.train.trainer import Trainer
from train_fixtures import make_composite_tree

STUDENT = {
    "name": "tiny-student",
    "model": {"width": 4, "input_size": [32, 32], "masked": ["up-CT1", "down-C2"]},
    "data": {"composite": {"size": [32, 32], "max_objects": 2}, "val_size": 4},
    "train": {"steps": 2, "batch": 2, "val_every": 2, "warmup": 0.0, "ramp": 0.0},
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_composite_tree(tmp_path_factory.mktemp("data"))


def _model_file(path, quantized: bool = False, classes: int = 1):
    """An untrained width-4 model file: the teacher's weights need not be good to test the plumbing."""
    raw = {**STUDENT, "model": {**STUDENT["model"], "quantized": quantized, "classes": classes}}
    arch = config_from_dict(raw).model.architecture()
    torch.manual_seed(3)
    return export_model(UNet(arch), arch, {"name": path.stem}, path)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return _model_file(tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


@pytest.mark.parametrize("classes", [1, 3])
def test_the_term_is_smallest_with_zero_gradient_where_the_student_matches_the_teacher(classes):
    torch.manual_seed(0)
    teacher = torch.randn(2, classes, 5, 7)
    matched = teacher.clone().requires_grad_(True)
    distillation_loss(matched, teacher).backward()
    assert matched.grad.abs().max() < 1e-7
    off = teacher + 0.5 * torch.randn_like(teacher)
    assert distillation_loss(off, teacher) > distillation_loss(teacher, teacher)


def test_a_step_adds_the_weighted_term_to_the_label_loss(tree, teacher_file, tmp_path):
    plain_cfg = config_from_dict(STUDENT)
    data = composite_data(*tree, plain_cfg)
    plain = Trainer(plain_cfg, data, torch.device("cpu"), tmp_path / "plain")
    taught_cfg = dataclasses.replace(plain_cfg, train=dataclasses.replace(plain_cfg.train, teacher=str(teacher_file),
                                                                          distill_weight=0.5))
    taught = Trainer(taught_cfg, data, torch.device("cpu"), tmp_path / "taught")
    with torch.no_grad():  # step 0's batch (no crop in this recipe) through the same initial weights
        images, _ = draw_batch(data.train, 0, 0, 2)
        x = to_input(images, torch.device("cpu"))
        expected_term = distillation_loss(taught.model(x), taught.teacher(x)).item()
    assert taught.train_step() == pytest.approx(plain.train_step() + 0.5 * expected_term, rel=1e-5)
    assert not any(p.requires_grad for p in taught.teacher.parameters())
    assert not taught.teacher.training  # BatchNorm statistics stay the teacher's


def test_a_quantized_or_mismatched_teacher_is_refused(tmp_path):
    quantized = _model_file(tmp_path / "q.safetensors", quantized=True)
    with pytest.raises(ConfigError, match="must be a full-precision model"):
        load_teacher(str(quantized), 1, torch.device("cpu"))
    three = _model_file(tmp_path / "c3.safetensors", classes=3)
    with pytest.raises(ConfigError, match="3 class"):
        load_teacher(str(three), 1, torch.device("cpu"))


def test_negative_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="distill_weight"):
        config_from_dict({**STUDENT, "train": {**STUDENT["train"], "distill_weight": -1}})


def test_cli_teacher_is_stored_kept_on_resume_and_named_in_the_card(tree, teacher_file, tmp_path, capsys):
    import yaml

    recipe = tmp_path / "s.yaml"
    recipe.write_text(yaml.safe_dump(STUDENT))
    data = ["--stamps", str(tree[0]), "--backgrounds", str(tree[1]), "--no-progress"]
    out = tmp_path / "run"
    assert cli(["train", "--config", str(recipe), "--teacher", str(teacher_file), "--distill-weight", "0.25",
                "--out", str(out), "--steps", "1", "--export", str(tmp_path / "s.safetensors")] + data) == 0
    assert f"distilling from {teacher_file} (weight 0.25)" in capsys.readouterr().out
    assert f"distilled from `{teacher_file}`: the loss adds 0.25 x" in (tmp_path / "s.md").read_text()
    assert cli(["train", "--resume", str(out / CHECKPOINT), "--steps", "2"] + data) == 0
    assert "distilling from" in capsys.readouterr().out
    stored = torch.load(out / CHECKPOINT, weights_only=True)["config"]["train"]
    assert (stored["teacher"], stored["distill_weight"], stored["steps"]) == (str(teacher_file), 0.25, 2)


def test_a_resume_that_adds_a_teacher_starts_a_stage_that_records_it(tree, teacher_file, tmp_path):
    cfg = config_from_dict(STUDENT)
    data = composite_data(*tree, cfg)
    plain = Trainer(cfg, data, torch.device("cpu"), tmp_path)
    plain.begin_stage()
    plain.train_step()
    plain.save()
    taught_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, teacher=str(teacher_file)))
    taught = Trainer(taught_cfg, data, torch.device("cpu"), tmp_path)
    taught.load(tmp_path / CHECKPOINT)
    taught.begin_stage()
    assert [(s["start"], s["steps"], s["teacher"]) for s in taught.stages] == [(0, 2, ""), (1, 2, str(teacher_file))]


def test_card_says_which_stages_distilled_and_how_to_reproduce_them():
    from mbunet.modelfile import load_model
    from mbunet.train.card import card_markdown

    card = load_model("mbunet-w32").card
    recipe = {**card["training"]["recipe"], "train": {**card["training"]["recipe"]["train"], "teacher": "fp-x",
                                                      "distill_weight": 0.5, "activation_grad": "ste"}}
    stages = [{"start": 0, "end": 100, "steps": 100, "seconds": 1},
              {"start": 100, "end": 200, "steps": 200, "seconds": 1}]
    for recorded in (False, True):  # older records name no teacher: only the last stage (the stored recipe) can
        if recorded:
            stages = [{**stages[0], "teacher": ""}, {**stages[1], "teacher": "fp-x"}]
        text = card_markdown({**card, "training": {**card["training"], "recipe": recipe, "stages": stages}})
        assert "distilled from `fp-x`: the loss adds 0.5 x" in text
        assert "steps 0-100 of a 100-step schedule, 1 s; steps 100-200 of a 200-step schedule, distilled from fp-x" \
            in text
        first, second = text.split("Reproduce: ")[1].split(", then ")
        assert "--teacher" not in first and "--steps 200 --teacher fp-x --export" in second
    # the end of the schedule is written by the last command alone; a best-validated export by every command
    text = card_markdown({**card, "training": {**card["training"], "recipe": recipe, "stages": stages,
                                               "selection": "final"}})
    first, second = text.split("Reproduce: ")[1].split(", then ")
    assert "--export" not in first and second.startswith("`mbunet train --resume runs/train/mbunet-w32/last.pt "
                                                         "--stamps DIR --backgrounds DIR --steps 200 --teacher "
                                                         "fp-x --export-final mbunet-w32.safetensors`")

"""Training end to end on a width-4, 32x32 U-Net: finite loss, exact resume, export that the engines agree with."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from mbunet.app.cli import main as cli
from conftest import REPO
from mbunet.errors import ConfigError, MbunetError
from mbunet.modelfile import load_model
from mbunet.train.card import _stopped_early
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data, folder_data
from mbunet.train.evaluate import evaluate
from mbunet.train.folders import write_folder
from mbunet.train.checkpoint import CHECKPOINT, read_checkpoint
from mbunet.train.trainer import Trainer, pick_device
from train_fixtures import make_composite_tree, make_folder_pairs

TINY = {
    "name": "tiny",
    "model": {"width": 4, "input_size": [32, 32], "masked": ["up-CT1", "up-CT4"]},
    "data": {"composite": {"size": [32, 32], "max_objects": 2}, "val_size": 6},
    "train": {"steps": 3, "batch": 2, "val_every": 3, "warmup": 0.34, "ramp": 0.33},
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_composite_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def data(tree):
    return composite_data(*tree, config_from_dict(TINY))


def _recipe_file(folder):
    path = folder / "tiny.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    return path


def _trainer(data, out, recipe_file="", **train) -> Trainer:
    raw = {**TINY, "train": {**TINY["train"], **train}}
    return Trainer(config_from_dict(raw), data, torch.device("cpu"), out, recipe_file=recipe_file)


def test_three_steps_give_a_finite_loss_and_a_checkpoint(data, tmp_path):
    t = _trainer(data, tmp_path)
    losses = [t.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    state = read_checkpoint(t.save())
    assert state["step"] == 3 and state["config"]["name"] == "tiny"


def test_resume_continues_exactly(data, tmp_path):
    straight = _trainer(data, tmp_path / "a", steps=4)
    for _ in range(4):
        straight.train_step()
    first = _trainer(data, tmp_path / "b", steps=4)
    for _ in range(2):
        first.train_step()
    first.save()
    resumed = _trainer(data, tmp_path / "c", steps=4)
    resumed.load(tmp_path / "b" / CHECKPOINT)
    assert resumed.step == 2
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


@pytest.mark.parametrize("change", [{"masked": []}, {"mask_delta": 1.6}])
def test_resume_refuses_another_model(data, tmp_path, change):
    t = _trainer(data, tmp_path)
    t.save()
    other = Trainer(config_from_dict({**TINY, "model": {**TINY["model"], **change}}), data,
                    torch.device("cpu"), tmp_path / "o")
    with pytest.raises(ConfigError, match="another model"):
        other.load(tmp_path / CHECKPOINT)


def test_exported_model_scores_what_training_validated(data, tmp_path):
    """The card's validation Dice (torch, quant mix 1) matches the bit-exact reference engine on the same set."""
    t = _trainer(data, tmp_path)
    t.fit(tmp_path / "tiny.safetensors", progress=False)
    card = load_model(tmp_path / "tiny.safetensors").card
    assert card["training"]["steps"] == 3 and set(card["scores"]) >= {"val_dice", "val_iou", "val_f1"}
    assert f"Dice **{card['scores']['val_dice']:.4f}**" in (tmp_path / "tiny.md").read_text()
    folder = write_folder(tmp_path / "val", data.val_images, data.val_masks)
    result = evaluate(tmp_path / "tiny.safetensors", folder / "images", folder / "masks", engine="reference")
    assert result.scores.images == 6
    assert result.scores.dice == pytest.approx(card["scores"]["val_dice"], abs=0.02)


def test_activation_gradient_flag_reaches_the_recipe_the_model_and_the_card(tree, data, tmp_path):
    recipe = _recipe_file(tmp_path)
    out, model = tmp_path / "run", tmp_path / "m.safetensors"
    assert cli(["train", "--config", str(recipe), "--stamps", str(tree[0]), "--backgrounds", str(tree[1]),
                "--activation-grad", "approxsign", "--steps", "1", "--val-every", "1", "--out", str(out),
                "--no-progress", "--export", str(model)]) == 0
    assert read_checkpoint(out / CHECKPOINT)["config"]["train"]["activation_grad"] == "approxsign"
    text = (tmp_path / "m.md").read_text()
    assert "activation gradient approxsign" in text
    assert f"`mbunet train --config {recipe} --stamps DIR --backgrounds DIR --steps 1 " in text
    t = _trainer(data, tmp_path / "t", activation_grad="approxsign")
    assert {m.activation_grad for m in t.model.modules() if hasattr(m, "activation_grad")} == {"approxsign"}


def test_card_records_each_schedule_the_run_followed(data, tmp_path):
    """An interrupted run resumed with the same --steps is one stage; a resume with more steps starts another."""
    first = _trainer(data, tmp_path, steps=3)
    first.fit(minutes=0, progress=False)  # stops after one step, as a Ctrl-C would
    interrupted = _trainer(data, tmp_path, steps=3)
    interrupted.load(tmp_path / CHECKPOINT)
    interrupted.fit(progress=False)
    longer = _trainer(data, tmp_path, steps=5, val_every=5)
    longer.load(tmp_path / CHECKPOINT)
    longer.fit(export_final=tmp_path / "tiny.safetensors", progress=False)  # not --export: step 5 need not beat 3
    stages = load_model(tmp_path / "tiny.safetensors").card["training"]["stages"]
    assert [(s["start"], s["end"], s["steps"]) for s in stages] == [(0, 3, 3), (3, 5, 5)]
    card = (tmp_path / "tiny.md").read_text()
    assert "steps 0-3 of a 3-step schedule" in card and "steps 3-5 of a 5-step schedule" in card
    assert "--steps 3 --lr 0.001 --width 4 --activation-grad ste`" in card
    assert "--resume runs/train/tiny/last.pt --stamps DIR --backgrounds DIR --steps 5 --export-final tiny.safetensors" in card


def test_a_resume_that_changes_the_activation_gradient_starts_a_stage_the_card_names(data, tmp_path):
    first = _trainer(data, tmp_path, steps=2)
    first.fit(minutes=0, progress=False)  # one step, then a checkpoint
    switched = _trainer(data, tmp_path, steps=2, activation_grad="approxsign")
    switched.load(tmp_path / CHECKPOINT)
    switched.fit(tmp_path / "tiny.safetensors", progress=False)
    stages = load_model(tmp_path / "tiny.safetensors").card["training"]["stages"]
    assert [(s["start"], s["end"], s["activation_grad"]) for s in stages] == [(0, 1, "ste"), (1, 2, "approxsign")]
    card = (tmp_path / "tiny.md").read_text()
    assert "activation gradient by stage" in card
    assert re.search(r"steps 0-1 of a 2-step schedule, \d+ s; steps 1-2 of a 2-step schedule, activation "
                     r"gradient approxsign, \d+ s", card)
    first_command, resumed = card.split("Reproduce: ")[1].split(", then ")
    assert "--steps 2 --lr 0.001 --width 4 --activation-grad ste --export" in first_command  # whatever the recipe file says
    assert first_command.endswith("(stopped at step 1, with --minutes)")
    assert "--steps 2 --activation-grad approxsign --export" in resumed and "stopped" not in resumed


def test_a_resume_on_other_data_starts_a_stage_whose_command_names_that_data(data, tmp_path):
    """Composites first, then the user's own folders: each command of the reproduce line carries its own data
    flags, and only a run started from a recipe file names that file."""
    first = _trainer(data, tmp_path, recipe_file="recipes/mine.yaml", steps=2)
    first.fit(progress=False)
    folders = folder_data(*make_folder_pairs(tmp_path / "own"), config_from_dict(TINY))
    second = _trainer(folders, tmp_path, steps=2)
    second.load(tmp_path / CHECKPOINT)
    second.fit(progress=False)  # nothing left to train: no new stage, whatever the data
    assert len(second.stages) == 1
    third = _trainer(folders, tmp_path, steps=4, val_every=4)
    third.load(tmp_path / CHECKPOINT)
    third.fit(progress=False, export_final=tmp_path / "tiny.safetensors")
    stages = load_model(tmp_path / "tiny.safetensors").card["training"]["stages"]
    assert [(s["end"], s["data_flags"], s.get("recipe_file")) for s in stages] == [
        (2, "--stamps DIR --backgrounds DIR", "recipes/mine.yaml"), (4, "--images DIR --masks DIR", None)]
    first_command, resumed = (tmp_path / "tiny.md").read_text().split("Reproduce: ")[1].split(", then ")
    assert first_command.startswith("`mbunet train --config recipes/mine.yaml --stamps DIR --backgrounds DIR "
                                    "--steps 2 ")
    assert resumed.startswith("`mbunet train --resume runs/train/tiny/last.pt --images DIR --masks DIR --steps 4")


def test_the_reproduce_line_says_why_a_stage_stopped_where_the_record_knows():
    stage = {"start": 0, "end": 7, "steps": 9}
    assert _stopped_early({**stage, "stopped": "signal"}) == " (stopped at step 7, by a signal (Ctrl-C or SIGTERM))"
    assert _stopped_early({**stage, "stopped": "minutes"}) == " (stopped at step 7, with --minutes)"
    assert _stopped_early(stage) == " (stopped at step 7)"  # recorded before the reason was
    assert _stopped_early({**stage, "end": 9}) == ""


def test_stages_recorded_before_the_activation_gradient_take_it_from_the_stored_recipe(data, tmp_path):
    t = _trainer(data, tmp_path, activation_grad="approxsign")
    t.begin_stage()
    t.train_step()
    state = read_checkpoint(t.save())
    state["stages"] = [{"start": 0, "end": 0, "steps": 1, "seconds": 0.0}, {**state["stages"][0]}]
    for stage in state["stages"]:  # as written before stages named their teacher and gradient
        stage.pop("teacher", None), stage.pop("activation_grad", None)
    torch.save(state, tmp_path / "old.pt")
    old = _trainer(data, tmp_path / "o", activation_grad="approxsign")
    old.load(tmp_path / "old.pt")
    assert [(s["teacher"], s["activation_grad"]) for s in old.stages] == [("", "ste"), ("", "approxsign")]


def test_checkpoint_without_stages_reads_as_one_unrecorded_stage(data, tmp_path):
    t = _trainer(data, tmp_path)
    t.train_step()
    state = read_checkpoint(t.save())
    del state["stages"]  # as written before stages were recorded
    torch.save(state, tmp_path / "old.pt")
    old = _trainer(data, tmp_path / "o")
    old.load(tmp_path / "old.pt")
    assert [(s["start"], s["end"], s["steps"]) for s in old.stages] == [(0, 1, None)]


def test_cli_trains_writes_val_and_resumes(tree, tmp_path, capsys):
    stamps, backgrounds = tree
    recipe = _recipe_file(tmp_path)
    common = ["--stamps", str(stamps), "--backgrounds", str(backgrounds)]
    assert cli(["train", "--config", str(recipe), *common, "--write-val", str(tmp_path / "val")]) == 0
    assert len(list((tmp_path / "val" / "images").glob("*.png"))) == 6
    out = tmp_path / "run"
    model = tmp_path / "m.safetensors"
    assert cli(["train", "--config", str(recipe), *common, "--steps", "2", "--out", str(out), "--no-progress",
                "--device", "cpu", "--export", str(model)]) == 0
    assert read_checkpoint(out / CHECKPOINT)["step"] == 2 and model.is_file()
    assert f"exported step 2 to {model}" in capsys.readouterr().out
    before = model.read_bytes()
    # no --out: a resumed run writes beside its checkpoint, not to runs/train/<name> of the working directory
    assert cli(["train", "--resume", str(out / CHECKPOINT), *common, "--steps", "3", "--no-progress",
                "--export", str(model)]) == 0
    assert read_checkpoint(out / CHECKPOINT)["step"] == 3
    # The resumed session writes the model only if step 3 beats step 2; the summary says which happened.
    summary = capsys.readouterr().out.splitlines()[-1]
    if model.read_bytes() == before:
        assert "nothing exported" in summary and "beat the run's best" in summary
    else:
        assert f"exported step 3 to {model}" in summary


def test_export_final_writes_the_end_of_the_schedule_and_its_card_says_so(tree, tmp_path, capsys):
    recipe = _recipe_file(tmp_path)
    common = ["--stamps", str(tree[0]), "--backgrounds", str(tree[1]), "--no-progress", "--device", "cpu"]
    model = tmp_path / "final.safetensors"
    # stopped before the end (--minutes 0 stops after one step): nothing is written, and the summary says why
    assert cli(["train", "--config", str(recipe), *common, "--out", str(tmp_path / "run"), "--minutes", "0",
                "--export-final", str(model)]) == 0
    assert not model.exists() and "nothing exported" in capsys.readouterr().out.splitlines()[-1]
    # resumed to the end: the last step is written whatever its score, with validation scores in its card
    assert cli(["train", "--resume", str(tmp_path / "run" / CHECKPOINT), *common, "--export-final", str(model)]) == 0
    assert f"exported the final step to {model}" in capsys.readouterr().out
    card = load_model(model).card
    assert card["training"]["steps"] == 3 and card["training"]["selection"] == "final" and "val_dice" in card["scores"]
    assert "--export-final tiny.safetensors" in (tmp_path / "final.md").read_text()


def test_sigterm_mid_training_saves_the_step_it_reached(tree, tmp_path):
    """`timeout`, a scheduler or Ctrl-C stopping a long run: exit 0, and the checkpoint holds the last step, not
    the last periodic save (here the run would never validate, so nothing else would save it)."""
    stamps, backgrounds = tree
    recipe = tmp_path / "long.yaml"
    recipe.write_text(json.dumps({**TINY, "train": {**TINY["train"], "steps": 100000, "val_every": 100000,
                                                    "checkpoint_minutes": 0.001}}))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mbunet.app.cli", "train", "--config", str(recipe), "--stamps",
                             str(stamps), "--backgrounds", str(backgrounds), "--out", str(out), "--no-progress",
                             "--device", "cpu", "--threads", "1"], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / CHECKPOINT).is_file():  # the first periodic save: the loop (and its handler) is running
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    state = read_checkpoint(out / CHECKPOINT)
    step = state["step"]
    assert 0 < step < 100000 and state["stages"][-1]["stopped"] == "signal"  # what the card's reproduce line says
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith(f"step {step};")
    assert f"stopped by a signal at step {step} of 100000" in summary and "--resume" in summary


def test_cli_trains_on_image_folders(tmp_path):
    images, masks = make_folder_pairs(tmp_path, n=4)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps({**TINY, "train": {**TINY["train"], "steps": 1}}))
    assert cli(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out",
                str(tmp_path / "run"), "--no-progress", "--device", "cpu"]) == 0
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 1


def test_cli_seed_names_and_seeds_a_new_run(tmp_path, capsys):
    images, masks = make_folder_pairs(tmp_path, n=4)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps({**TINY, "train": {**TINY["train"], "steps": 1}}))
    model = tmp_path / "m.safetensors"
    assert cli(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out",
                str(tmp_path / "run"), "--no-progress", "--device", "cpu", "--seed", "5", "--export",
                str(model)]) == 0
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT)["config"]["train"]["seed"] == 5
    assert load_model(model).card["name"] == "tiny-s5"
    assert cli(["train", "--resume", str(tmp_path / "run" / CHECKPOINT), "--seed", "6"]) == 2
    assert "--seed starts a new run" in capsys.readouterr().err


@pytest.mark.parametrize("name, renamed", [("mbunet-w32", "mbunet-w16"), ("unet-fp-w32-sources", "unet-fp-w16-sources"),
                                           ("tiny", "tiny-w16"), ("w32-net", "w32-net-w16")])
def test_width_renames_the_width_part_of_a_recipe_name(name, renamed):
    from mbunet.train.config import with_width

    cfg = with_width(config_from_dict({**TINY, "name": name}), 16)
    assert (cfg.name, cfg.model.width) == (renamed, 16)
    with pytest.raises(MbunetError, match="--width must be >= 1"):
        with_width(cfg, 0)


def test_cli_width_trains_a_narrower_network_named_for_it_and_a_card_that_reproduces_it(tmp_path, capsys):
    images, masks = make_folder_pairs(tmp_path, n=4)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps({**TINY, "name": "tiny-w4", "train": {**TINY["train"], "steps": 1}}))
    model = tmp_path / "m.safetensors"
    assert cli(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out",
                str(tmp_path / "run"), "--no-progress", "--device", "cpu", "--width", "2", "--export-final",
                str(model)]) == 0
    loaded = load_model(model)
    assert (loaded.arch.width, loaded.card["name"]) == (2, "tiny-w2")
    assert "--lr 0.001 --width 2 " in (tmp_path / "m.md").read_text()
    assert cli(["train", "--resume", str(tmp_path / "run" / CHECKPOINT), "--width", "8"]) == 2
    assert "--width starts a new run" in capsys.readouterr().err
    # weights of another width cannot start this network: one line, not a shape error
    assert cli(["train", "--config", str(recipe), "--images", str(images), "--masks", str(masks), "--out",
                str(tmp_path / "run8"), "--no-progress", "--device", "cpu", "--width", "8", "--init",
                str(tmp_path / "run" / CHECKPOINT)]) == 2
    assert "another width" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli(["train", "--stamps", "x"]) == 2
    assert "give --config YAML" in capsys.readouterr().err
    assert cli(["train", "--resume", str(tmp_path / "none.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")  # YAML's own message runs over several lines
    assert cli(["train", "--config", str(broken), "--stamps", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and len(err.splitlines()) == 1


def test_cuda_request_without_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(MbunetError, match="sees no CUDA GPU"):
        pick_device("cuda")


@pytest.mark.gpu
def test_cuda_training_steps_and_cpu_export(data, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch sees none here")
    t = Trainer(config_from_dict(TINY), data, torch.device("cuda"), tmp_path)
    t.fit(tmp_path / "tiny.safetensors", progress=False)
    assert t.step == 3 and load_model(tmp_path / "tiny.safetensors").card["training"]["device"] == "cuda"
    resumed = Trainer(config_from_dict(TINY), data, torch.device("cpu"), tmp_path / "cpu")
    resumed.load(tmp_path / CHECKPOINT)  # a CUDA checkpoint resumes on CPU
    assert resumed.step == 3

"""Run presets: the shipped YAML files load, unknown keys and wrong types are one-line errors, flags override."""
from __future__ import annotations

import pytest

from mbunet.config import CONFIG_DIR, RunConfig, load_config, override
from mbunet.errors import ConfigError


@pytest.mark.parametrize("name", ["desktop", "jetson-orin", "drone"])
def test_shipped_presets_load(name):
    cfg = load_config(name)
    assert cfg == load_config(CONFIG_DIR / "run" / f"{name}.yaml")
    assert isinstance(cfg, RunConfig)


def test_drone_preset_is_headless_and_keeps_trying():
    cfg = load_config("drone")
    assert cfg.headless and cfg.source.reconnect and cfg.source.give_up_s == 0 and cfg.telemetry.jsonl


@pytest.mark.parametrize("text, message", [
    ("speed: 3\n", "unknown key speed; valid: source, model"),
    ("source:\n  colour: red\n", "unknown key source.colour; valid: uri"),
    ("batch: two\n", "batch must be int, got 'two'"),
    ("headless: 1\n", "headless must be bool, got 1"),
    ("overlay:\n  color: [1, 2]\n", "overlay.color must have 3 entries, got 2"),
    ("source: 5\n", "source must be a mapping, got int"),
    ("batch: 0\n", "batch and queue_size must be >= 1"),
    ("source:\n  max_frames: -5\n", "source.max_frames must be >= 0, got -5"),
    ("source:\n  read_timeout_s: 0\n", "source timeouts must be > 0 s"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_presets(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path)


def test_ints_are_accepted_as_floats_and_lists_as_tuples(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("source:\n  rate: 15\noutputs: [a.mkv, null://]\n")
    cfg = load_config(path)
    assert cfg.source.rate == 15.0 and isinstance(cfg.source.rate, float)
    assert cfg.outputs == ("a.mkv", "null://")


def test_flags_override_and_none_means_unset():
    cfg = override(load_config("drone"), {"source.width": 640, "source.uri": "clip.mp4", "batch": 2, "model": None})
    assert (cfg.source.width, cfg.source.uri, cfg.batch, cfg.model) == (640, "clip.mp4", 2, "")
    assert cfg.source.height == 720  # untouched preset value
    with pytest.raises(ConfigError, match="batch must be int"):
        override(cfg, {"batch": "3"})


def test_missing_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"^run preset not found: moon .*shipped name: desktop, drone, jetson-orin\)$"):
        load_config("moon")
    with pytest.raises(ConfigError, match="run preset not found"):  # a training recipe is no run preset
        load_config("fp")


def test_training_recipes_load_by_name_from_their_own_folder(tmp_path):
    from mbunet.train.config import load_config as load_recipe

    assert load_recipe("mbunet") == load_recipe(CONFIG_DIR / "train" / "mbunet.yaml")
    with pytest.raises(ConfigError, match=r"training recipe not found: drone .*binary, finetune-mbunet, finetune-sources, fp, fp-sources, mbunet"):
        load_recipe("drone")  # a run preset is no training recipe
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_recipe(bad)

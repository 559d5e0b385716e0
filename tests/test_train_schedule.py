"""Progressive binarisation and learning-rate schedules; training recipes from YAML."""
from __future__ import annotations

import math

import pytest

from mbunet.arch import LAYERS
from mbunet.errors import ConfigError
from mbunet.modelfile import load_model
from mbunet.train.config import config_from_dict, load_config, override
from mbunet.train.schedule import Phases, learning_rate, quant_mix



def test_quant_mix_phases():
    p = Phases(100, warmup=0.2, ramp=0.4, shape="quartic")
    mixes = [quant_mix(s, p) for s in range(100)]
    assert mixes[:20] == [0.0] * 20 and mixes[60:] == [1.0] * 40
    assert all(a <= b for a, b in zip(mixes, mixes[1:]))
    assert quant_mix(40, p) == pytest.approx(0.5)              # quartic ramp reaches 0.5 mid-ramp
    assert quant_mix(30, p) == pytest.approx(0.5 * 0.5 ** 4)   # ... gently
    assert quant_mix(30, Phases(100, 0.2, 0.4, "linear")) == pytest.approx(0.25)


def test_learning_rates():
    p = Phases(100, warmup=0.2, ramp=0.4)
    assert learning_rate(0, p, 1.0, "cosine") == pytest.approx(1.0)
    assert learning_rate(50, p, 1.0, "cosine", floor=0.0) == pytest.approx(0.5)
    assert learning_rate(100, p, 1.0, "cosine", floor=0.02) == pytest.approx(0.02)
    # restarts at each precision phase: back to the base LR at the ramp start and at the ramp end
    assert learning_rate(19, p, 1.0, "cosine-restart") < 0.1
    assert learning_rate(20, p, 1.0, "cosine-restart") == pytest.approx(1.0)
    assert learning_rate(60, p, 1.0, "cosine-restart") == pytest.approx(1.0)
    assert learning_rate(70, p, 1.0, "step") == pytest.approx(0.1)
    assert learning_rate(90, p, 1.0, "step") == pytest.approx(0.01)
    assert math.isfinite(learning_rate(99, Phases(100, 0, 0), 1.0, "cosine-restart"))


def test_bad_phases():
    with pytest.raises(ValueError, match="warmup \\+ ramp <= 1"):
        Phases(10, 0.7, 0.5)


@pytest.mark.parametrize("name, kind", [("fp", "fp"), ("mbunet", "mbunet"), ("binary", "binary")])
def test_shipped_recipes_load(name, kind):
    cfg = load_config(name)
    arch = cfg.model.architecture()
    assert arch.model_kind == kind and arch.width == 32 and arch.input_size == (144, 192)
    if kind == "mbunet":
        masked = {n for n, k in zip(LAYERS, arch.layer_kinds) if k == "masked"}
        assert masked == {"up-CT1", "up-CT2", "up-CT3", "up-CT4", "down-C1", "down-C2"}  # cost ranks 1-6
    # the recipe reproduces the shipped model of its name: same layer kinds
    assert load_model(cfg.name).arch.layer_kinds == arch.layer_kinds


@pytest.mark.parametrize("raw, match", [
    ({"modle": {}}, "config: unknown key modle; valid: name, model"),
    ({"train": {"stpes": 3}}, "config: unknown key train.stpes; valid: steps"),
    ({"model": {"masked": ["up-CT9"]}}, "unknown layers"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer 'sgd'"),
    ({"train": {"crop": [30, 30]}}, "multiples of 16"),
    ({"model": {"input_size": [64, 64]}}, "must equal model.input_size"),
    ({"train": "fast"}, "config: train must be a mapping, got str"),
    ({"train": {"lr": "1e-4"}}, r"config: train.lr must be float, got '1e-4' \(YAML reads 1e-5 as text"),
    ({"train": {"steps": 10.5}}, "config: train.steps must be int, got 10.5"),
    ({"model": {"quantized": "yes"}}, "config: model.quantized must be bool"),
    ({"model": {"masked_count": "6"}}, "config: model.masked_count must be int"),
    ({"model": {"input_size": [144]}}, "input_size must have 2 entries"),
    ({"data": {"composite": {"flip_p": None}}}, "config: data.composite.flip_p must be float"),
])
def test_bad_recipes_are_config_errors(raw, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)


def test_whole_numbers_are_accepted_where_a_float_is_expected():
    cfg = config_from_dict({"train": {"lr": 1, "grad_clip": 2}, "model": {"masked_count": None}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.model.masked_count is None


def test_flags_override_train_fields():
    cfg = override(config_from_dict({}), steps=7, batch=None)
    assert cfg.train.steps == 7 and cfg.train.batch == config_from_dict({}).train.batch


def test_an_unknown_recipe_key_is_named():
    assert config_from_dict({"data": {"val_size": 10}}).data.val_size == 10
    with pytest.raises(ConfigError, match="unknown key data.val_quik"):
        config_from_dict({"data": {"val_quik": 64}})

"""Masking sweep: k cheapest layers masked per point, Pareto flags, outputs (JSON, CSV, PNG), resumable."""
from __future__ import annotations

import json

import pytest
import torch

from mbunet.app.cmd_sweep import parse_ks
from mbunet.arch import LAYERS, cheapest_layers
from mbunet.errors import ConfigError
from mbunet.train.config import config_from_dict
from mbunet.train.data import composite_data
from mbunet.train.sweep import SweepPoint, config_for_k, format_table, mark_pareto, run_sweep, write_sweep
from train_fixtures import make_composite_tree

TINY = {
    "name": "tiny",
    "model": {"width": 4, "input_size": [32, 32]},
    "data": {"composite": {"size": [32, 32], "max_objects": 2}, "val_size": 4},
    "train": {"steps": 2, "batch": 2, "val_every": 2, "warmup": 0.0, "ramp": 0.5},
}


def _point(k: int, dice: float, fps: float) -> SweepPoint:
    return SweepPoint(k, (), dice, dice, dice, fps, "cpu", "m", 1)


def test_pareto_flags_only_undominated_points():
    points = mark_pareto([_point(0, 0.5, 100), _point(1, 0.6, 90), _point(2, 0.55, 80), _point(3, 0.7, 50)])
    assert [p.pareto for p in points] == [True, True, False, True]


def test_config_for_k_masks_the_cheapest_layers():
    cfg = config_for_k(config_from_dict(TINY), 5)
    arch = cfg.model.architecture()
    assert cfg.name == "tiny-k5"
    assert {n for n, kind in zip(LAYERS, arch.layer_kinds) if kind == "masked"} \
        == set(cheapest_layers(arch, 5))


@pytest.mark.parametrize("text, ks", [("0-12", list(range(13))), ("0,4, 8", [0, 4, 8]), ("3", [3]),
                                      ("2-4,0", [0, 2, 3, 4])])
def test_parse_ks(text, ks):
    assert parse_ks(text) == ks


@pytest.mark.parametrize("text", ["13", "a-b", "", "-1"])
def test_bad_ks(text):
    with pytest.raises(ConfigError):
        parse_ks(text)


def test_tiny_sweep_writes_table_chart_and_resumes(tmp_path):
    cfg = config_from_dict(TINY)
    data = composite_data(*make_composite_tree(tmp_path / "data"), cfg)
    out = tmp_path / "sweep"
    points = run_sweep(cfg, data, [0, 4], torch.device("cpu"), out, engine="reference", iters=1, progress=False)
    assert [p.k for p in points] == [0, 4] and points[1].masked == tuple(cheapest_layers(
        cfg.model.architecture(), 4))
    assert all(p.fps > 0 and 0 <= p.dice <= 1 and p.engine == "reference" for p in points)
    assert any(p.pareto for p in points)
    paths = write_sweep(points, out, "tiny")
    assert [p.name for p in paths] == ["sweep.json", "sweep.csv", "sweep.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads(paths[0].read_text())) == 2
    assert "k" in format_table(points).splitlines()[0]
    stamp = (out / "k4.safetensors").stat().st_mtime_ns
    run_sweep(cfg, data, [4], torch.device("cpu"), out, engine="reference", iters=1, progress=False)
    assert (out / "k4.safetensors").stat().st_mtime_ns == stamp  # a finished k is reused, not retrained


def test_config_for_k_with_a_seed_names_and_seeds_the_run():
    cfg = config_for_k(config_from_dict(TINY), 2, seed=7)
    assert cfg.name == "tiny-k2-s7" and cfg.train.seed == 7


def test_seeds_train_each_k_once_per_seed_and_report_mean_and_spread(tmp_path):
    from mbunet.modelfile import load_model

    cfg = config_from_dict(TINY)
    data = composite_data(*make_composite_tree(tmp_path / "data"), cfg)
    out = tmp_path / "sweep"
    (point,) = run_sweep(cfg, data, [1], torch.device("cpu"), out, engine="reference", iters=1, progress=False,
                         seeds=2)
    cards = [load_model(out / f"k1-s{s}.safetensors").card for s in (0, 1)]
    assert [c["name"] for c in cards] == ["tiny-k1-s0", "tiny-k1-s1"]
    dice = [c["scores"]["val_dice"] for c in cards]
    assert point.seeds == 2 and point.dice == pytest.approx(sum(dice) / 2)
    assert point.dice_sd == pytest.approx(abs(dice[0] - dice[1]) / 2 ** 0.5)
    assert "+-" in format_table([point]).splitlines()[1]
    csv_row = write_sweep([point], out, "tiny")[1].read_text().splitlines()[1]
    assert csv_row.split(",")[-2:] == ["2", f"{point.dice_sd:.5f}"]
    with pytest.raises(ValueError, match="seeds"):
        run_sweep(cfg, data, [1], torch.device("cpu"), out, seeds=0)

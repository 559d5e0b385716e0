"""The topology plan and cost-aware masking (paper Eq. 2, Table A.4)."""
from __future__ import annotations

import pytest

from mbunet.arch import LAYERS, Architecture, cheapest_layers, layer_costs, plan


def test_paper_unet_ranks_transposed_convs_cheapest():
    costs = {c.layer: c for c in layer_costs(Architecture(width=64, input_size=(512, 512)))}
    assert sorted(costs[f"up-CT{k}"].rank for k in range(1, 5)) == [1, 2, 3, 4]
    assert [c for c in cheapest_layers(Architecture(), 4)] == ["up-CT4", "up-CT3", "up-CT2", "up-CT1"]


def test_costs_count_ops_and_params_exactly():
    costs = {c.layer: c for c in layer_costs(Architecture(width=64, input_size=(512, 512)))}
    # down-C1: 64->128 and 128->128 3x3 convs at 256x256; 2 ops (mul + add) per MAC
    params = 64 * 128 * 9 + 128 * 128 * 9
    assert costs["down-C1"].params == params
    assert costs["down-C1"].ops == 2 * params * 256 * 256
    # up-CT4: 128->64, 2x2 kernel applied once per input pixel (256x256)
    assert costs["up-CT4"].params == 128 * 64 * 4
    assert costs["up-CT4"].ops == 2 * 128 * 64 * 4 * 256 * 256
    assert max(c.score for c in costs.values()) <= 1.0
    assert sorted(c.rank for c in costs.values()) == list(range(1, 13))


@pytest.mark.parametrize("w_op", [0.0, 1.0])
def test_w_op_extremes_rank_by_one_criterion(w_op):
    costs = layer_costs(Architecture(width=16, input_size=(64, 96)), w_op)
    key = (lambda c: c.params) if w_op == 0.0 else (lambda c: c.ops)
    by_rank = sorted(costs, key=lambda c: c.rank)
    assert [key(c) for c in by_rank] == sorted(key(c) for c in costs)


def test_plan_shapes_and_skip_layout():
    arch = Architecture(width=12, classes=3, input_size=(32, 48))
    steps = {s.name: s for s in plan(arch)}
    assert steps["down4.1"].cout == 12 * 16 and (steps["down4.1"].height, steps["down4.1"].width) == (2, 3)
    cat = steps["up4.cat"]
    assert cat.inputs == ("in.1", "up4.ct") and cat.cin_parts == (12, 12)
    assert steps["up4.0"].cin_words == 2  # 12 + 12 channels, each part padded to its own word
    assert steps["out"].cout == 3
    assert {s.layer for s in plan(arch) if s.layer} == set(LAYERS)


@pytest.mark.parametrize("size", [(100, 96), (0, 32), (48, 40)])
def test_bad_input_size_is_rejected(size):
    with pytest.raises(ValueError, match="multiples of 16"):
        Architecture(input_size=size)


def test_model_kind():
    arch = Architecture(width=8, input_size=(32, 32))
    assert arch.model_kind == "binary"
    assert arch.with_masked(["up-CT1"]).model_kind == "mbunet"
    assert Architecture(width=8, input_size=(32, 32), quantized=False).model_kind == "fp"
    with pytest.raises(ValueError, match="unknown layers"):
        arch.with_masked(["up-CT9"])

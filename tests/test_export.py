"""Trained (here: randomised) PyTorch networks exported to model files compute the same masks as `reference`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_frames
from mbunet.arch import MASK_DELTA, Architecture, plan
from mbunet.bits import unpack_bits
from mbunet.engines.base import create_engine
from mbunet.export import export_model
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import load_model
from mbunet.nn import UNet, set_quant_mix, step_modules, zero_fractions


def _randomised_unet(arch: Architecture, seed: int, frames: np.ndarray | None = None,
                     mask_delta: float = MASK_DELTA) -> UNet:
    """A UNet with random BatchNorm statistics (negative and zero gammas included).

    With `frames`, the output bias is centred on the logits seen on them (one class: between two logit values
    at least 1e-3 apart, so the test is not decided by exact ties or by float noise).
    """
    torch.manual_seed(seed)
    model = UNet(arch, mask_delta)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(-1.0, 1.5)
                m.weight[0] = 0.0
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.normal_(0, 1)
                m.running_var.uniform_(0.5, 3.0)
        model.eval()
        set_quant_mix(model, 1.0)
        if frames is not None and arch.classes == 1:
            values = model(_as_input(frames)).double().mul(1000).round().unique() / 1000
            i = len(values) // 2
            model.outc.bias -= float(values[i - 1] + values[i]) / 2
        elif frames is not None:  # several classes: centre each one so that argmax varies
            model.outc.bias -= model(_as_input(frames)).mean(dim=(0, 2, 3))
    return model


def _as_input(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("seed,classes,masked,mask_delta", [
    (0, 1, ["up-CT1", "up-CT2", "down-C1"], MASK_DELTA),
    (1, 1, [], MASK_DELTA),
    (2, 3, ["up-CT4", "up-C4", "down-C4"], MASK_DELTA),
    (4, 1, ["up-CT1", "up-C1", "down-C2"], 1.6),   # a sparser recipe: the file holds its zeros, not the ratio
])
def test_reference_agrees_with_quantized_torch_model(seed, classes, masked, mask_delta, tmp_path):
    arch = Architecture(width=8, classes=classes, input_size=(32, 48)).with_masked(masked)
    frames = random_frames(16, 32, 48, seed)
    model = _randomised_unet(arch, seed, frames, mask_delta)
    model_file = load_model(export_model(model, arch, {"name": "t"}, tmp_path / "t.safetensors"))
    with torch.no_grad():
        logits = model(_as_input(frames))
    expected = (logits[:, 0] >= 0).numpy() if classes == 1 else logits.argmax(1).numpy()
    masks = create_engine("reference", model_file).segment(frames)
    assert len(np.unique(masks)) > 1 and (masks == np.bincount(masks.ravel()).argmax()).mean() < 0.95, \
        "degenerate test model: one class almost everywhere"
    assert (masks == expected).mean() >= 0.9999


def test_every_layer_bits_match_torch_activations(tmp_path):
    arch = Architecture(width=8, input_size=(16, 32)).with_masked(["up-CT1", "down-C2"])
    frames = random_frames(4, 16, 32, 7)
    model = _randomised_unet(arch, 7)
    model_file = load_model(export_model(model, arch, {"name": "t"}, tmp_path / "t.safetensors"))
    acts = {}
    for name, mod in step_modules(model).items():
        mod.register_forward_hook(lambda m, i, o, name=name: acts.__setitem__(name, o))
    with torch.no_grad():
        model(_as_input(frames))
    _, bits = create_engine("reference", model_file).segment_bits(frames)
    for s in plan(arch):
        if s.name in acts and s.op != "output":
            agree = (unpack_bits(bits[s.name], s.cout) == (acts[s.name].permute(0, 2, 3, 1).numpy() >= 0)).mean()
            assert agree >= 0.999, s.name


def test_card_records_flips_zero_fraction_and_thresholds(tmp_path):
    arch = Architecture(width=8, input_size=(16, 16)).with_masked(["up-CT1"])
    model = _randomised_unet(arch, 3)
    card = load_model(export_model(model, arch, {"name": "t"}, tmp_path / "t.safetensors")).card
    assert set(card["zero_fraction"]) == {"up-CT1"} and 0 < card["zero_fraction"]["up-CT1"] < 1
    assert zero_fractions(model) == card["zero_fraction"]


@pytest.mark.parametrize("mask_delta,zeros", [(MASK_DELTA, 0.35), (1.6, 0.80)])
def test_mask_delta_sets_the_zero_fraction(mask_delta, zeros, tmp_path):
    """kaiming-uniform weights: |w| <= d * mean|w| holds for a fraction d / 2 of them."""
    arch = Architecture(width=8, input_size=(16, 16)).with_masked(["up-C1"])
    model = _randomised_unet(arch, 4, mask_delta=mask_delta)
    card = load_model(export_model(model, arch, {"name": "t"}, tmp_path / "t.safetensors")).card
    assert abs(card["zero_fraction"]["up-C1"] - zeros) < 0.02
    negative = {name: (mod.bn.weight < 0).nonzero().ravel().tolist()
                for name, mod in step_modules(model).items() if hasattr(mod, "bn")}
    assert card["flipped_channels"] == {k: v for k, v in negative.items() if v}


def test_fp_model_round_trip_through_torch_engine(tmp_path):
    arch = Architecture(width=4, input_size=(16, 16), quantized=False)
    torch.manual_seed(0)
    model = UNet(arch).eval()
    model_file = load_model(export_model(model, arch, {"name": "fp"}, tmp_path / "fp.safetensors"))
    assert model_file.kind == "fp"
    frames = random_frames(2, 16, 16)
    with torch.no_grad():
        expected = (model(_as_input(frames))[:, 0] >= 0).numpy()
    np.testing.assert_array_equal(create_engine("torch-fp32", model_file).segment(frames), expected)


def test_torch_fp32_runs_cudnn_in_ieee_fp32_and_restores_the_setting(monkeypatch):
    engine = create_engine("torch-fp32", random_quantized_model(Architecture(width=4, input_size=(16, 16)), seed=0))
    seen = []
    engine.net.register_forward_pre_hook(lambda module, args: seen.append(torch.backends.cudnn.allow_tf32))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default
    engine.segment(random_frames(1, 16, 16))
    assert seen == [False] and torch.backends.cudnn.allow_tf32 is True

"""Straight-through quantizers of the PyTorch model (pipeline/nn.py): the forward values the engines compute,
and gradients that reach every latent weight."""
import pytest

torch = pytest.importorskip("torch")

from pipeline.nn import quantize_weight  # noqa: E402


def test_masked_forward_is_ternary_at_the_layer_threshold():
    w = torch.tensor([-0.9, -0.2, 0.0, 0.1, 0.3, 1.5])
    delta = 0.7 * w.abs().mean()   # 0.35
    q = quantize_weight(w, "masked", 0.7)
    assert delta == pytest.approx(0.35)
    assert q.tolist() == [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_binary_forward_maps_zero_to_plus_one():
    assert quantize_weight(torch.tensor([-0.5, 0.0, 0.5]), "binary").tolist() == [-1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["binary", "masked"])
def test_gradient_reaches_every_weight_inside_the_clip(kind):
    # Zeroed masked weights must still learn, or the zero pattern of the first quantized step is frozen for good.
    w = torch.tensor([-1.5, -0.3, -0.01, 0.0, 0.02, 0.4, 2.0], requires_grad=True)
    quantize_weight(w, kind, 0.7).mul(torch.arange(1.0, 8.0)).sum().backward()
    assert w.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]

"""Straight-through quantizers of the PyTorch model (pipeline/nn.py): the forward values the engines compute,
and gradients that reach every latent weight."""
import pytest

torch = pytest.importorskip("torch")

from mbunet.arch import Architecture  # noqa: E402
from mbunet.errors import ConfigError  # noqa: E402
from mbunet.nn import UNet, binary_activation, quantize_weight, set_activation_grad  # noqa: E402
from mbunet.train.config import config_from_dict  # noqa: E402


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


X = [-1.5, -1.0, -0.5, -0.1, 0.0, 0.25, 0.75, 1.0, 2.0]


@pytest.mark.parametrize("grad, expected", [
    ("ste", [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]),           # clipped identity
    ("approxsign", [0.0, 0.0, 1.0, 1.8, 2.0, 1.5, 0.5, 0.0, 0.0]),    # 2 - 2|x| inside |x| < 1
])
def test_activation_gradient_shapes_share_one_forward(grad, expected):
    y = torch.tensor(X, requires_grad=True)
    s = binary_activation(y, 1.0, grad)
    s.sum().backward()
    assert s.tolist() == [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert y.grad.tolist() == pytest.approx(expected)


def test_set_activation_grad_reaches_every_binary_activation_and_only_them():
    net = UNet(Architecture(4, 1, (32, 32), quantized=True).with_masked(["down-C1"]))
    set_activation_grad(net, "approxsign")
    grads = [m.activation_grad for m in net.modules() if hasattr(m, "activation_grad")]
    assert len(grads) == 1 + 1 + 8 + 4 + 8 and set(grads) == {"approxsign"}  # input conv, in.1, down, ups, up convs
    with pytest.raises(ValueError, match="approxsign"):
        set_activation_grad(net, "tanh")


def test_recipe_refuses_an_unknown_activation_gradient():
    assert config_from_dict({"train": {"activation_grad": "approxsign"}}).train.activation_grad == "approxsign"
    with pytest.raises(ConfigError, match="train.activation_grad 'tanh'"):
        config_from_dict({"train": {"activation_grad": "tanh"}})

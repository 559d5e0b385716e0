"""The MBU-Net topology as plain data: no torch, no numpy.

Every engine walks the same `plan()`: a list of `Step`s, each producing one named tensor. Weight arrays in a
model file are keyed by the step's name (``"down2.1.pos"``), so the plan is the contract between the trainer,
the exporter and every engine (docs/design.md, sections 1 and 5).

Step ops (activations between ``input`` and ``output`` are packed ±1 bits, NHWC, 32 channels per uint32 word):

- ``input``    full-precision 3x3 conv on uint8 RGB pixels (integer weights, black padding) + threshold -> bits
- ``conv3x3``  binary or masked 3x3 conv, stride 1, padding bit 0 (= -1) + threshold -> bits
- ``pool``     2x2 max-pool of ±1 values = OR of the four words
- ``convT2x2`` 2x2 stride-2 transposed conv (a 1x1 GEMM giving 4*Cout values per input pixel) + threshold -> bits
- ``concat``   word-concat of (skip, upsampled); each part keeps its own zero-padded words
- ``output``   1x1 conv from ±1 inputs (integer weights) -> logits -> class mask
"""
from __future__ import annotations

from dataclasses import dataclass, field

LAYERS: tuple[str, ...] = (
    "down-C1", "down-C2", "down-C3", "down-C4",
    "up-CT1", "up-CT2", "up-CT3", "up-CT4",
    "up-C1", "up-C2", "up-C3", "up-C4",
)
WEIGHT_KINDS = ("binary", "masked")
LEVELS = 4
# Masked weights are 0 where |w| <= MASK_DELTA * mean|w| of the layer (TWN's L2-optimal ratio for a bell-shaped
# weight distribution); a training recipe may choose another ratio (model.mask_delta) for sparser layers.
MASK_DELTA = 0.7
# Training only: the binary activations' surrogate gradient (pipeline.nn); the forward function is the same.
ACTIVATION_GRADS = ("ste", "approxsign")
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


def words(channels: int) -> int:
    """Number of uint32 words that hold `channels` packed bits."""
    return (channels + 31) // 32


@dataclass(frozen=True)
class Architecture:
    """U-Net hyper-parameters shared by the FP and the quantized network.

    Attributes:
        width: channels of the first level (paper: 64); level k has width * 2**k.
        classes: output channels; 1 means foreground/background with the mask = logit >= 0.
        input_size: (height, width) of the network input; both must be multiples of 16.
        layer_kinds: per entry of LAYERS, "binary" or "masked" (ignored when quantized is False).
        quantized: False for the full-precision U-Net (ReLU, float weights).
    """

    width: int = 64
    classes: int = 1
    input_size: tuple[int, int] = (512, 512)
    layer_kinds: tuple[str, ...] = ("binary",) * len(LAYERS)
    quantized: bool = True
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD

    def __post_init__(self) -> None:
        h, w = self.input_size
        step = 2 ** LEVELS
        if h % step or w % step or h <= 0 or w <= 0:
            raise ValueError(f"input size {w}x{h} (WxH) must be positive multiples of {step}")
        if self.width < 1 or self.classes < 1:
            raise ValueError(f"width and classes must be >= 1, got {self.width}, {self.classes}")
        if len(self.layer_kinds) != len(LAYERS) or any(k not in WEIGHT_KINDS for k in self.layer_kinds):
            raise ValueError(f"layer_kinds must be {len(LAYERS)} entries of {WEIGHT_KINDS}")

    def kind_of(self, layer: str) -> str:
        """Weight kind of a configurable layer (or "fp" for the full-precision network)."""
        return self.layer_kinds[LAYERS.index(layer)] if self.quantized else "fp"

    @property
    def model_kind(self) -> str:
        """"fp", "binary" (no masked layer) or "mbunet" (at least one masked layer)."""
        if not self.quantized:
            return "fp"
        return "mbunet" if "masked" in self.layer_kinds else "binary"

    def with_masked(self, masked: set[str] | list[str]) -> "Architecture":
        """Copy with exactly the given layers masked, the others binary."""
        unknown = set(masked) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; valid: {', '.join(LAYERS)}")
        kinds = tuple("masked" if name in masked else "binary" for name in LAYERS)
        return Architecture(self.width, self.classes, self.input_size, kinds, True, self.mean, self.std)

    def to_json(self) -> dict:
        return {
            "width": self.width, "classes": self.classes, "input_size": list(self.input_size),
            "layer_kinds": dict(zip(LAYERS, self.layer_kinds)), "quantized": self.quantized,
        }

    @classmethod
    def from_json(cls, d: dict, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> "Architecture":
        kinds = d.get("layer_kinds", {})
        return cls(int(d["width"]), int(d["classes"]), tuple(int(v) for v in d["input_size"]),
                   tuple(kinds.get(name, "binary") for name in LAYERS), bool(d["quantized"]),
                   tuple(mean), tuple(std))


@dataclass(frozen=True)
class Step:
    """One operation of the network; `name` is also the name of the tensor it produces.

    `height`/`width` are the output's spatial size; `cin`/`cout` are real (unpadded) channel counts.
    For ``concat`` the parts are `inputs` in order, and `cin_parts` their channel counts.
    """

    op: str
    name: str
    inputs: tuple[str, ...]
    cin: int
    cout: int
    height: int
    width: int
    layer: str | None = None
    kind: str = "fp"
    cin_parts: tuple[int, ...] = field(default=())

    @property
    def cin_words(self) -> int:
        """Packed input words; a concat input keeps each part's own padding."""
        if self.cin_parts:
            return sum(words(c) for c in self.cin_parts)
        return words(self.cin)

    @property
    def cout_words(self) -> int:
        return words(self.cout)

    @property
    def has_weights(self) -> bool:
        return self.op in ("input", "conv3x3", "convT2x2", "output")


def plan(arch: Architecture) -> list[Step]:
    """The network as an ordered list of steps (the same for every engine and for the exporter)."""
    h, w = arch.input_size
    c = arch.width
    steps = [
        Step("input", "in.0", ("frames",), 3, c, h, w, None, "fp"),
        Step("conv3x3", "in.1", ("in.0",), c, c, h, w, None, "masked" if arch.quantized else "fp"),
    ]
    skips = ["in.1"]
    prev, ch = "in.1", c
    for k in range(1, LEVELS + 1):
        h, w = h // 2, w // 2
        kind = arch.kind_of(f"down-C{k}")
        steps.append(Step("pool", f"down{k}.pool", (prev,), ch, ch, h, w))
        steps.append(Step("conv3x3", f"down{k}.0", (f"down{k}.pool",), ch, 2 * ch, h, w, f"down-C{k}", kind))
        steps.append(Step("conv3x3", f"down{k}.1", (f"down{k}.0",), 2 * ch, 2 * ch, h, w, f"down-C{k}", kind))
        prev, ch = f"down{k}.1", 2 * ch
        skips.append(prev)
    for k in range(1, LEVELS + 1):
        h, w = h * 2, w * 2
        half = ch // 2
        skip = skips[LEVELS - k]
        steps.append(Step("convT2x2", f"up{k}.ct", (prev,), ch, half, h, w, f"up-CT{k}", arch.kind_of(f"up-CT{k}")))
        steps.append(Step("concat", f"up{k}.cat", (skip, f"up{k}.ct"), ch, ch, h, w, cin_parts=(half, half)))
        kind = arch.kind_of(f"up-C{k}")
        steps.append(Step("conv3x3", f"up{k}.0", (f"up{k}.cat",), ch, half, h, w, f"up-C{k}", kind,
                          cin_parts=(half, half)))
        steps.append(Step("conv3x3", f"up{k}.1", (f"up{k}.0",), half, half, h, w, f"up-C{k}", kind))
        prev, ch = f"up{k}.1", half
    steps.append(Step("output", "out", (prev,), ch, arch.classes, h, w))
    return steps


@dataclass(frozen=True)
class LayerCost:
    layer: str
    ops: int
    params: int
    score: float
    rank: int


def layer_costs(arch: Architecture, w_op: float = 0.5) -> list[LayerCost]:
    """Cost-aware masking scores (paper Eq. 2): s = w_op*ops/max(ops) + (1-w_op)*params/max(params).

    Ops count multiplications and additions (2 per MAC) at the architecture's input size; params are the
    layer's weights (both convs of a double conv). Ranked from cheapest (1) to dearest; the k cheapest
    layers are the ones to mask first.
    """
    if not 0.0 <= w_op <= 1.0:
        raise ValueError(f"w_op must be in [0, 1], got {w_op}")
    ops: dict[str, int] = {name: 0 for name in LAYERS}
    params: dict[str, int] = {name: 0 for name in LAYERS}
    for s in plan(arch):
        if s.layer is None:
            continue
        taps = 9 if s.op == "conv3x3" else 4
        weights = s.cin * s.cout * taps
        # a transposed conv applies its weights once per *input* pixel
        pixels = s.height * s.width if s.op == "conv3x3" else (s.height // 2) * (s.width // 2)
        params[s.layer] += weights
        ops[s.layer] += 2 * weights * pixels
    max_ops, max_params = max(ops.values()), max(params.values())
    scores = {n: w_op * ops[n] / max_ops + (1 - w_op) * params[n] / max_params for n in LAYERS}
    order = sorted(LAYERS, key=lambda n: (scores[n], LAYERS.index(n)))
    return [LayerCost(n, ops[n], params[n], scores[n], order.index(n) + 1) for n in LAYERS]


def cheapest_layers(arch: Architecture, k: int, w_op: float = 0.5) -> list[str]:
    """The k layers to mask first under cost-aware masking."""
    return [c.layer for c in sorted(layer_costs(arch, w_op), key=lambda c: c.rank)[:k]]

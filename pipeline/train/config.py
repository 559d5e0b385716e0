"""Training recipes: YAML -> frozen dataclasses. Unknown keys are errors; command-line flags override fields.

A recipe never names data folders: the command gets them (--stamps/--backgrounds or --images/--masks).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..arch import ACTIVATION_GRADS, LAYERS, MASK_DELTA, Architecture, cheapest_layers
from ..config import build_dataclass, read_yaml_config
from ..errors import ConfigError
from .composite import CompositeRecipe
from .schedule import LR_KINDS, RAMPS, Phases

OPTIMIZERS = ("adam", "rmsprop")
BN_STATISTICS = ("batch", "frozen")


@dataclass(frozen=True)
class ModelSpec:
    width: int = 32
    classes: int = 1
    input_size: tuple[int, int] = (144, 192)
    quantized: bool = True
    masked: tuple[str, ...] = ()            # layer names to mask, or ...
    masked_count: int | None = None         # ... the k cheapest layers by cost rank (overrides `masked`)
    mask_delta: float = MASK_DELTA          # masked weights are 0 where |w| <= mask_delta * mean|w| of the layer

    def architecture(self) -> Architecture:
        base = Architecture(self.width, self.classes, tuple(self.input_size), quantized=self.quantized)
        if not self.quantized:
            return base
        masked = cheapest_layers(base, self.masked_count) if self.masked_count is not None else self.masked
        try:
            return base.with_masked(list(masked))
        except ValueError as e:
            raise ConfigError(str(e)) from e


@dataclass(frozen=True)
class DataSpec:
    composite: CompositeRecipe = field(default_factory=CompositeRecipe)
    val_size: int = 200        # the fixed validation set (composites) scored at the end and on export
    val_seed: int = 1234


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 3000
    batch: int = 8
    crop: tuple[int, ...] = ()  # (h, w): train on random crops of the samples (cheaper steps); () = whole
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "cosine-restart"
    weight_decay: float = 1e-8
    grad_clip: float = 1.0
    warmup: float = 0.2        # FP warm-up, fraction of steps (quantized models only)
    ramp: float = 0.5          # binarisation ramp, fraction of steps
    ramp_shape: str = "quartic"
    dice_weight: float = 1.0
    val_every: int = 250
    checkpoint_minutes: float = 5.0
    seed: int = 0
    init: str = ""             # start from this FP model file (shipped name or path) or checkpoint; "" = random
    teacher: str = ""          # distil from this FP model file (shipped name or path); "" = labels only
    distill_weight: float = 1.0  # loss = BCE + Dice on the labels + distill_weight * cross-entropy to the teacher
    activation_grad: str = "ste"  # binary activations' surrogate gradient: "ste" (clipped identity) or "approxsign"
    # "batch": BatchNorm normalises with each batch's statistics and updates its running ones (the usual);
    # "frozen": it keeps its running statistics as they are, so every step trains the function the model file
    # will compute (fine-tuning a rebuilt quantized file, whose statistics were measured on whole images)
    bn_statistics: str = "batch"

    def phases(self) -> Phases:
        return Phases(self.steps, self.warmup, self.ramp, self.ramp_shape)


@dataclass(frozen=True)
class TrainConfig:
    name: str = "mbunet"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    def validate(self) -> "TrainConfig":
        t = self.train
        if t.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer {t.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if t.lr_schedule not in LR_KINDS:
            raise ConfigError(f"train.lr_schedule {t.lr_schedule!r}; valid: {', '.join(LR_KINDS)}")
        if t.ramp_shape not in RAMPS:
            raise ConfigError(f"train.ramp_shape {t.ramp_shape!r}; valid: {', '.join(RAMPS)}")
        if t.steps < 1 or t.batch < 1 or t.val_every < 1:
            raise ConfigError(f"train.steps, batch and val_every must be >= 1, got {t.steps}, {t.batch}, "
                              f"{t.val_every}")
        if t.activation_grad not in ACTIVATION_GRADS:
            raise ConfigError(f"train.activation_grad {t.activation_grad!r}; valid: {', '.join(ACTIVATION_GRADS)}")
        if t.bn_statistics not in BN_STATISTICS:
            raise ConfigError(f"train.bn_statistics {t.bn_statistics!r}; valid: {', '.join(BN_STATISTICS)}")
        if t.distill_weight < 0:
            raise ConfigError(f"train.distill_weight must be >= 0, got {t.distill_weight}")
        if not 0 < self.model.mask_delta < 3:
            raise ConfigError(f"model.mask_delta {self.model.mask_delta}: expected a ratio to mean|w| in (0, 3) "
                              "(0.7 keeps about 40% zeros, 1.6 about 80%)")
        h, w = self.model.input_size
        if t.crop and (len(t.crop) != 2 or not (0 < t.crop[0] <= h and 0 < t.crop[1] <= w)
                       or t.crop[0] % 16 or t.crop[1] % 16):
            raise ConfigError(f"train.crop {list(t.crop)}: expected [h, w], multiples of 16, within the input "
                              f"size {w}x{h} (WxH)")
        if tuple(self.data.composite.size) != tuple(self.model.input_size):
            raise ConfigError(f"data.composite.size {list(self.data.composite.size)} must equal "
                              f"model.input_size {list(self.model.input_size)}")
        try:
            t.phases()
            self.model.architecture()
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def config_from_dict(raw: dict, where: str = "config") -> TrainConfig:
    cfg = build_dataclass(TrainConfig, raw, where)
    masked = set(cfg.model.masked) - set(LAYERS)
    if masked:
        raise ConfigError(f"{where}: model.masked names unknown layers {sorted(masked)}; valid: {', '.join(LAYERS)}")
    return cfg.validate()


def load_config(ref: str | Path) -> TrainConfig:
    """A training recipe by path or by shipped name (fp, mbunet, binary, finetune-mbunet, sweep)."""
    raw, path = read_yaml_config(ref, "train")
    return config_from_dict(raw, str(path))


def with_seed(cfg: TrainConfig, seed: int) -> TrainConfig:
    """The recipe with train.seed = `seed`, named <name>-s<seed> so that the runs of several seeds keep apart."""
    return dataclasses.replace(cfg, name=f"{cfg.name}-s{seed}", train=dataclasses.replace(cfg.train, seed=seed))


def with_width(cfg: TrainConfig, width: int) -> TrainConfig:
    """The recipe at another network width, named for it: the name's -w<N> part follows the width (mbunet-w32 ->
    mbunet-w16, unet-fp-w32-sources -> unet-fp-w16-sources), a name without one gains it, so that a run at
    another width never takes the name (and the run folder) of the recipe's own model."""
    if width < 1:
        raise ConfigError(f"--width must be >= 1, got {width}")
    name, found = re.subn(r"-w[0-9]+(?=-|$)", f"-w{width}", cfg.name, count=1)
    name = name if found else f"{cfg.name}-w{width}"
    return dataclasses.replace(cfg, name=name, model=dataclasses.replace(cfg.model, width=width)).validate()


def override(cfg: TrainConfig, **train_fields) -> TrainConfig:
    """Copy with some `train` fields replaced (None values are ignored): command-line flags."""
    changes = {k: v for k, v in train_fields.items() if v is not None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes)).validate() if changes else cfg

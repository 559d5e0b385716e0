"""The engine protocol and registry: a new engine is one module with one `@register_engine` class.

Contract (every engine, tested by tests/test_engines_conformance.py):
- `unavailable(model)` says why the engine cannot run here or with this model kind (None when it can);
  it is a classmethod and must be cheap: no kernel compilation, no model upload.
- `load(model)` checks shapes once and uploads/prepares the weights.
- `segment(frames)` takes uint8 RGB frames [N, H, W, 3] at the model's input size and returns uint8 class
  masks [N, H, W] (0 = background). `segment_scores` also returns the output scores before the class decision
  (int32 logits of the bit engines, float32 of the torch ones; [N, H, W, classes]), which preprocess.scores_to_frame
  enlarges to a frame without blocks. `segment_bits` returns every packed activation tensor by step name (see
  arch.plan) and "out.logits" so tests can compare engines layer by layer.
- `sync()` waits for queued device work (timing); `close()` frees device memory.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from ..errors import EngineUnavailable, MbunetError
from ..modelfile import ModelFile


class Engine(ABC):
    name: ClassVar[str]
    #: higher wins in `--engine auto` among engines that work here (roughly: expected speed)
    priority: ClassVar[int] = 0
    #: model kinds this engine runs: "fp", "binary", "mbunet"
    kinds: ClassVar[tuple[str, ...]] = ("binary", "mbunet")

    @classmethod
    def unavailable(cls, model: ModelFile | None = None) -> str | None:
        """Why this engine cannot run here (or with this model); None when it can."""
        if model is not None and model.kind not in cls.kinds:
            return f"runs {'/'.join(cls.kinds)} models, not {model.kind} ({model.name})"
        return None

    def __init__(self) -> None:
        self.model: ModelFile | None = None
        #: what load() chose where the choice depends on the machine (bmma: which kernel library, and why), for
        #: the run log and the bench rows
        self.detail: str | None = None

    @abstractmethod
    def load(self, model: ModelFile) -> None:
        """Prepare the weights of `model` (called once)."""

    def segment(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames [N, H, W, 3] -> uint8 class masks [N, H, W]."""
        masks, _ = self.segment_bits(frames, keep_bits=False)
        return masks

    def segment_scores(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 class masks [N, H, W], output scores [N, H, W, classes]) of uint8 RGB frames [N, H, W, 3]."""
        masks, kept = self.segment_bits(frames, keep_bits=False, keep_logits=True)
        return masks, kept["out.logits"]

    @abstractmethod
    def segment_bits(self, frames: np.ndarray, keep_bits: bool = True,
                     keep_logits: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Masks plus, when keep_bits, every intermediate packed tensor by step name (tests), and "out.logits"
        when keep_bits or keep_logits."""

    def sync(self) -> None:
        """Wait for queued device work; CPU engines are synchronous."""

    def run_layers(self, frames: np.ndarray, wrap: Callable[[object], object]) -> tuple[list, str | None]:
        """Run the network once, step by step, with this engine's kernel set passed through `wrap` (which
        layer_times uses to time each call); returns (the steps, what the run used where the machine decides, e.g.
        the cpu engine's thread count). Only engines that walk program.execute can."""
        raise MbunetError(f"engine {self.name} runs the network in one call: it has no per-layer times (cpu, cuda, "
                          f"cuda-graph and reference have)")

    def close(self) -> None:
        """Release device resources."""

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        """Validate a batch against the loaded model's input size (one clear error, not a kernel crash)."""
        if self.model is None:
            raise MbunetError(f"engine {self.name}: load() a model before segment()")
        h, w = self.model.arch.input_size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise MbunetError(f"engine {self.name}: expected uint8 frames [N, {h}, {w}, 3], "
                              f"got {frames.dtype}{list(frames.shape)}")
        return np.ascontiguousarray(frames)


_REGISTRY: dict[str, type[Engine]] = {}
# engine modules imported on first use; each registers itself (keeps torch/numba imports lazy)
_MODULES = ("reference", "torch_engines", "torch_graph", "cpu", "cuda", "bmma")


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    import importlib

    for mod in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{mod}":
                raise


def list_engines() -> list[str]:
    _load_all()
    return sorted(_REGISTRY, key=lambda n: -_REGISTRY[n].priority)


def engine_class(name: str) -> type[Engine]:
    _load_all()
    if name not in _REGISTRY:
        raise MbunetError(f"unknown engine {name!r}; valid: auto, {', '.join(list_engines())}")
    return _REGISTRY[name]


@dataclass(frozen=True)
class EngineChoice:
    name: str
    reason: str


def choose_engine(model: ModelFile | None = None) -> EngineChoice:
    """The highest-priority engine that works here with this model, and why the faster ones were skipped."""
    skipped = []
    for name in list_engines():
        why = _REGISTRY[name].unavailable(model)
        if why is None:
            reason = "fastest available here" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
            return EngineChoice(name, reason)
        skipped.append(f"{name}: {why}")
    raise EngineUnavailable("no engine can run here: " + "; ".join(skipped))


def engine_for(name: str, model: ModelFile) -> type[Engine]:
    """The engine class that will run this model ("auto" picks); raises EngineUnavailable with the reason.

    Cheap (nothing is compiled or allocated): commands check every model they were given before the slow work.
    """
    if name == "auto":
        name = choose_engine(model).name
    cls = engine_class(name)
    why = cls.unavailable(model)
    if why is not None:
        raise EngineUnavailable(f"engine {name} cannot run: {why}")
    return cls


def create_engine(name: str, model: ModelFile) -> Engine:
    """Instantiate and load an engine by name ("auto" picks); raises EngineUnavailable with the reason."""
    engine = engine_for(name, model)()
    engine.load(model)
    return engine

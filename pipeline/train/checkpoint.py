"""Training checkpoints: the file name, reading one safely, its recipe, and turning one into a model file.

Kept apart from the trainer so that exporting, warm starts and the CLI read checkpoints without importing the
training loop (and the loop, export and warm start do not import each other in a circle).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import MbunetError, short_reason
from .config import TrainConfig, config_from_dict

CHECKPOINT = "last.pt"


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by Trainer.save (loaded without unpickling code: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise MbunetError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's text here is a paragraph on weights_only, not the cause
        raise MbunetError(f"checkpoint {path}: not a readable training checkpoint (not a PyTorch file, or its "
                          f"pickle holds more than tensors and plain values)") from e
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise MbunetError(f"checkpoint {path}: not a readable training checkpoint ({short_reason(e)})") from e
    missing = {"config", "model", "optimizer", "step"} - set(state)
    if missing:
        raise MbunetError(f"checkpoint {path}: not an mbunet training checkpoint (missing {sorted(missing)})")
    return state


def config_of_checkpoint(path: str | Path) -> TrainConfig:
    return config_from_dict(read_checkpoint(path)["config"], f"{path} (stored recipe)")


def export_checkpoint(checkpoint, path, name: str | None = None) -> Path:
    """A training checkpoint (mbunet train) -> a model file, as the network stands at quant mix 1.

    The card records the recipe and steps; validation scores are those of `mbunet train`'s own exports, so a
    checkpoint exported by hand carries none (run `mbunet eval` on it).
    """
    import torch

    from ..export import export_model
    from ..nn import UNet, set_quant_mix
    from .card import run_history

    state = read_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"], f"{checkpoint} (stored recipe)")
    arch = cfg.model.architecture()
    model = UNet(arch, cfg.model.mask_delta)
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in state["model"].items()})
    except RuntimeError as e:
        raise MbunetError(f"checkpoint {checkpoint}: weights do not fit its recipe's architecture") from e
    set_quant_mix(model, 1.0)
    card = {"name": name or Path(path).stem,
            "training": {"recipe": cfg.to_json(), "steps": int(state["step"]),
                         "seconds": round(float(state.get("seconds", 0))), "checkpoint": str(checkpoint),
                         **run_history(state.get("stages") or [], state.get("init_digest", {}))}}
    return export_model(model, arch, card, path)

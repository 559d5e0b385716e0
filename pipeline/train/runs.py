"""Where a new training run writes and what its model is called.

A run never writes over another run's checkpoint: without --out it takes the first free folder runs/train/<name>,
<name>-2, ...; a folder that already holds a checkpoint (--out, or --name asked for) is refused, and --resume
continues that run instead. The model is named after the run, never after a shipped model unless the user asks
(--name): following a shipped model's recipe must not produce a second "mbunet-w32".
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..modelfile import unshipped_name
from .checkpoint import CHECKPOINT

#: where runs go without --out
RUNS = Path("runs", "train")


def new_run(recipe_name: str, asked_name: str | None = None, out: str | Path | None = None,
            root: Path = RUNS) -> tuple[str, Path]:
    """(model name, run folder) for a new run of a recipe named `recipe_name`."""
    name = asked_name or unshipped_name(recipe_name, lambda n: out is None and (root / n / CHECKPOINT).exists())
    folder = Path(out) if out is not None else root / name
    if (folder / CHECKPOINT).exists():
        raise ConfigError(f"{folder} already holds a run ({folder / CHECKPOINT}): continue it with --resume "
                          f"{folder / CHECKPOINT}, or start a new one with another --out or --name")
    return name, folder

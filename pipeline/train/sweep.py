"""Masking sweep (paper Fig. 7): k = 0..12 masked layers in cost-rank order, a short schedule each, then
Dice (validation) against FPS (an engine run on the exported model), a Pareto chart and a table.

Each k trains in its own folder with its own checkpoint and exports out/k<k>.safetensors, so an interrupted
sweep resumes where it stopped and a finished k is not trained again. With several seeds, each k is trained once
per seed (out/k<k>-s<seed>.safetensors) and its Dice is the mean over seeds, with their standard deviation: one
short run per k differs from the next seed's by more than neighbouring k differ (docs/seeds-w8.csv).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arch import LAYERS, cheapest_layers
from .config import TrainConfig, with_seed
from .data import TrainData


@dataclass(frozen=True)
class SweepPoint:
    k: int
    masked: tuple[str, ...]
    dice: float
    iou: float
    f1: float
    fps: float
    engine: str
    model: str                    # the exported file (the first seed's, with several)
    steps: int
    seeds: int = 1
    dice_sd: float | None = None  # standard deviation of the Dice over seeds (None for one seed)
    pareto: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def config_for_k(cfg: TrainConfig, k: int, seed: int | None = None) -> TrainConfig:
    """The recipe with the k cheapest layers masked (cost rank at the recipe's width and input size), and with
    `seed` as train.seed (named -s<seed>) where given."""
    model = dataclasses.replace(cfg.model, quantized=True, masked=(), masked_count=k)
    cfg_k = dataclasses.replace(cfg, name=f"{cfg.name}-k{k}", model=model)
    return cfg_k if seed is None else with_seed(cfg_k, seed)


def engine_fps(model, engine: str, frames: np.ndarray, iters: int = 10) -> tuple[str, float]:
    """(engine name, images/s): median over `iters` timed calls after one untimed call."""
    from ..engines.base import create_engine

    eng = create_engine(engine, model)
    try:
        eng.segment(frames)
        eng.sync()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            eng.segment(frames)
            eng.sync()
            times.append(time.perf_counter() - t0)
    finally:
        eng.close()
    return eng.name, len(frames) / float(np.median(times))


def train_or_reuse(cfg: TrainConfig, data: TrainData, device, folder: Path, path: Path, progress: bool):
    """Train (or resume) the recipe into `folder` and export `path`; a finished run is reused as it is."""
    from ..modelfile import load_model
    from .checkpoint import CHECKPOINT
    from .trainer import Trainer

    trainer = Trainer(cfg, data, device, folder)
    if (trainer.out / CHECKPOINT).is_file():
        trainer.load(trainer.out / CHECKPOINT)
    if trainer.step < cfg.train.steps or not path.is_file():
        trainer.fit(path, progress=progress)
    return load_model(path), trainer.step


def sweep_point(cfg: TrainConfig, k: int, data: TrainData, device, out: Path, engine: str,
                fps_batch: int, iters: int, progress: bool, seeds: int = 1) -> SweepPoint:
    """Train the k-masked model once per seed (train.seed, +1, ...), then time the first with the engine."""
    # one seed keeps the plain k<k> names (and resumes sweeps made before --seeds)
    run_seeds = [None] if seeds == 1 else [cfg.train.seed + i for i in range(seeds)]
    stems = [f"k{k}" if seed is None else f"k{k}-s{seed}" for seed in run_seeds]
    runs = [train_or_reuse(config_for_k(cfg, k, seed), data, device, out / stem, out / f"{stem}.safetensors",
                           progress) for seed, stem in zip(run_seeds, stems)]
    (first, steps), models = runs[0], [model for model, _ in runs]
    scores = [m.card["scores"] for m in models]
    mean = {key: float(np.mean([s[key] for s in scores])) for key in ("val_dice", "val_iou", "val_f1")}
    dice_sd = float(np.std([s["val_dice"] for s in scores], ddof=1)) if seeds > 1 else None
    name, fps = engine_fps(first, engine, data.val_images[:fps_batch], iters)
    return SweepPoint(k, tuple(cheapest_layers(first.arch, k)), mean["val_dice"], mean["val_iou"],
                      mean["val_f1"], fps, name, str(out / f"{stems[0]}.safetensors"), steps, seeds, dice_sd)


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """Flag the points no other point beats on both Dice and FPS (the frontier of Fig. 7)."""
    def dominated(p: SweepPoint) -> bool:
        return any(q.dice >= p.dice and q.fps >= p.fps and (q.dice > p.dice or q.fps > p.fps) for q in points)
    return [dataclasses.replace(p, pareto=not dominated(p)) for p in points]


def run_sweep(cfg: TrainConfig, data: TrainData, ks: list[int], device, out: str | Path, engine: str = "auto",
              fps_batch: int = 1, iters: int = 10, progress: bool = True, seeds: int = 1) -> list[SweepPoint]:
    bad = [k for k in ks if not 0 <= k <= len(LAYERS)]
    if bad:
        raise ValueError(f"k must be in 0..{len(LAYERS)}, got {bad}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return mark_pareto([sweep_point(cfg, k, data, device, out, engine, fps_batch, iters, progress, seeds)
                        for k in ks])


def format_table(points: list[SweepPoint]) -> str:
    spread = any(p.dice_sd is not None for p in points)
    dice_head = f"{'dice +-sd':>15}" if spread else f"{'dice':>6}"
    lines = [f"{'k':>2}  {dice_head}  {'iou':>6}  {'f1':>6}  {'img/s':>8}  pareto  last masked layer"]
    for p in points:
        star = "*" if p.pareto else " "
        dice = f"{p.dice:6.4f} +-{p.dice_sd:6.4f}" if p.dice_sd is not None else f"{p.dice:6.4f}"
        lines.append(f"{p.k:>2}  {dice:>{len(dice_head)}}  {p.iou:6.4f}  {p.f1:6.4f}  {p.fps:8.2f}  {star:^6}  "
                     f"{p.masked[-1] if p.masked else '(none: binary)'}")
    return "\n".join(lines)


def sweep_chart(points: list[SweepPoint], path: Path, title: str) -> Path:
    """Dice vs FPS, one dot per k (bright -> dark as more layers are masked), the Pareto frontier as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.cm.viridis_r(np.linspace(0.1, 0.95, len(LAYERS) + 1))
    for p in points:
        ax.scatter(p.fps, p.dice, color=colours[p.k], s=40, zorder=3, edgecolor="k" if p.pareto else "none")
        if p.dice_sd is not None:
            ax.errorbar(p.fps, p.dice, yerr=p.dice_sd, color=colours[p.k], lw=1, capsize=3, zorder=2)
        ax.annotate(f"k={p.k}", (p.fps, p.dice), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = sorted((p for p in points if p.pareto), key=lambda p: p.fps)
    ax.plot([p.fps for p in front], [p.dice for p in front], "k--", lw=1, label="Pareto frontier")
    ax.set_xlabel(f"images/s ({points[0].engine}, higher is better)" if points else "images/s")
    seeds = max((p.seeds for p in points), default=1)
    ax.set_ylabel("validation Dice (higher is better)" if seeds == 1 else
                  f"validation Dice, mean +- sd of {seeds} seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_sweep(points: list[SweepPoint], out: str | Path, title: str) -> list[Path]:
    """sweep.json, sweep.csv and sweep.png in `out`."""
    out = Path(out)
    (out / "sweep.json").write_text(json.dumps([p.to_json() for p in points], indent=2))
    rows = ["k,masked,dice,iou,f1,images_per_s,engine,pareto,steps,model,seeds,dice_sd"]
    rows += [f"{p.k},{'+'.join(p.masked)},{p.dice:.5f},{p.iou:.5f},{p.f1:.5f},{p.fps:.3f},{p.engine},"
             f"{int(p.pareto)},{p.steps},{p.model},{p.seeds},{'' if p.dice_sd is None else f'{p.dice_sd:.5f}'}"
             for p in points]
    (out / "sweep.csv").write_text("\n".join(rows) + "\n")
    return [out / "sweep.json", out / "sweep.csv", sweep_chart(points, out / "sweep.png", title)]

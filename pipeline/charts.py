"""PNG charts of benchmark results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol


class _Row(Protocol):
    engine: str
    images_per_s: float | None
    joules_per_image: float | None
    power_source: str


def bench_chart(rows: list[_Row], path: Path, title: str) -> Path:
    """Two panels, one bar per engine: images/s, and J/image (a note instead of bars where none was measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.engine for r in rows]
    fig, (speed, energy) = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(rows) + 4), 4.2))
    speed.bar(names, [r.images_per_s or 0.0 for r in rows], color="tab:blue")
    speed.set_ylabel("images/s (higher is better)")
    rates = [r.images_per_s for r in rows if r.images_per_s]
    if rates and max(rates) > 100 * min(rates):  # engines orders of magnitude apart: keep the slow ones visible
        speed.set_yscale("log")
    joules = [r.joules_per_image for r in rows]
    if any(j is not None for j in joules):
        energy.bar(names, [j or 0.0 for j in joules], color="tab:orange")
    else:
        source = rows[0].power_source if rows else "no engine ran"
        energy.text(0.5, 0.5, "no energy measured:\n" + _wrap(source), ha="center", va="center",
                    transform=energy.transAxes, fontsize=8)
        energy.set_xticks([])
        energy.set_yticks([])
    energy.set_ylabel("J/image (lower is better)")
    for ax in (speed, energy):
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wrap(text: str, width: int = 60) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))

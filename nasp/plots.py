"""Plots every domain shares (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from .distributed import is_main
from .loop import Hook


@contextmanager
def figure(path: Path, title: str = "", dpi: int = 100, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(**subplots)`` on the Agg backend; on exit: title, tight layout, PNG, close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if is_main():  # rank 0 of a data-parallel run draws the run's plots
            fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def plot_curves(rows: list[dict], path: Path, keys: tuple[str, ...], title: str = "") -> Path:
    """Per-epoch curves of the metric ``keys`` found in ``rows`` (metrics.jsonl rows). A value that
    is not finite (null in metrics.jsonl) is a red dotted line at its epoch; a positive curve
    spanning more than a factor 1000 (a blow-up) gets a log scale."""
    keys = tuple(k for k in keys if any(k in r for r in rows))
    n = max(1, len(keys))
    with figure(path, title, nrows=1, ncols=n, figsize=(4 * n, 3.2), squeeze=False) as (_, axes):
        for ax, key in zip(axes[0], keys):
            points = [(r["epoch"], r[key]) for r in rows if key in r]  # epochs count from 1
            finite = [(e, v) for e, v in points if v is not None and math.isfinite(v)]
            ax.plot([p[0] for p in finite], [p[1] for p in finite], marker="o", markersize=3)
            for e in sorted({e for e, _ in points} - {e for e, _ in finite}):
                ax.axvline(e, color="#d62728", ls=":", lw=1.2)
            values = [v for _, v in finite]
            if values and min(values) > 0 and max(values) > 1000 * min(values):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.grid(alpha=0.3)
    return Path(path)


class Curves(Hook):
    """Draws ``plot_curves`` of the run's rows to ``path`` when the run loop ends, also when it
    ends with a ``StopRun`` error (a diverged run's curves show the blow-up)."""

    def __init__(self, path: Path, keys: tuple[str, ...], title: str = "") -> None:
        self.path, self.keys, self.title = path, keys, title

    def on_end(self, loop: Any) -> None:
        plot_curves(loop.rows, self.path, self.keys, self.title)


def plot_alphas(rows: list[dict], path: Path, title: str = "") -> Path:
    """Trajectories of the architecture values over epochs, from ``row["architecture"]["alpha"]``
    (a dict op -> value, as SIF writes it)."""
    rows = [r for r in rows if isinstance(r.get("architecture"), dict) and "alpha" in r["architecture"]]
    names = list(rows[0]["architecture"]["alpha"]) if rows else []
    with figure(path, title, figsize=(5, 3.4)) as (_, ax):
        for name in names:
            values = [r["architecture"]["alpha"][name] for r in rows]
            ax.plot([r["epoch"] for r in rows], values, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("alpha (continuous)")
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=8)
    return Path(path)


def plot_pareto(rows: list[dict], path: Path, cost_key: str, score_key: str, higher_is_better: bool = True,
                limit: Optional[float] = None, title: str = "", cost_label: str = "") -> Path:
    """Score against cost of every epoch (metrics rows holding both keys): one point per epoch
    labelled with its number, the Pareto front (``nasp.budget.pareto_front``) as a line, and the
    budget ``limit`` as a vertical line."""
    from .budget import pareto_front

    rows = [r for r in rows if r.get(cost_key) is not None and r.get(score_key) is not None]
    points = [(float(r[cost_key]), float(r[score_key])) for r in rows]
    front = pareto_front(points, higher_is_better)
    with figure(path, title, figsize=(5.2, 3.6)) as (_, ax):
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, color="#1f77b4", label="epoch")
            for r, (x, y) in zip(rows, points):
                ax.annotate(str(r.get("epoch", "")), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="#d62728", lw=1.2,
                    marker="o", markersize=4, label="Pareto front")
        if limit is not None:
            ax.axvline(limit, color="#555555", ls="--", lw=1, label="budget")
        ax.set_xlabel(cost_label or cost_key)
        ax.set_ylabel(score_key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Path(path)

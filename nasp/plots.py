"""Plots every domain shares (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from .distributed import is_main


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
    """Per-epoch curves of the metric ``keys`` found in ``rows`` (metrics.jsonl rows)."""
    keys = tuple(k for k in keys if any(k in r for r in rows))
    n = max(1, len(keys))
    with figure(path, title, nrows=1, ncols=n, figsize=(4 * n, 3.2), squeeze=False) as (_, axes):
        for ax, key in zip(axes[0], keys):
            points = [(r["epoch"], r[key]) for r in rows if key in r]  # epochs count from 1
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.grid(alpha=0.3)
    return Path(path)


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

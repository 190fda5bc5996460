"""Plots every domain shares (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path


def plot_curves(rows: list[dict], path: Path, keys: tuple[str, ...], title: str = "") -> Path:
    """Per-epoch curves of the metric ``keys`` found in ``rows`` (metrics.jsonl rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = tuple(k for k in keys if any(k in r for r in rows))
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["epoch"] + 1, r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_alphas(rows: list[dict], path: Path, title: str = "") -> Path:
    """Trajectories of the architecture values over epochs, from ``row["architecture"]["alpha"]``
    (a dict op -> value, as SIF writes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if isinstance(r.get("architecture"), dict) and "alpha" in r["architecture"]]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(rows[0]["architecture"]["alpha"]) if rows else []
    for name in names:
        ax.plot([r["epoch"] + 1 for r in rows], [r["architecture"]["alpha"][name] for r in rows], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("alpha (continuous)")
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

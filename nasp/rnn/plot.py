"""PNG diagram of a recurrent cell (matplotlib, no display needed)."""
from __future__ import annotations

import os
from pathlib import Path

from ..distributed import is_main
from .genotypes import RecurrentGenotype

_COLORS = {"tanh": "tab:blue", "relu": "tab:red", "sigmoid": "tab:green", "identity": "tab:purple"}


def draw_cell(genotype: RecurrentGenotype, path: os.PathLike | str, title: str = "recurrent cell") -> Path:
    """Draw x_t and h_{t-1} -> node 0 -> intermediate nodes (edges labelled by activation) ->
    h_t (mean of the ``concat`` nodes) and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = genotype.steps
    pos = {"x": (-1.6, 0.6), "h": (-1.6, -0.6), 0: (0.0, 0.0), "out": (n + 1.6, 0.0)}
    for i in range(1, n + 1):
        pos[i] = (float(i), 0.9 if i % 2 else -0.9)
    fig, ax = plt.subplots(figsize=(1.3 * n + 4, 4.2))

    def arrow(a, b, color="black", label=None, rad=0.0, style="-|>"):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle=style, color=color, lw=1.6, shrinkA=16, shrinkB=16,
                                    connectionstyle=f"arc3,rad={rad}"))
        if label:
            # midpoint of matplotlib's arc3 Bezier curve: chord midpoint + rad/2 * (dy, -dx)
            mx, my = (x0 + x1) / 2 + 0.5 * rad * (y1 - y0), (y0 + y1) / 2 - 0.5 * rad * (x1 - x0)
            ax.text(mx, my, label, color=color, fontsize=8, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))

    arrow("x", 0)
    arrow("h", 0)
    for i, (act, pred) in enumerate(genotype.recurrent, start=1):
        rad = 0.0 if i - pred == 1 else 0.25 + 0.04 * (i - pred)
        arrow(pred, i, color=_COLORS.get(act, "black"), label=act, rad=rad)
    for c in genotype.concat:
        arrow(c, "out", color="#d5d5d5", style="-")
    labels = {"x": "$x_t$", "h": "$h_{t-1}$", 0: "0", "out": "$h_t$\n(mean)"}
    for key, (x, y) in pos.items():
        fc = "#ffe9a8" if key in ("x", "h", "out") else "#cfe3ff"
        ax.text(x, y, labels.get(key, str(key)), ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="circle,pad=0.35" if isinstance(key, int) else "round,pad=0.4", fc=fc, ec="black"))
    ax.set_xlim(-2.3, n + 2.4)
    ax.set_ylim(-2.0, 2.0)
    ax.axis("off")
    ax.set_title(title)
    path = Path(path)
    if is_main():  # rank 0 of a data-parallel run draws the run's plots
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

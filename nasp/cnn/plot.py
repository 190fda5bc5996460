"""PNG diagram of a genotype's normal and reduction cells (matplotlib, no graphviz)."""
from __future__ import annotations

from pathlib import Path

from ..plots import figure, plot_curves  # noqa: F401  (plot_curves re-exported for the CNN commands)
from .genotypes import Genotype


def _draw_cell(ax, edges, concat, title: str) -> None:
    import math

    steps = len(edges) // 2
    pos = {0: (0.0, 1.2), 1: (0.0, -1.2)}
    for i in range(steps):
        pos[i + 2] = (2.2 * (i + 1), 0.9 if i % 2 == 0 else -0.9)
    out = (2.2 * (steps + 1), 0.0)
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(steps)}}
    colors = {0: "#a7d3a4", 1: "#a7d3a4", **{i + 2: "#b3c7e6" for i in range(steps)}}
    for k, (op, src) in enumerate(edges):
        dst = k // 2 + 2
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#555555", shrinkA=13, shrinkB=13))
        t = 0.62 if k % 2 else 0.45
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        if angle > 90 or angle < -90:
            angle += 180
        ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), op, fontsize=7, ha="center", va="center", rotation=angle,
                rotation_mode="anchor", bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.85))
    for c in concat:
        ax.annotate("", xy=out, xytext=pos[c], arrowprops=dict(arrowstyle="-|>", color="#c8c8c8", shrinkA=13, shrinkB=13))
    for node, (x, y) in pos.items():
        ax.text(x, y, labels[node], ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc=colors[node], ec="#333333"))
    ax.text(out[0], out[1], "c_{k}", ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round,pad=0.4", fc="#f2d49b", ec="#333333"))
    ax.set_xlim(-0.8, out[0] + 0.8)
    ax.set_ylim(-1.8, 1.8)
    ax.set_title(title)
    ax.axis("off")


def plot_genotype(genotype: Genotype, path: Path, title: str = "") -> Path:
    """Draw both cells side by side into ``path`` (PNG)."""
    with figure(path, title, dpi=110, nrows=1, ncols=2, figsize=(14, 4.2)) as (_, axes):
        _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell")
        _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "reduction cell")
    return Path(path)

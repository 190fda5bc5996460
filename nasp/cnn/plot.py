"""PNG diagram of a genotype's normal and reduction cells (matplotlib, no graphviz).

Arc-diagram layout: the states sit on one line (c_{k-2}, c_{k-1}, the nodes, c_{k}); each node's
first input arrives by an arc above the line, its second by an arc below, and an op's name sits
on the top of its arc. An arc's height grows with its span, so two labels on one side are either
a span apart in height or a whole state apart along the line: no label covers another label or a
state, whatever the genotype. Labels and arcs share one colour per op.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..plots import figure, plot_curves  # noqa: F401  (plot_curves re-exported for the CNN commands)
from .genotypes import Genotype

#: layout in axis units (one unit between neighbouring states along the line)
RISE = 0.36  # label height gained per state of span (> a label's height)
BASE = 0.17  # arcs start and end this far above / below the line (half a state box)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#138d90", "#555555", "#8a8a00")


def _op_colours(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


def _arc(ax, x0: float, x1: float, side: int, height: float, colour: str, width: float, style: str = "-") -> None:
    """A half ellipse from state x0 to state x1, above (side 1) or below (side -1) the line, with
    an arrow head pointing into x1."""
    n = 48
    xs = [(x0 + x1) / 2 - (x1 - x0) / 2 * math.cos(math.pi * i / n) for i in range(n + 1)]
    ys = [side * (BASE + height * math.sin(math.pi * i / n)) for i in range(n + 1)]
    ax.plot(xs[:-3], ys[:-3], color=colour, lw=width, ls=style, zorder=1, solid_capstyle="round")
    ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-4], ys[-4]), zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=width, shrinkA=0, shrinkB=0, mutation_scale=9))


def _draw_cell(ax, edges, concat, title: str, colours: dict[str, str]) -> None:
    steps = len(edges) // 2
    out = steps + 2
    labels = {0: "c_{k-2}", 1: "c_{k-1}", **{i + 2: str(i) for i in range(steps)}, out: "c_{k}"}
    fills = {0: "#a7d3a4", 1: "#a7d3a4", **{i + 2: "#b3c7e6" for i in range(steps)}, out: "#f2d49b"}
    for k, (op, src) in enumerate(edges):
        dst, side = k // 2 + 2, 1 if k % 2 == 0 else -1
        height = RISE * (dst - src)
        _arc(ax, src, dst, side, height, colours[op], 1.3)
        ax.text((src + dst) / 2, side * (BASE + height), op, fontsize=7.5, ha="center", va="center", color=colours[op],
                zorder=3, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=colours[op], lw=0.6))
    for c in concat:  # node -> output, low grey arcs below the line
        _arc(ax, c, out, -1, 0.12 * (out - c), "#b0b0b0", 0.8, "--")
    for node, label in labels.items():
        ax.text(node, 0, label, ha="center", va="center", fontsize=9, zorder=4,
                bbox=dict(boxstyle="round,pad=0.3", fc=fills[node], ec="#333333"))
    top = BASE + RISE * (steps + 1) + 0.2
    ax.set_xlim(-0.6, out + 0.6)
    ax.set_ylim(-top, top)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.axis("off")


def figure_size(steps: int) -> tuple[float, float]:
    """Inches of the two-cell figure for cells of ``steps`` nodes (1.25 inch per axis unit: a
    12-character label at 7.5 pt spans about 0.6 of a unit, so labels one state apart never touch)."""
    inches = 1.25
    return 2 * (steps + 3.2) * inches, 2 * (BASE + RISE * (steps + 1) + 0.2) * inches + 0.9


def plot_genotype(genotype: Genotype, path: Path, title: str = "") -> Path:
    """Draw both cells side by side into ``path`` (PNG)."""
    steps = max(len(genotype.normal), len(genotype.reduce)) // 2
    colours = _op_colours([op for op, _ in (*genotype.normal, *genotype.reduce)])
    with figure(path, title, dpi=110, nrows=1, ncols=2, figsize=figure_size(steps)) as (_, axes):
        _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell", colours)
        _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "reduction cell", colours)
    return Path(path)

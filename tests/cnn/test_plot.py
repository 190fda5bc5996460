"""cells.png: every op label is readable (no label covers another label or a state box)."""
from __future__ import annotations

import random

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from nasp.cnn.genotypes import GENOTYPES, Genotype  # noqa: E402
from nasp.cnn.plot import _draw_cell, _op_colours, figure_size, plot_genotype  # noqa: E402
from nasp.cnn.spaces import SPACES  # noqa: E402


def _random_genotype(seed: int, steps: int) -> Genotype:
    rng = random.Random(seed)
    ops = SPACES.get("nasp12").normal

    def cell():
        return [(rng.choice(ops), src) for i in range(steps) for src in rng.sample(range(i + 2), 2)]

    concat = list(range(2, steps + 2))
    return Genotype.build(cell(), concat, cell(), concat, "random")


def _overlaps(genotype: Genotype) -> list[tuple[str, str]]:
    steps = len(genotype.normal) // 2
    fig, axes = plt.subplots(1, 2, figsize=figure_size(steps))
    colours = _op_colours([op for op, _ in (*genotype.normal, *genotype.reduce)])
    _draw_cell(axes[0], genotype.normal, genotype.normal_concat, "normal cell", colours)
    _draw_cell(axes[1], genotype.reduce, genotype.reduce_concat, "reduction cell", colours)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in axes:
        texts = [t for t in ax.texts if t.get_text()]
        boxes = [(t.get_text(), t.get_bbox_patch().get_window_extent(renderer)) for t in texts]
        for i, (a, box_a) in enumerate(boxes):
            assert fig.bbox.contains(box_a.x0, box_a.y0) and fig.bbox.contains(box_a.x1, box_a.y1), f"{a} is cut off"
            bad.extend((a, b) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b))
    plt.close(fig)
    return bad


@pytest.mark.parametrize("name", GENOTYPES.names())
def test_published_cells_have_no_overlapping_labels(name):
    assert _overlaps(GENOTYPES.get(name)) == []


@pytest.mark.parametrize("seed,steps", [(0, 4), (1, 5), (2, 2)])
def test_random_cells_have_no_overlapping_labels(seed, steps):
    assert _overlaps(_random_genotype(seed, steps)) == []


def test_plot_writes_a_png(tmp_path):
    path = plot_genotype(GENOTYPES.get("DARTS_V2"), tmp_path / "cells.png", "DARTS_V2")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

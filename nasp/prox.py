"""Proximal operators of NASP (REFERENCE §1): pure tensor functions, no state.

The last dimension of an architecture tensor indexes the candidate operations; every other
dimension indexes rows (edges). ``onehot`` is prox onto C1 (one non-zero per row), ``box`` is
prox onto C2 (clamp), ``topk_per_node`` is the cell variant of C1 that also keeps only the
best ``k`` incoming edges of every node.

Projections of a whole architecture (every tensor at once) are ``Projection`` objects:
``PerTensor`` applies one discretizer per tensor (today's cells), ``BudgetedCellProjection``
projects all tensors jointly onto the cells whose total cost is at most a budget (a
multiple-choice knapsack solved exactly on a cost grid, ``nasp.knapsack``; docs/cnn.md, "Budgets").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from . import knapsack
from .errors import DivergedError, NaspError


def _check_finite(a: Tensor) -> None:
    if torch.isnan(a).any():
        raise DivergedError("architecture values contain NaN; the search diverged (lower the learning rate)")


def onehot(a: Tensor) -> Tensor:
    """Per row, the arg-max entry becomes 1 and every other entry 0.

    Ties go to the lowest index (``torch.argmax`` returns the first maximum). NaN raises
    ``ValueError``. The kept entry is set to 1, not to its value (BinaryConnect, as the authors).
    """
    _check_finite(a)
    out = torch.zeros_like(a)
    return out.scatter_(-1, a.argmax(dim=-1, keepdim=True), 1.0)


def box(a: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Clamp every entry to ``[low, high]`` (prox onto C2)."""
    return a.clamp(low, high)


def node_slices(edges_per_node: Sequence[int]) -> list[slice]:
    """Row ranges of each node's incoming edges, rows laid out node after node."""
    slices, start = [], 0
    for n in edges_per_node:
        slices.append(slice(start, start + n))
        start += n
    return slices


def select_edges(scores: Tensor, edges_per_node: Sequence[int], k: int) -> list[list[int]]:
    """Indices (global rows) of the ``k`` best-scoring incoming edges of every node.

    ``scores`` holds one value per row. Ties go to the lower edge index (stable sort). A node
    with fewer than ``k`` incoming edges keeps them all.
    """
    if scores.dim() != 1 or scores.numel() != sum(edges_per_node):
        raise ValueError(f"expected {sum(edges_per_node)} edge scores, got shape {tuple(scores.shape)}")
    kept = []
    for sl in node_slices(edges_per_node):
        order = torch.sort(scores[sl], descending=True, stable=True).indices[:k]
        kept.append(sorted(sl.start + int(i) for i in order))
    return kept


def topk_per_node(a: Tensor, edges_per_node: Sequence[int], k: int = 2) -> Tensor:
    """Cell projection: one-hot every row, then keep only the top-``k`` incoming edges per node.

    Edges are ranked by the value of their arg-max entry; the other edges become all-zero, so
    the result is already a valid discrete cell (REFERENCE §1, prox onto C1 for cells).
    """
    if a.dim() != 2 or a.shape[0] != sum(edges_per_node):
        raise ValueError(
            f"architecture of shape {tuple(a.shape)} does not fit a cell with {sum(edges_per_node)} edges"
        )
    _check_finite(a)
    keep = torch.zeros(a.shape[0], dtype=torch.bool)
    for rows in select_edges(a.detach().max(dim=-1).values.cpu(), edges_per_node, k):
        keep[rows] = True
    return onehot(a) * keep.to(a.device).unsqueeze(-1).to(a.dtype)


class CellProjection:
    """``topk_per_node`` bound to one cell shape: a picklable ``discretize`` for ``Architect``."""

    def __init__(self, edges_per_node: Sequence[int], k: int = 2) -> None:
        self.edges_per_node = list(edges_per_node)
        self.k = k

    def __call__(self, a: Tensor) -> Tensor:
        return topk_per_node(a, self.edges_per_node, self.k)

    def __repr__(self) -> str:
        return f"CellProjection(edges_per_node={self.edges_per_node}, k={self.k})"


# whole-architecture projections -----------------------------------------------------------------
Discretize = Callable[[Tensor], Tensor]


class Projection:
    """prox onto C1 of a whole architecture: every architecture tensor at once.

    ``projection(alphas)`` returns the discrete values (same shapes); ``sample(shapes, generator)``
    a uniformly random discrete architecture of the same set (random search, NASP's warm-up).
    ``Architect(discretize=...)`` and ``SearchNetwork.projection()`` take one.
    """

    def __call__(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def sample(self, shapes: Sequence[torch.Size], generator: torch.Generator) -> list[Tensor]:
        raise NotImplementedError


class PerTensor(Projection):
    """One discretizer per tensor, each applied alone (``onehot``, ``CellProjection``)."""

    def __init__(self, discretizers: Sequence[Discretize]) -> None:
        self.discretizers = list(discretizers)

    def __call__(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        alphas = list(alphas)
        if len(alphas) != len(self.discretizers):
            raise ValueError(f"{len(self.discretizers)} discretizers for {len(alphas)} architecture tensors")
        return [d(a) for a, d in zip(alphas, self.discretizers)]

    def sample(self, shapes: Sequence[torch.Size], generator: torch.Generator) -> list[Tensor]:
        """Each discretizer applied to U(0, 1) noise (cells keep their top-k structure)."""
        return [d(torch.rand(shape, generator=generator)) for shape, d in zip(shapes, self.discretizers)]

    def __repr__(self) -> str:
        return f"PerTensor({self.discretizers})"


@dataclass(frozen=True)
class CellCosts:
    """What every entry of an architecture costs, additively.

    ``entries[i][r, o]``: the cost of op ``o`` on row ``r`` of architecture tensor ``i``, summed
    over every position where that cell is used (a CNN normal cell repeats in many layers);
    ``base``: the cost of everything the architecture does not choose (stem, preprocessing,
    classifier). A discrete architecture costs ``base`` plus the entries it keeps (non-zero).
    """

    entries: tuple[Tensor, ...]
    base: float = 0.0

    def __post_init__(self) -> None:
        tables = tuple(torch.as_tensor(e, dtype=torch.float64).detach().cpu() for e in self.entries)
        for t in tables:
            if t.dim() != 2 or not torch.isfinite(t).all() or (t < 0).any():
                raise ValueError("cell costs must be finite, non-negative rows x ops tables")
        if not (math.isfinite(self.base) and self.base >= 0):
            raise ValueError(f"base cost {self.base!r} must be finite and non-negative")
        object.__setattr__(self, "entries", tables)

    def cost(self, discrete: Sequence[Tensor]) -> float:
        """Total cost of a discrete architecture (its non-zero entries)."""
        total = float(self.base)
        for table, value in zip(self.entries, discrete):
            value = value.detach().cpu()
            if value.shape != table.shape:
                raise ValueError(f"architecture of shape {tuple(value.shape)} does not fit costs {tuple(table.shape)}")
            total += float(table[value > 0].sum())
        return total


#: default grid resolution: units per kept entry, so rounding wastes at most 1/200 of the cells' budget
GRID_PER_ENTRY = 200


def _integral(values: Sequence[float]) -> bool:
    return all(float(v).is_integer() for v in values)


def format_amount(value: float) -> str:
    """``3.1M``, ``612K``, ``4.25``: four significant digits with a K/M/G suffix."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.4g}{suffix}"
    return f"{value:.4g}"


class BudgetedCellProjection(Projection):
    """Project every architecture tensor jointly onto the valid cells that fit a budget.

    A valid cell keeps one op on every kept row and exactly ``k`` incoming edges per node (as
    ``topk_per_node``); among those whose total cost (``costs.cost``) is at most ``limit`` it
    returns the one maximising the summed alpha value of its kept entries, with the kept entries
    set to 1. Without the budget that maximiser is ``topk_per_node`` of every tensor, so when its
    cell fits (the budget is not binding) that cell is returned, unchanged.

    Otherwise a multiple-choice knapsack (``nasp.knapsack.best``) runs on a cost grid of ``grid``
    units over the cells' budget ``B = limit - base`` (default ``GRID_PER_ENTRY`` units per kept
    entry). Costs are rounded **up** to whole units, so a cell that fits on the grid fits truly:
    the result never exceeds ``limit``. Rounding can only exclude cells: each kept entry gains
    less than one unit ``B / grid``, so every cell costing at most ``limit - m * B / grid`` (m
    kept entries; by default ``limit - B / 200``) is considered, and the result is at least as
    good as the exact optimum under that slightly smaller budget. Integer costs (parameters,
    multiply-adds) below ``grid`` units are exact (one unit per count). If the grid leaves no
    cell although one fits (a budget within the rounding margin of the cheapest cell), the
    cheapest cell is returned.

    Args:
        edges_per_node: incoming rows of every node, the same for every tensor.
        costs: entry costs of every tensor and the fixed part.
        limit: the budget (same unit as the costs).
        k: kept incoming edges per node.
        grid: grid units over the cells' budget (default ``GRID_PER_ENTRY`` x kept entries).
        label: how errors name the budget (``--max-params``).
        unit: how errors name the cost (``parameters``).

    Raises ``NaspError`` when no cell fits: the message names the cheapest cell's cost.
    """

    def __init__(self, edges_per_node: Sequence[int], costs: CellCosts, limit: float, k: int = 2,
                 grid: Optional[int] = None, label: str = "budget", unit: str = "") -> None:
        self.edges_per_node, self.costs, self.k = list(edges_per_node), costs, k
        self.limit, self.label, self.unit = float(limit), label, unit
        if not (math.isfinite(self.limit) and self.limit > 0):
            raise NaspError(f"{label} {limit!r}: must be a positive number")
        rows = sum(self.edges_per_node)
        for table in costs.entries:
            if table.shape[0] != rows:
                raise ValueError(f"costs of {table.shape[0]} rows for a cell of {rows} edges")
        self.kept_entries = len(costs.entries) * sum(min(k, n) for n in self.edges_per_node)
        self.groups = self._groups()
        self.items = max(t.shape[1] for t in costs.entries)
        self.real = self._stack([t for t in costs.entries], math.inf).numpy()
        cheapest = self.cost_of(self._least(np.zeros(self.real.shape), self.real))
        if cheapest > self.limit:
            raise NaspError(f"{label} {format_amount(self.limit)}: no cell fits; the cheapest cell of this space costs "
                            f"{format_amount(cheapest)}{' ' + unit if unit else ''} ({cheapest:,.6g})")
        self.cheapest = cheapest
        self.most_expensive = self.cost_of(self._least(np.zeros(self.real.shape), -np.where(np.isfinite(self.real), self.real, -np.inf)))
        self.grid, self.capacity, self.units = self._grid(grid)

    # layout ------------------------------------------------------------------------------------
    def _groups(self) -> list[slice]:
        rows = sum(self.edges_per_node)
        return [slice(i * rows + sl.start, i * rows + sl.stop)
                for i in range(len(self.costs.entries)) for sl in node_slices(self.edges_per_node)]

    def _stack(self, tensors: Sequence[Tensor], pad: float) -> Tensor:
        """The tensors' rows one after the other, padded to ``self.items`` columns with ``pad``."""
        out = []
        for t in tensors:
            t = t.detach().cpu().to(torch.float64)
            if t.shape[1] < self.items:
                t = torch.cat([t, t.new_full((t.shape[0], self.items - t.shape[1]), pad)], dim=1)
            out.append(t)
        return torch.cat(out)

    def _grid(self, grid: Optional[int]) -> tuple[int, int, np.ndarray]:
        """(grid units over the cells' budget, the knapsack capacity, integer entry costs; an op
        a tensor lacks costs capacity + 1)."""
        budget = self.limit - self.costs.base
        units = grid if grid is not None else GRID_PER_ENTRY * self.kept_entries
        finite = np.isfinite(self.real)
        real = np.where(finite, self.real, 0.0)
        if budget <= 0:  # only cells of zero cost fit
            units, grid_costs = 0, (real > 0).astype(np.int64)
        elif budget <= 2 ** 40 and _integral([budget, *real.ravel().tolist()]):  # int64 products cannot overflow
            units = int(min(units, budget))  # integer costs: exact arithmetic, exact below `units`
            grid_costs = (real.astype(np.int64) * units + int(budget) - 1) // int(budget)
        else:  # round up, with a margin for the float division
            grid_costs = np.ceil(real * units / budget * (1 + 1e-9)).astype(np.int64)
        grid_costs = np.where(finite, grid_costs, units + 1)
        return units, units, grid_costs

    # costs -------------------------------------------------------------------------------------
    def cost(self, discrete: Sequence[Tensor]) -> float:
        """Total cost of a discrete architecture."""
        return self.costs.cost(discrete)

    def cost_of(self, chosen: Sequence[int]) -> float:
        """Total cost of a choice (per stacked row the kept op, -1: dropped)."""
        return float(self.costs.base) + sum(float(self.real[r, o]) for r, o in enumerate(chosen) if o >= 0)

    def _least(self, values: np.ndarray, costs: np.ndarray) -> list[int]:
        """The choice of least ``costs``: per row the op of least cost (ties: the larger value),
        per node the ``k`` rows of least cost (ties: the larger value, then the lower row)."""
        chosen = [-1] * costs.shape[0]
        for g in self.groups:
            picks = []
            for r in range(g.start, g.stop):
                o = min(range(self.items), key=lambda o: (costs[r, o], -values[r, o], o))
                picks.append((costs[r, o], -values[r, o], r, o))
            for _, _, r, o in sorted(picks)[: self.k]:
                chosen[r] = o
        return chosen

    def binding(self, values: Sequence[Tensor]) -> bool:
        """Whether the budget changes the projection of ``values``: their unconstrained
        projection (``topk_per_node`` of every tensor) costs more than the limit."""
        return self.cost(self.unconstrained(values)) > self.limit

    def unconstrained(self, values: Sequence[Tensor]) -> list[Tensor]:
        return [topk_per_node(a, self.edges_per_node, self.k) for a in values]

    def describe(self) -> dict:
        """The budget and its grid, for summaries."""
        budget = self.limit - self.costs.base
        unit = budget / self.grid if self.grid else 0.0
        return {"limit": self.limit, "base": float(self.costs.base), "cheapest": self.cheapest,
                "most_expensive": self.most_expensive, "grid_units": self.grid, "grid_unit": unit,
                "max_rounding_waste": 0.0 if self._exact() else self.kept_entries * unit}

    def _exact(self) -> bool:
        budget = self.limit - self.costs.base
        finite = self.real[np.isfinite(self.real)]
        return 0 < budget <= 2 ** 40 and _integral([budget, *finite.tolist()]) and self.grid == int(budget)

    # the projection ----------------------------------------------------------------------------
    def _tensors(self, chosen: Sequence[int], like: Sequence[Tensor]) -> list[Tensor]:
        rows = sum(self.edges_per_node)
        out = []
        for i, a in enumerate(like):
            value = torch.zeros(a.shape, dtype=a.dtype)
            for r in range(rows):
                o = chosen[i * rows + r]
                if o >= 0:
                    value[r, o] = 1.0
            out.append(value.to(a.device))
        return out

    def __call__(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        alphas = list(alphas)
        if len(alphas) != len(self.costs.entries):
            raise ValueError(f"budget costs for {len(self.costs.entries)} architecture tensors, got {len(alphas)}")
        for a, table in zip(alphas, self.costs.entries):
            if tuple(a.shape) != tuple(table.shape):
                raise ValueError(f"architecture of shape {tuple(a.shape)} does not fit costs {tuple(table.shape)}")
            _check_finite(a)
        free = self.unconstrained(alphas)
        if self.cost(free) <= self.limit:
            return free
        values = self._stack(alphas, 0.0).numpy()
        chosen = knapsack.best(values, self.units, self.groups, self.k, self.capacity)
        if chosen is None:
            chosen = self._least(values, self.real)
        result = self._tensors(chosen, alphas)
        if self.cost(result) > self.limit:  # the rounding is conservative: a bug if this fails
            raise AssertionError(f"budgeted projection costs {self.cost(result)} > {self.limit}")
        return result

    def sample(self, shapes: Sequence[torch.Size], generator: torch.Generator) -> list[Tensor]:
        """A cell drawn uniformly among the cells that fit the grid (``nasp.knapsack.sample``);
        the cheapest cell when none does."""
        def uniform() -> float:
            return float(torch.rand((), generator=generator, dtype=torch.float64))

        like = [torch.zeros(shape) for shape in shapes]
        chosen = knapsack.sample(self.units, self.groups, self.k, self.capacity, uniform)
        if chosen is None:
            chosen = self._least(np.zeros(self.real.shape), self.real)
        return self._tensors(chosen, like)

    def __repr__(self) -> str:
        return (f"BudgetedCellProjection(limit={self.limit:g}, base={self.costs.base:g}, k={self.k}, "
                f"grid={self.grid}, edges_per_node={self.edges_per_node})")

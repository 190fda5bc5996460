"""Multiple-choice knapsack over cell architectures, by dynamic programming on an integer cost grid.

Rows (edges) are grouped into nodes. A choice keeps exactly ``k`` rows of every node (all of
them when a node has fewer) and, on each kept row, exactly one item (op); every other row is
dropped. Item ``(r, o)`` has a value ``values[r, o]`` and a non-negative integer cost
``costs[r, o]`` (grid units). ``best`` maximises the summed value of the kept items subject to
their summed cost ``<= capacity``; ``sample`` draws uniformly among all choices that fit.

The dynamic programme runs over the rows, node after node, with the state (rows kept so far in
the current node, grid cost so far): ``O(rows * k * items * capacity)`` operations, vectorised
over the cost axis (14 edges x 8 ops x 3200 grid units: a few milliseconds). Pure numpy, no
state; ``nasp.prox.BudgetedCellProjection`` turns real costs into grid units and tensors into
these arrays.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

NEG = -np.inf


def _check(values: np.ndarray, costs: np.ndarray, groups: Sequence[slice], capacity: int) -> None:
    if values.shape != costs.shape or values.ndim != 2:
        raise ValueError(f"values {values.shape} and costs {costs.shape} must be the same rows x items")
    if groups and groups[-1].stop != values.shape[0]:
        raise ValueError(f"the groups cover {groups[-1].stop} rows, the arrays have {values.shape[0]}")
    if capacity < 0:
        raise ValueError(f"capacity {capacity} is negative")
    if (costs < 0).any():
        raise ValueError("costs must be non-negative")


def _undominated(values: np.ndarray, costs: np.ndarray, capacity: int) -> list[int]:
    """Items of one row that can be in a best choice: within capacity, and no other item is as
    cheap and as valuable (ties go to the lower index), in increasing index order."""
    keep = []
    for o in range(len(costs)):
        if costs[o] > capacity:
            continue
        beaten = any(costs[p] <= costs[o] and values[p] >= values[o]
                     and (costs[p] < costs[o] or values[p] > values[o] or p < o)
                     for p in range(len(costs)) if p != o and costs[p] <= capacity)
        if not beaten:
            keep.append(o)
    return keep


def best(values: np.ndarray, costs: np.ndarray, groups: Sequence[slice], k: int,
         capacity: int) -> Optional[list[int]]:
    """Per row the kept item (-1: dropped) of the most valuable choice within ``capacity``, or
    ``None`` when no choice fits. Ties go to the cheapest total, then to dropping a row / the
    lower item index."""
    _check(values, costs, groups, capacity)
    back: list[np.ndarray] = []
    total = np.full(capacity + 1, NEG)
    total[0] = 0.0
    for g in groups:
        keep = min(k, g.stop - g.start)
        state = np.full((keep + 1, capacity + 1), NEG)
        state[0] = total
        for r in range(g.start, g.stop):
            new = state.copy()  # dropping the row
            choice = np.zeros(state.shape, dtype=np.int16)
            for o in _undominated(values[r], costs[r], capacity):
                w = int(costs[r, o])
                cand = state[:-1, : capacity + 1 - w] + values[r, o]
                target = new[1:, w:]
                better = cand > target  # strictly: earlier options keep ties
                np.copyto(target, cand, where=better)
                np.copyto(choice[1:, w:], o + 1, where=better)
            back.append(choice)
            state = new
        total = state[keep]
    if not np.isfinite(total).any():
        return None
    c = int(np.argmax(total))  # the first maximum: the cheapest of the best
    return _trace(back, costs, groups, k, c, lambda r, j, c: int(back[r][j, c]))


def _trace(back: list, costs: np.ndarray, groups: Sequence[slice], k: int, c: int,
           pick: Callable[[int, int, int], int]) -> list[int]:
    """Walk the rows backwards from final cost ``c``; ``pick(row, kept, cost)`` gives 0 (drop) or
    ``1 + item``."""
    chosen = [-1] * costs.shape[0]
    for g in reversed(groups):
        j = min(k, g.stop - g.start)
        for r in reversed(range(g.start, g.stop)):
            o = pick(r, j, c)
            if o > 0:
                chosen[r] = o - 1
                c -= int(costs[r, o - 1])
                j -= 1
        if j != 0:
            raise AssertionError("knapsack trace did not close a node")  # a bug, not a user error
    if c != 0:
        raise AssertionError("knapsack trace did not return to cost 0")
    return chosen


def sample(costs: np.ndarray, groups: Sequence[slice], k: int, capacity: int,
           uniform: Callable[[], float]) -> Optional[list[int]]:
    """A choice drawn uniformly among all choices within ``capacity`` (per row the kept item, -1:
    dropped), or ``None`` when none fits. ``uniform()`` returns a number in [0, 1); one call per
    row plus one. Counts are float64 (exact up to 2**53 choices, relative error 1e-16 beyond)."""
    _check(np.zeros(costs.shape), costs, groups, capacity)
    before: list[np.ndarray] = []  # the count state each row starts from
    total = np.zeros(capacity + 1)
    total[0] = 1.0
    for g in groups:
        keep = min(k, g.stop - g.start)
        state = np.zeros((keep + 1, capacity + 1))
        state[0] = total
        for r in range(g.start, g.stop):
            before.append(state)
            new = state.copy()  # dropping the row
            weights, multiplicity = np.unique(costs[r][costs[r] <= capacity], return_counts=True)
            for w, m in zip(weights.tolist(), multiplicity.tolist()):
                new[1:, w:] += m * state[:-1, : capacity + 1 - w]
            state = new
        total = state[keep]
    if total.sum() <= 0:
        return None

    def draw(weights: np.ndarray) -> int:
        cumulative = np.cumsum(weights)
        return int(min(np.searchsorted(cumulative, uniform() * cumulative[-1], side="right"), len(weights) - 1))

    def pick(r: int, j: int, c: int) -> int:
        state = before[r]
        weights = np.zeros(1 + costs.shape[1])
        weights[0] = state[j, c]
        if j >= 1:
            for o, w in enumerate(costs[r]):
                if w <= c:
                    weights[1 + o] = state[j - 1, c - w]
        return draw(weights)

    return _trace(before, costs, groups, k, draw(total), pick)

"""Hard cost budgets of a search, the parts every domain shares.

The projection itself is ``nasp.prox.BudgetedCellProjection`` (set on a network with
``SearchNetwork.set_budget``); a domain supplies the costs (the CNN: parameters, multiply-adds
or measured latency of its evaluation network, ``nasp.cnn.costs``; the RNN: the recurrent
cell's matrices). Here: budget amounts with K/M/G suffixes, the metrics-row hook that records
each epoch's cost, the summary block, and the Pareto front of (cost, score) points.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, Sequence

from .errors import NaspError
from .loop import Hook
from .prox import BudgetedCellProjection, format_amount

SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_AMOUNT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMgG]?)\s*$")


def parse_amount(value: Any, flag: str = "budget") -> float:
    """A positive, finite amount: a number, or text such as ``3.0M``, ``600M``, ``250K``, ``5``,
    ``1.5e6`` (suffixes K = 1e3, M = 1e6, G = 1e9, either case); else a one-line ``NaspError``."""
    if isinstance(value, bool):
        raise NaspError(f"{flag} {value!r}: not an amount (a number, optionally with K, M or G: 3.0M)")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _AMOUNT.match(str(value))
        if match is None:
            raise NaspError(f"{flag} {value!r}: not an amount (a number, optionally with K, M or G: 3.0M)")
        number = float(match.group(1)) * SUFFIXES[match.group(2).lower()]
    if not (math.isfinite(number) and number > 0):
        raise NaspError(f"{flag} {value!r}: must be a positive number")
    return number


def one_budget(given: dict[str, Optional[float]]) -> Optional[tuple[str, float]]:
    """The one budget given among ``{flag: value}`` (``None``: none given); two or more are refused:
    a budget on several costs at once is a multi-dimensional knapsack this projection does not solve."""
    chosen = [(flag, value) for flag, value in given.items() if value is not None]
    if len(chosen) > 1:
        raise NaspError(f"{' and '.join(flag for flag, _ in chosen)}: give one budget at a time "
                        f"(one of {', '.join(given)})")
    return chosen[0] if chosen else None


class RecordCosts(Hook):
    """Adds the costs of each epoch's architecture to its metrics row: ``cost_of(row["architecture"])``
    returns ``{key: cost}`` (e.g. ``{"params": 3.1e6, "madds": 5.4e8}``)."""

    def __init__(self, cost_of: Callable[[Any], dict[str, float]]) -> None:
        self.cost_of = cost_of

    def end_epoch(self, epoch: int, row: dict) -> bool:
        if row.get("architecture") is not None:
            row.update(self.cost_of(row["architecture"]))
        return False


def summary(budget: BudgetedCellProjection, metric: str, flag: str, cost: float, binding: Optional[bool],
            network: str) -> dict[str, Any]:
    """The ``budget`` block of a search summary: what was limited, the exported cell's cost, whether
    the budget was binding (it changed the exported cell; random: it excluded cells from the
    sampling), and the projection's grid."""
    return {"metric": metric, "option": flag, "limit": budget.limit, "network": network, "cost": cost,
            "fits": cost <= budget.limit, "binding": binding, "slack": budget.limit - cost,
            "limit_text": format_amount(budget.limit), **{k: v for k, v in budget.describe().items() if k != "limit"}}


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the points (cost, score) that no other point beats on both (lower or equal cost
    and better or equal score, one of them strictly), in order of cost."""
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1]))
    front, best = [], -math.inf
    for i in order:
        score = sign * points[i][1]
        if score > best:
            front.append(i)
            best = score
    return front

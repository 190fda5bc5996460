"""Mixing rules: how a search network turns its architecture values into a mix of candidates.

A rule is a small object that a *strategy* supplies for each forward pass (through
``SearchNetwork.using(rule)``, which restores the previous rule on exit). The network only ever
calls ``plan(alpha, self.mixing)`` once per architecture tensor and ``mix(candidates, p, row)``
once per row (edge); a new search method is a new rule (and strategy), not an edit of the core
or of any network. The built-in rules:

* ``Softmax`` (DARTS): weights = softmax of each row; every candidate runs with autograd.
* ``Active`` (NASP architecture step): weights = the values as they are (one-hot inside
  ``Architect.discrete()``); every candidate runs, but only those with a non-zero weight build an
  autograd graph. The gradient of each weight, ``<dL/d out, o_k(x)>``, is still exact.
* ``SinglePath`` (NASP weight step, random search, evaluation of a discrete cell): only the
  candidates with a non-zero weight run; nothing flows back to the architecture values.
* ``GumbelHard`` (GDAS, in ``nasp.strategies.gdas``): one sampled candidate per row runs, with
  a straight-through weight so the gradient reaches every entry of the row.

``Active`` and ``SinglePath`` read which candidates are non-zero on the host. A strategy that
already knows it (the projection computed it) passes it as a ``Selection``, so the forward pass
makes no device-to-host copy at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

#: per row, the indices of the candidates that run with autograd (host-side)
ActiveRows = list[list[int]]


def nonzero_rows(value: Tensor) -> ActiveRows:
    """Per row of a (rows x ops) tensor, the indices of its non-zero entries (one host copy)."""
    flags = (value.detach() != 0).cpu().tolist()
    return [[k for k, on in enumerate(row) if on] for row in flags]


class Selection:
    """The host-side non-zero candidates of some architecture tensors, computed once per
    projection and handed to the rule so that forwards need not copy the values again."""

    def __init__(self, alphas: Sequence[Tensor], values: Optional[Sequence[Tensor]] = None) -> None:
        values = alphas if values is None else values
        self._rows = [(a, nonzero_rows(v)) for a, v in zip(alphas, values)]

    def rows_of(self, alpha: Tensor) -> Optional[ActiveRows]:
        for a, rows in self._rows:
            if a is alpha:
                return rows
        return None


@dataclass
class MixPlan:
    """Mixing weights of every row of one architecture tensor for one forward pass.

    Attributes:
        weights: rows x ops weights multiplying the candidates' outputs.
        active: per row, the candidates that run with autograd; ``None``: every candidate does.
        runs_inactive: whether the other candidates still run, without autograd (their values
            are needed for the gradient of their weights).
        rule: the rule that made the plan.
    """

    weights: Tensor
    active: Optional[ActiveRows]
    runs_inactive: bool
    rule: "MixingRule"

    @property
    def dense(self) -> bool:
        """Every candidate of every row runs with autograd (a supernet forward)."""
        return self.active is None


class MixingRule:
    """Base of every rule. Subclasses implement ``plan``."""

    name = "rule"

    def plan(self, alpha: Tensor) -> MixPlan:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Softmax(MixingRule):
    """DARTS: weights = softmax of each row; every candidate runs with autograd."""

    name = "softmax"

    def plan(self, alpha: Tensor) -> MixPlan:
        return MixPlan(torch.softmax(alpha, dim=-1), None, False, self)


class _Discrete(MixingRule):
    """Rules over discrete values: the non-zero entries of each row are the active candidates."""

    grad_to_alpha = False
    runs_inactive = False

    def __init__(self, selection: Optional[Selection] = None) -> None:
        self.selection = selection

    def plan(self, alpha: Tensor) -> MixPlan:
        rows = self.selection.rows_of(alpha) if self.selection is not None else None
        if rows is None:
            rows = nonzero_rows(alpha)
        weights = alpha if self.grad_to_alpha else alpha.detach()
        return MixPlan(weights, rows, self.runs_inactive, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(selection={'given' if self.selection is not None else None})"


class Active(_Discrete):
    """NASP's architecture step: every candidate runs, only the selected ones with autograd."""

    name = "active"
    grad_to_alpha = True
    runs_inactive = True


class SinglePath(_Discrete):
    """Only the selected candidates run; nothing flows back to the architecture values."""

    name = "single"


class Mixing:
    """Ready instances of the built-in rules (``Mixing.SINGLE`` etc.), for tests and networks
    that need a default; strategies build their own (e.g. with a ``Selection``)."""

    SOFTMAX: MixingRule = Softmax()
    ACTIVE: MixingRule = Active()
    SINGLE: MixingRule = SinglePath()
    ALL: tuple[MixingRule, ...] = (SOFTMAX, ACTIVE, SINGLE)


def plan(alpha: Tensor, rule: MixingRule) -> MixPlan:
    """Prepare the mixing weights of a (rows x ops) architecture tensor for one forward pass."""
    return rule.plan(alpha)


def mix(candidates: Sequence[Callable[[], Tensor]], p: MixPlan, row: int) -> Optional[Tensor]:
    """Weighted sum of the candidates of one row (edge) under the plan.

    ``candidates[k]()`` computes operation k's output. Returns ``None`` when no candidate runs
    (a dropped edge under a single-path rule): the caller treats it as a zero contribution.
    """
    w = p.weights[row]
    if p.active is None:
        return sum(w[k] * fn() for k, fn in enumerate(candidates))
    active = p.active[row]
    if not p.runs_inactive:
        if not active:
            return None
        return sum(w[k] * candidates[k]() for k in active)
    out = None
    for k, fn in enumerate(candidates):
        if k in active:
            term = w[k] * fn()
        else:
            with torch.no_grad():
                value = fn()
            term = w[k] * value
        out = term if out is None else out + term
    return out

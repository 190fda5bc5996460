"""Mixing rules: how a search network turns its architecture values into a mix of candidates.

A rule is a small object that a *strategy* supplies for each forward pass (through
``SearchNetwork.using(rule)``, which restores the previous rule on exit). The network only ever
calls ``plan(alpha, self.mixing)`` once per architecture tensor and ``mix(candidates, p, row)``
once per row (edge); a new search method is a new rule (and strategy), not an edit of the core
or of any network. The built-in rules:

* ``Softmax`` (DARTS): weights = softmax of each row; every candidate runs with autograd.
* ``Active`` (NASP architecture step): weights = the values as they are (one-hot inside
  ``Architect.discrete()``); the forward pass runs only the candidates with a non-zero weight,
  with autograd; the others run in the backward pass, without autograd, one at a time, for the
  gradient of their weight, ``<dL/d out, o_k(x)>``, which stays exact. The step's memory is a
  single path's.
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
from torch.autograd.function import once_differentiable

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
    """NASP's architecture step: the selected candidates run with autograd; the others run in the
    backward pass, without autograd, for their weights' gradients (``_InactiveGradients``)."""

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


def mix(candidates: Sequence[Callable[[], Tensor]], p: MixPlan, row: int, like: Optional[Tensor] = None) -> Optional[Tensor]:
    """Weighted sum of the candidates of one row (edge) under the plan.

    ``candidates[k]()`` computes operation k's output. Returns ``None`` when no candidate runs
    (a dropped edge under a single-path rule): the caller treats it as a zero contribution.
    ``like``: a tensor of the output's shape, for a row of the ``Active`` rule none of whose
    candidates is selected (without it, one candidate runs to learn the shape).
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
    for k in active:
        term = w[k] * candidates[k]()
        out = term if out is None else out + term
    inactive = [k for k in range(len(candidates)) if k not in active]
    if not inactive or not w.requires_grad:
        return out
    if out is None:  # no candidate selected: the row adds zero, of a candidate's shape
        if like is None:
            with torch.no_grad():
                like = candidates[inactive[0]]()
        out = torch.zeros_like(like)
    return _InactiveGradients.apply(out, w, [candidates[k] for k in inactive], inactive)


class _InactiveGradients(torch.autograd.Function):
    """Identity on a row's output whose backward adds the gradient of the row's zero weights:
    ``<dL/d out, o_k(x)>`` for every unselected candidate k, each computed there, without
    autograd, under the forward pass's autocast state, and dropped at once. Its weight is zero,
    so the forward pass needs none of them: the architecture step stores no more than a
    single-path forward (the candidates' closures keep their inputs, which the selected
    candidates keep anyway). Candidates must be deterministic, must not read tensors changed in
    place before the backward pass and must not depend on the module's train/eval mode changing
    in between (true of every op in this package). Not twice differentiable."""

    @staticmethod
    def forward(ctx, out: Tensor, w: Tensor, candidates: list, columns: list[int]) -> Tensor:  # type: ignore[override]
        ctx.autocast = (out.device.type, *_autocast_state(out.device.type))
        ctx.candidates, ctx.columns, ctx.weight = candidates, columns, (w.shape, w.dtype, w.device)
        return out.view_as(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        shape, dtype, device = ctx.weight
        grad_w = torch.zeros(shape, dtype=dtype, device=device)
        kind, enabled, cast = ctx.autocast
        with torch.no_grad(), torch.autocast(kind, dtype=cast, enabled=enabled):
            for k, fn in zip(ctx.columns, ctx.candidates):
                grad_w[k] = (grad * fn()).to(dtype).sum()
        return grad, grad_w, None, None


def _autocast_state(device: str) -> tuple[bool, Optional[torch.dtype]]:
    """Whether autocast is on for ``device`` (a device type), and its dtype."""
    try:
        enabled = torch.is_autocast_enabled(device)
        return enabled, (torch.get_autocast_dtype(device) if enabled else None)
    except TypeError:  # torch < 2.4: one function per device type
        if device == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()

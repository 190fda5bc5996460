"""How a search network turns its architecture values into a mix of candidate operations.

One rule per search method, chosen by the strategy before each forward pass:

* ``SOFTMAX`` (DARTS): weights = softmax of each row; every candidate runs with autograd.
* ``ACTIVE`` (NASP architecture step): weights = the values as they are (one-hot inside
  ``Architect.discrete()``); every candidate runs, but only those with a non-zero weight build an
  autograd graph. The gradient of each weight, ``<dL/d out, o_k(x)>``, is still exact.
* ``SINGLE`` (NASP weight step, random search, evaluation of a discrete cell): only the
  candidates with a non-zero weight run; nothing flows back to the architecture values.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor


class Mixing(enum.Enum):
    SOFTMAX = "softmax"
    ACTIVE = "active"
    SINGLE = "single"


@dataclass
class MixPlan:
    """Mixing weights of every row plus, for ACTIVE/SINGLE, the host-side list of non-zero ops.

    Computing ``active`` costs one device-to-host copy per architecture tensor per forward,
    instead of one per edge.
    """

    weights: Tensor
    active: Optional[list[list[int]]]
    mixing: Mixing


def plan(alpha: Tensor, mixing: Mixing) -> MixPlan:
    """Prepare the mixing weights of a (rows x ops) architecture tensor for one forward pass."""
    if mixing is Mixing.SOFTMAX:
        return MixPlan(torch.softmax(alpha, dim=-1), None, mixing)
    nonzero = (alpha.detach() != 0).cpu().tolist()
    active = [[k for k, on in enumerate(row) if on] for row in nonzero]
    weights = alpha.detach() if mixing is Mixing.SINGLE else alpha
    return MixPlan(weights, active, mixing)


def mix(candidates: Sequence[Callable[[], Tensor]], p: MixPlan, row: int) -> Optional[Tensor]:
    """Weighted sum of the candidates of one row (edge) under the plan's rule.

    ``candidates[k]()`` computes operation k's output. Returns ``None`` when no candidate runs
    (a dropped edge in SINGLE mode): the caller treats it as a zero contribution.
    """
    w = p.weights[row]
    if p.mixing is Mixing.SOFTMAX:
        return sum(w[k] * fn() for k, fn in enumerate(candidates))
    active = p.active[row]
    if p.mixing is Mixing.SINGLE:
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

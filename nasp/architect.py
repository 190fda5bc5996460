"""``Architect``: the proximal update of the architecture values (REFERENCE §1).

Usage (the core contract, see README):

    arch = Architect([alpha], lr=3e-4)
    with arch.discrete():          # every alpha now holds prox_C1(alpha)
        loss = validation_loss(model, batch) + arch.penalty()
        loss.backward()            # gradient at the discrete point
    arch.step()                    # Adam on the continuous values, then clamp to [0, 1]
    arch.zero_grad()
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from . import prox
from .mixing import Selection

Discretize = Callable[[Tensor], Tensor]
Regularizer = Callable[[Sequence[Tensor]], Tensor]


@contextmanager
def assigned(params: Sequence[nn.Parameter], values: Sequence[Tensor]) -> Iterator[None]:
    """Temporarily hold ``values`` in ``params``; the previous values come back on exit, while
    any ``.grad`` computed inside stays."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved):
                p.copy_(v)


class Architect:
    """Continuous architecture values kept feasible by proximal steps.

    Args:
        alphas: architecture tensors (leaf parameters), each rows x ops.
        lr, betas, weight_decay: Adam settings (the authors' defaults).
        discretize: prox onto C1; one callable for every alpha, one per alpha (default
            ``prox.onehot``; cells use ``prox.CellProjection``), or a ``prox.Projection`` of all
            alphas at once (``prox.BudgetedCellProjection``: cells under a cost budget).
        regularizer: ``R(alphas) -> scalar``, evaluated by ``penalty()`` at the discrete point.
        eta: weight of the regularizer.
        extra_params: parameters stepped by the same optimizer but never projected or clamped.
        optimizer: a ready optimizer over ``alphas`` (+ extras) replacing the default Adam.
        bounds: the box of prox onto C2.
    """

    def __init__(
        self,
        alphas: Iterable[nn.Parameter],
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        discretize: Union[Discretize, Sequence[Discretize], prox.Projection] = prox.onehot,
        regularizer: Optional[Regularizer] = None,
        eta: float = 0.0,
        extra_params: Iterable[nn.Parameter] = (),
        optimizer: Optional[torch.optim.Optimizer] = None,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.alphas = list(alphas)
        if not self.alphas:
            raise ValueError("Architect needs at least one architecture tensor")
        self.extra_params = list(extra_params)
        if isinstance(discretize, prox.Projection):
            self.projection: prox.Projection = discretize
        elif callable(discretize):
            self.projection = prox.PerTensor([discretize] * len(self.alphas))
        else:
            discretizers = list(discretize)
            if len(discretizers) != len(self.alphas):
                raise ValueError(f"{len(discretizers)} discretizers for {len(self.alphas)} alphas")
            self.projection = prox.PerTensor(discretizers)
        self.regularizer = regularizer
        self.eta = float(eta)
        self.bounds = bounds
        if optimizer is None:
            groups = [{"params": self.alphas}]
            if self.extra_params:
                groups.append({"params": self.extra_params})
            optimizer = torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay)
        self.optimizer = optimizer
        self._inside = False
        #: inside ``discrete()``: the host-side non-zero entries of every projected alpha
        self.selection: Optional[Selection] = None
        #: the last ``discrete()``'s projection (host, device) and the alphas' version counters
        #: when it ended, for ``discrete(reuse=True)``
        self._last: Optional[tuple[tuple[int, ...], list[Tensor], list[Tensor]]] = None

    def parameters(self) -> list[nn.Parameter]:
        """Everything this architect steps: the alphas, then the extras."""
        return self.alphas + self.extra_params

    @torch.no_grad()
    def discrete_values(self) -> list[Tensor]:
        """prox_C1 of every alpha, without changing anything."""
        return self.projection([a.detach() for a in self.alphas])

    @torch.no_grad()
    def _project_on_host(self) -> tuple[list[Tensor], list[Tensor]]:
        """(projections on the host, the same on each alpha's device): one device-to-host copy
        per alpha (the alphas are tiny; the projection itself never syncs on the host)."""
        host = self.projection([a.detach().cpu() for a in self.alphas])
        return host, [h.to(a.device, a.dtype, non_blocking=True) for h, a in zip(host, self.alphas)]

    def _versions(self) -> tuple[int, ...]:
        return tuple(a._version for a in self.alphas)

    def forget(self) -> None:
        """Drop the projection that ``discrete(reuse=True)`` would take again (call it after
        writing the alphas in a way that their version counters do not see, such as a
        collective or ``.data``)."""
        self._last = None

    @contextmanager
    def discrete(self, reuse: bool = False) -> Iterator[list[Tensor]]:
        """Inside, every alpha holds its discrete projection; on exit the continuous values
        are restored and any gradient computed inside stays on them (the discrete-point gradient).
        ``self.selection`` holds the projection's non-zero entries on the host meanwhile (pass it
        to a mixing rule so that forward passes need no copy of their own).

        ``reuse``: take the last ``discrete()``'s projection again, without a device-to-host
        copy, if no alpha has been written since it ended (their version counters have not
        moved; ``step()``, ``load_state_dict()`` and any in-place op move them, ``forget()``
        drops it). NASP's architecture step reuses its last weight step's discrete point."""
        if self._inside:
            raise RuntimeError("Architect.discrete() is already active")
        last, self._last = self._last, None
        if reuse and last is not None and last[0] == self._versions():
            host, kept = last[1], last[2]
        else:
            host, kept = self._project_on_host()
        projected = [p.clone() for p in kept]  # the caller's copy; ``kept`` stays as projected
        self._inside = True
        self.selection = Selection(self.alphas, host)
        try:
            with assigned(self.alphas, projected):
                yield projected
            self._last = (self._versions(), host, kept)
        finally:
            self._inside = False
            self.selection = None

    def penalty(self) -> Tensor:
        """``eta * R(alphas)`` at the current values (call inside ``discrete()``); 0 without R."""
        if self.regularizer is None or self.eta == 0.0:
            return self.alphas[0].new_zeros(())
        return self.eta * self.regularizer(self.alphas)

    def backward(self, loss: Tensor) -> None:
        """Accumulate d loss / d (alphas, extras) into their ``.grad`` without computing the
        gradients of any other parameter (cheaper than ``loss.backward()``)."""
        params = self.parameters()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is None:
                continue
            p.grad = g.detach() if p.grad is None else p.grad + g

    def step(self) -> None:
        """Optimizer step on the continuous values, then prox onto C2 (clamp to ``bounds``)."""
        if self._inside:
            raise RuntimeError("call Architect.step() after leaving discrete()")
        self.optimizer.step()
        with torch.no_grad():
            for a in self.alphas:
                a.copy_(prox.box(a, *self.bounds))

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def chosen(self) -> list[Tensor]:
        """Per alpha, the selected op index of every row of the discrete projection
        (-1 for a row the projection drops, e.g. an edge outside a node's top-k)."""
        out = []
        for value in self.discrete_values():
            idx = value.argmax(dim=-1)
            idx[value.amax(dim=-1) <= 0] = -1
            out.append(idx.cpu())
        return out

    def state_dict(self) -> dict:
        return {
            "alphas": [a.detach().clone() for a in self.alphas],
            "optimizer": self.optimizer.state_dict(),
            "eta": self.eta,
        }

    def load_state_dict(self, state: dict) -> None:
        self.forget()
        if len(state["alphas"]) != len(self.alphas):
            raise ValueError(f"state holds {len(state['alphas'])} alphas, this architect {len(self.alphas)}")
        with torch.no_grad():
            for a, value in zip(self.alphas, state["alphas"]):
                if a.shape != value.shape:
                    raise ValueError(f"alpha of shape {tuple(value.shape)} does not fit {tuple(a.shape)}")
                a.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.eta = float(state.get("eta", self.eta))

"""DARTS (Liu et al., ICLR 2019) as baselines: softmax mixing of every op on every edge.

``darts`` is first order (architecture gradient at the current weights); ``darts2`` is second
order: the gradient of L_val(w - xi * dL_train/dw, alpha), with the Hessian-vector product
approximated by central finite differences, as in the DARTS paper.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from ..mixing import Softmax
from .base import SearchProblem, Strategy, arch_optimizer
from .registry import STRATEGIES


def _grads(loss: Tensor, params: list, *, retain_graph: bool = False) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@STRATEGIES.register("darts")
class DARTS(Strategy):
    """First-order DARTS: alternate an Adam step of the architecture on a validation batch and an
    SGD step of the weights on a training batch, both through the full softmax supernet. Its
    validation scores are the supernet's; it exports DARTS' softmax derivation of the alphas."""

    validates = "supernet"

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)

    def arch_gradients(self, train_batch: Any, valid_batch: Any) -> tuple[list[Tensor], Tensor]:
        loss = self.problem.loss(self.network, valid_batch)
        return _grads(loss, self.arch_params), loss.detach()

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.network.using(Softmax()):
            grads, arch_loss = self.arch_gradients(train_batch, valid_batch)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        self.arch_optimizer.step()
        train_loss = self.weight_step(train_batch, Softmax())
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        with self.network.using(Softmax()):
            yield

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        """DARTS' derivation from continuous alphas (softmax; top-k edges by probability)."""
        return self.network.derive(alphas)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])


@STRATEGIES.register("darts2")
class DARTSSecondOrder(DARTS):
    """Second-order DARTS: unrolled weight step of size xi (the weights' current learning rate),
    Hessian-vector product by central finite differences with radius 0.01 / ||grad||."""

    def arch_gradients(self, train_batch: Any, valid_batch: Any) -> tuple[list[Tensor], Tensor]:
        weights = [p for p in self.weight_params if p.requires_grad]
        xi = self.current_lr()
        backup = [w.detach().clone() for w in weights]

        grad_w = _grads(self.problem.loss(self.network, train_batch), weights)
        with torch.no_grad():
            torch._foreach_add_(weights, grad_w, alpha=-xi)
        val_loss = self.problem.loss(self.network, valid_batch)
        grads = _grads(val_loss, self.arch_params + weights)
        d_arch, d_w = grads[: len(self.arch_params)], grads[len(self.arch_params) :]

        radius = 0.01 / torch.cat([g.reshape(-1) for g in d_w]).norm().clamp_min(1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, g in zip(weights, backup, d_w):
                    w.copy_(b + sign * radius * g)
            hessian.append(_grads(self.problem.loss(self.network, train_batch), self.arch_params))
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
        total = [da - xi * (gp - gn) / (2 * radius) for da, gp, gn in zip(d_arch, *hessian)]
        return total, val_loss.detach()

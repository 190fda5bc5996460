"""SNAS (Xie et al., ICLR 2019) as a baseline: soft Gumbel-softmax samples, one level.

Every forward pass of the search draws, per row, a relaxed one-hot sample
``softmax((log_softmax(alpha) + g) / tau)`` (g Gumbel noise) and mixes every candidate with
its soft weight (GDAS' sibling: GDAS runs the hard sample, straight-through). Unlike DARTS and
GDAS, SNAS is single-level: the weights and the alphas descend the same loss on the same
training batch, each with its own optimizer (the weights' of the problem, Adam for the alphas).
The temperature decays exponentially from ``tau_max`` to ``tau_min`` over the search. The
exported (and validated) architecture is the network's discrete projection of the alphas.

Not reproduced: SNAS' resource constraint (its own cost term; NASP's ``eta`` and the hard
budgets are this framework's) and its credit-assignment analysis. This file is the whole
method: a mixing rule and a strategy, with no edit of the core.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..mixing import MixPlan
from .base import differentiating_only
from .gdas import GDAS, GumbelHard
from .registry import STRATEGIES


class GumbelSoft(GumbelHard):
    """A relaxed one-hot sample per row at temperature ``tau``; every candidate runs, weighted
    by its soft value (gradients reach every alpha through the softmax). The noise comes from
    ``generator`` on the host, as GDAS' (``GumbelHard``), so a run is reproducible and resumable."""

    name = "gumbel-soft"

    def plan(self, alpha: Tensor) -> MixPlan:
        gumbel = self.noise(alpha.shape).to(alpha.device, alpha.dtype)
        return MixPlan(torch.softmax((torch.log_softmax(alpha, dim=-1) + gumbel) / self.tau, dim=-1), None, False, self)


@STRATEGIES.register("snas")
class SNAS(GDAS):
    """GDAS' state and evaluation with SNAS' step: a soft sample, one loss on the training batch,
    a step of the weights and of the alphas on its gradients."""

    uses_valid_batch = False
    tau_max: float = 1.0
    tau_min: float = 0.03

    def begin_epoch(self, epoch: int) -> None:
        progress = epoch / max(1, self.epochs - 1)
        self.tau = self.tau_max * (self.tau_min / self.tau_max) ** progress

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        weights = [p for p in self.weight_params if p.requires_grad]
        params = weights + self.arch_params
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.mixing(GumbelSoft(self.tau, self.generator)), differentiating_only(self.network, params):
            loss = self.problem.loss(self.network, train_batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(self.arch_params, grads[len(weights):]):
            p.grad = g
        self.sync_gradients(self.arch_params, train_batch)
        loss = self.step_weights(weights, grads[: len(weights)], train_batch, loss.detach())
        self.arch_optimizer.step()
        return {"train_loss": loss}

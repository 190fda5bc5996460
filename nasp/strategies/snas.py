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

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor

from ..architect import assigned
from ..mixing import MixingRule, MixPlan, Selection, SinglePath
from .base import SearchProblem, Strategy, arch_optimizer, clip_grad_norm, differentiating_only
from .registry import STRATEGIES


class GumbelSoft(MixingRule):
    """A relaxed one-hot sample per row at temperature ``tau``; every candidate runs, weighted
    by its soft value (gradients reach every alpha through the softmax). The noise comes from
    ``generator`` on the host, so a run is reproducible and resumable."""

    name = "gumbel-soft"

    def __init__(self, tau: float, generator: torch.Generator) -> None:
        self.tau = float(tau)
        self.generator = generator

    def plan(self, alpha: Tensor) -> MixPlan:
        u = torch.rand(alpha.shape, generator=self.generator).clamp_(1e-10, 1.0 - 1e-10)
        gumbel = -torch.log(-torch.log(u)).to(alpha.device, alpha.dtype)
        return MixPlan(torch.softmax((torch.log_softmax(alpha, dim=-1) + gumbel) / self.tau, dim=-1), None, False, self)


@STRATEGIES.register("snas")
class SNAS(Strategy):
    """One step: a soft sample, one loss on the training batch, a step of the weights and of the
    alphas on its gradients."""

    uses_valid_batch = False
    tau_max: float = 1.0
    tau_min: float = 0.03

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        self.tau = self.tau_max

    def begin_epoch(self, epoch: int) -> None:
        progress = epoch / max(1, self.epochs - 1)
        self.tau = self.tau_max * (self.tau_min / self.tau_max) ** progress

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        weights = [p for p in self.weight_params if p.requires_grad]
        params = weights + self.arch_params
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.mixing(GumbelSoft(self.tau, self.generator)), differentiating_only(self.network, params):
            loss = self.problem.loss(self.network, train_batch)
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            p.grad = g
        loss = self.sync_gradients(params, train_batch, loss.detach())
        if self.problem.grad_clip:
            clip_grad_norm([p for p in weights if p.grad is not None], self.problem.grad_clip)
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            self.weight_optimizer.step()
        self.arch_optimizer.step()
        return {"train_loss": loss}

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        alphas, values = self.network.arch_parameters(), self.network.project()
        with assigned(alphas, values), self.network.using(SinglePath(Selection(alphas, values))):
            yield

    def describe(self) -> dict:
        return {"tau": round(self.tau, 6)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.generator.set_state(state["generator"])

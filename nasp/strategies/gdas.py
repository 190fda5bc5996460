"""GDAS (Dong & Yang, CVPR 2019) as a baseline: one op per edge sampled by Gumbel-softmax.

Every forward pass samples, per row, one candidate from ``softmax((log_softmax(alpha) + g) / tau)``
(g Gumbel noise) and runs only that candidate, weighted by the straight-through value
``hard - soft.detach() + soft`` (1 in the forward pass, the soft probability's gradient in the
backward pass), so every entry of the row gets a gradient from a single-path forward. The
temperature falls linearly from ``tau_max`` to ``tau_min`` over the search. The exported (and
validated) architecture is the network's discrete projection of the alphas, as for NASP.

This file is the whole method: a mixing rule and a strategy, with no edit of the core.
"""
from __future__ import annotations

from typing import Any, ContextManager

import torch
from torch import Tensor

from ..mixing import MixingRule, MixPlan
from .base import SearchProblem, Strategy, arch_optimizer, differentiating_only
from .registry import STRATEGIES


class GumbelHard(MixingRule):
    """Sample one candidate per row (Gumbel-max at temperature ``tau``); straight-through weights.

    The noise comes from ``generator`` on the host, so a run is reproducible and resumable.
    """

    name = "gumbel-hard"

    def __init__(self, tau: float, generator: torch.Generator) -> None:
        self.tau = float(tau)
        self.generator = generator

    def noise(self, shape: torch.Size) -> Tensor:
        """Standard Gumbel noise of ``shape`` on the host, from the rule's generator."""
        u = torch.rand(shape, generator=self.generator).clamp_(1e-10, 1.0 - 1e-10)
        return -torch.log(-torch.log(u))

    def plan(self, alpha: Tensor) -> MixPlan:
        gumbel = self.noise(alpha.shape)
        # the choice is made on the host: one small device-to-host copy of alpha per forward
        host_logits = torch.log_softmax(alpha.detach().float().cpu(), dim=-1) + gumbel
        index = host_logits.argmax(dim=-1)
        soft = torch.softmax((torch.log_softmax(alpha, dim=-1) + gumbel.to(alpha.device, alpha.dtype)) / self.tau, dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, index.to(alpha.device).unsqueeze(-1), 1.0)
        weights = hard - soft.detach() + soft
        return MixPlan(weights, [[int(i)] for i in index.tolist()], False, self)


@STRATEGIES.register("gdas")
class GDAS(Strategy):
    """Alternate an Adam step of the (unconstrained) alphas on a validation batch and an SGD step
    of the weights on a training batch, each through a freshly sampled single-path cell."""

    tau_max: float = 10.0
    tau_min: float = 0.1

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        self.tau = self.tau_max

    def begin_epoch(self, epoch: int) -> None:
        progress = epoch / max(1, self.epochs - 1)
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * progress

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        rule = GumbelHard(self.tau, self.generator)
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.network.using(rule), differentiating_only(self.network, self.arch_params):
            arch_loss = self.problem.loss(self.network, valid_batch)
        grads = torch.autograd.grad(arch_loss, self.arch_params, allow_unused=True)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        arch_loss = self.sync_gradients(self.arch_params, valid_batch, arch_loss.detach())
        self.arch_optimizer.step()
        train_loss = self.weight_step(train_batch, rule)
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    def _eval_architecture(self) -> ContextManager:
        return self.evaluating()  # the projection's non-zero entries read once for the whole evaluation

    def describe(self) -> dict:
        return {"tau": round(self.tau, 6)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.generator.set_state(state["generator"])

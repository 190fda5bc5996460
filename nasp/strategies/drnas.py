"""DrNAS (Chen et al., ICLR 2021) as a baseline: a Dirichlet distribution over each row.

Each row's mixing weights are a sample of ``Dirichlet(beta)``, ``beta = elu(alpha) + 1`` (the
concentration, positive), drawn with pathwise (reparameterized) gradients, so the alphas learn
through the sample; every candidate runs, weighted by it. The architecture step (Adam, on a
validation batch, alternating with the weight step on a training batch as first-order DARTS)
minimises the validation loss plus ``REG`` times the KL divergence from ``Dirichlet(beta)`` to
the uniform ``Dirichlet(1)`` (the paper's regularizer towards its prior, which keeps the
distribution from collapsing early). The exported (and validated) architecture is the
network's projection of the Dirichlet mean ``beta / sum(beta)``.

Not reproduced: DrNAS' progressive learning (partial channels with a growing share and a
pruned space), a network-level change of the DARTS cell.
"""
from __future__ import annotations

from typing import Any, ContextManager, Sequence

import torch
from torch import Tensor
from torch.distributions import Dirichlet

from ..mixing import MixingRule, MixPlan
from .base import SearchProblem, Strategy, arch_optimizer, differentiating_only
from .registry import STRATEGIES

REG = 1e-3
"""Weight of the KL term towards the uniform Dirichlet prior in the architecture loss."""


def concentration(alpha: Tensor) -> Tensor:
    """``elu(alpha) + 1``: a positive concentration, the identity plus one for alpha >= 0."""
    return torch.nn.functional.elu(alpha) + 1.0


class DirichletSample(MixingRule):
    """Every candidate, weighted by a reparameterized sample of ``Dirichlet(elu(alpha) + 1)``."""

    name = "dirichlet"

    def plan(self, alpha: Tensor) -> MixPlan:
        return MixPlan(Dirichlet(concentration(alpha)).rsample(), None, False, self)


@STRATEGIES.register("drnas")
class DrNAS(Strategy):
    """Alternate an Adam step of the alphas (validation loss + KL to the prior, through a
    Dirichlet sample) and a step of the weights (training loss, through another sample)."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        self.arch_optimizer.zero_grad(set_to_none=True)
        alphas = self.network.arch_parameters()
        with self.network.using(DirichletSample()), differentiating_only(self.network, self.arch_params):
            arch_loss = self.problem.loss(self.network, valid_batch)
        prior = sum(torch.distributions.kl_divergence(Dirichlet(concentration(a)), Dirichlet(torch.ones_like(a))).sum()
                    for a in alphas)
        grads = torch.autograd.grad(arch_loss + REG * prior, self.arch_params, allow_unused=True)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        arch_loss = self.sync_gradients(self.arch_params, valid_batch, arch_loss.detach())
        self.arch_optimizer.step()
        train_loss = self.weight_step(train_batch, DirichletSample())
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """The Dirichlet mean of each row: what the architecture is read from."""
        return [concentration(a.detach().float().cpu()) / concentration(a.detach().float().cpu()).sum(-1, keepdim=True)
                for a in alphas]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        return self.network.export(self.project_values(alphas), alphas)

    def _eval_architecture(self) -> ContextManager:
        return self.evaluating(self.project_values(self.network.arch_parameters()))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])

"""ASAP (Noy et al., 2019) as a baseline: anneal the softmax temperature and prune weak ops, so
the supernet shrinks to one network without a final jump.

Each row mixes its remaining candidates with ``softmax(alpha / T)``; pruned candidates have
weight 0 and do not run. Steps alternate as first-order DARTS (Adam on the alphas on a
validation batch, the weights on a training batch). After every architecture step a candidate
whose weight falls under the threshold ``theta`` is pruned (the strongest of a row never is).
Over the search the temperature falls exponentially from ``T_START`` to ``T_END`` and the
threshold rises exponentially from ``THETA_START / K`` to ``THETA_END`` (K candidates of the
row), so by the end at most one candidate per row can stay above it. The exported (and
validated) architecture is the network's projection of the remaining weights.

The schedules' constants are ours (the paper's depend on its step counts); the exponential form
of both is the paper's.
"""
from __future__ import annotations

from typing import Any, ContextManager, Sequence

import torch
from torch import Tensor

from ..mixing import MixingRule, MixPlan
from .base import SearchProblem, Strategy, arch_optimizer, differentiating_only
from .registry import STRATEGIES

T_START, T_END = 1.0, 0.05
THETA_START, THETA_END = 0.25, 0.5


def annealed(alpha: Tensor, alive: Tensor, temperature: float) -> Tensor:
    """Per row the softmax of ``alpha / temperature`` over the ``alive`` candidates (0 elsewhere)."""
    logits = torch.where(alive.to(alpha.device), alpha / temperature, torch.full_like(alpha, -torch.inf))
    return torch.softmax(logits, dim=-1)


class AnnealedPruned(MixingRule):
    """The remaining candidates of each row, weighted by the annealed softmax."""

    name = "annealed-pruned"

    def __init__(self, alive: dict[int, Tensor], temperature: float) -> None:
        self.alive, self.temperature = alive, float(temperature)

    def plan(self, alpha: Tensor) -> MixPlan:
        alive = self.alive.get(id(alpha))
        if alive is None:
            alive = torch.ones(alpha.shape, dtype=torch.bool)
        rows = [[k for k, on in enumerate(row) if on] for row in alive.tolist()]
        return MixPlan(annealed(alpha, alive, self.temperature), rows, False, self)


@STRATEGIES.register("asap")
class ASAP(Strategy):
    """DARTS' first-order alternation with an annealed, pruned softmax."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.arch_params = self.network.arch_parameters() + self.network.arch_extra_parameters()
        self.arch_optimizer = arch_optimizer(problem, self.arch_params)
        self.alive = [torch.ones(a.shape, dtype=torch.bool) for a in self.network.arch_parameters()]
        self.temperature, self.progress = T_START, 0.0

    def begin_epoch(self, epoch: int) -> None:
        self.progress = epoch / max(1, self.epochs - 1)
        self.temperature = T_START * (T_END / T_START) ** self.progress

    def threshold(self, candidates: int) -> float:
        start = THETA_START / candidates
        return start * (THETA_END / start) ** self.progress

    def _rule(self) -> AnnealedPruned:
        return AnnealedPruned({id(a): m for a, m in zip(self.network.arch_parameters(), self.alive)}, self.temperature)

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        self.arch_optimizer.zero_grad(set_to_none=True)
        with self.network.using(self._rule()), differentiating_only(self.network, self.arch_params):
            arch_loss = self.problem.loss(self.network, valid_batch)
        for p, g in zip(self.arch_params, torch.autograd.grad(arch_loss, self.arch_params, allow_unused=True)):
            p.grad = g
        arch_loss = self.sync_gradients(self.arch_params, valid_batch, arch_loss.detach())
        self.arch_optimizer.step()
        self._prune()
        train_loss = self.weight_step(train_batch, self._rule())
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    def _prune(self) -> None:
        """Drop the candidates under the threshold (never a row's strongest)."""
        for k, a in enumerate(self.network.arch_parameters()):
            weights = annealed(a.detach().float().cpu(), self.alive[k], self.temperature)
            strongest = torch.zeros_like(self.alive[k]).scatter_(-1, weights.argmax(-1, keepdim=True), True)
            self.alive[k] = self.alive[k] & ((weights >= self.threshold(a.shape[-1])) | strongest)

    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        return [annealed(a.detach().float().cpu(), m, self.temperature) for a, m in zip(alphas, self.alive)]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        return self.network.export(self.project_values(alphas), alphas)

    def _eval_architecture(self) -> ContextManager:
        return self.evaluating(self.project_values(self.network.arch_parameters()))

    def describe(self) -> dict:
        alive = sum(int(m.sum()) for m in self.alive)
        return {"temperature": round(self.temperature, 6), "alive": alive}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(), "alive": self.alive}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.alive = [m.clone().bool() for m in state["alive"]]

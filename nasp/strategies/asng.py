"""ASNG (Akimoto et al., ICML 2019): adaptive stochastic natural gradient over a categorical
distribution of architectures, as a baseline.

The architecture is a distribution: per row, category probabilities theta (held in the
network's alphas, so the export is the most likely architecture, ``project(theta)``). Each step
samples ``LAMBDA`` = 2 architectures (Gumbel-max on log theta, through the network's projection,
so cells keep their structure and budgets hold), trains the shared weights on the training
batch with the gradient averaged over the samples (single path: only sampled ops train), and
ranks the samples by their loss on the validation batch: utility +1 for the better, -1 for the
worse (0 each on a tie). theta moves along the natural gradient
``G = mean_i u_i (onehot(x_i) - theta)`` by a step normalised in the Fisher metric, whose
length adapts (the paper's Algorithm 1: an accumulated normalised gradient ``s`` compared with
its expected length under random utilities, ``gamma``). theta is clipped from below to
``1 / (D (K - 1))`` (D rows, K categories) so that no candidate becomes impossible.

Differences from the paper's code: the utilities are scored on a validation batch (the
framework's bilevel convention; the paper uses the training batch), and rows of one candidate
are left out of the distribution.
"""
from __future__ import annotations

import math
from typing import Any, ContextManager

import torch
from torch import Tensor

from .base import SearchProblem, Strategy, differentiating_only, sample_categorical
from .registry import STRATEGIES

LAMBDA = 2
"""Architectures sampled per step (the paper's default)."""
ALPHA = 1.5
"""The threshold of the step-size adaptation (the paper's default)."""


@STRATEGIES.register("asng")
class ASNG(Strategy):
    """Options: ``seed`` (the sampling). The initial step size is the paper's (delta 1); the
    architecture optimizer's settings (``arch_lr``) are not used."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        alphas = self.network.arch_parameters()
        theta = [torch.full_like(a.detach(), 1.0 / a.shape[-1]) for a in alphas]
        self.network.set_architecture(theta)
        self.dims = sum(a.shape[0] * (a.shape[-1] - 1) for a in alphas)  # D(K - 1) summed: the free parameters
        self.rows = sum(a.shape[0] for a in alphas if a.shape[-1] > 1)
        self.delta = 1.0  # the initial step size
        self.Delta = 1.0  # its adaptation factor: the step is delta / Delta
        self.gamma = 0.0
        self.s = torch.zeros(max(1, self.dims), dtype=torch.float64)

    # sampling -------------------------------------------------------------------------------
    def _sample(self) -> tuple[list[Tensor], list[Tensor]]:
        """(values to run, one-hot category per row) drawn from theta."""
        theta = [a.detach().float().cpu() for a in self.network.arch_parameters()]
        return sample_categorical(self.network, [torch.log(t.clamp_min(1e-30)) for t in theta], self.generator)

    # the step -------------------------------------------------------------------------------
    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        samples = [self._sample() for _ in range(LAMBDA)]
        params = [p for p in self.weight_params if p.requires_grad]
        total: list = [None] * len(params)
        losses = []
        for values, _ in samples:
            with self.evaluating(values), differentiating_only(self.network, params):
                loss = self.problem.loss(self.network, train_batch)
                grads = torch.autograd.grad(loss, params, allow_unused=True)  # before the alphas are restored
            for k, g in enumerate(grads):
                total[k] = g if total[k] is None else total[k] if g is None else total[k] + g
            losses.append(loss.detach())
        averaged = [None if g is None else g / LAMBDA for g in total]
        train_loss = self.step_weights(params, averaged, train_batch, sum(losses) / LAMBDA)
        with torch.no_grad():
            scored = []
            for values, _ in samples:
                with self.evaluating(values):
                    scored.append(self.problem.loss(self.network, valid_batch).detach().float())
            scored = torch.stack(scored)
        if self.world.parallel:  # every rank ranks the samples by the whole batch's losses
            scored = self.synced([scored], [scored], valid_batch)[0]
        self._update([chosen for _, chosen in samples], scored.cpu().tolist())
        return {"train_loss": train_loss, "arch_loss": scored.mean()}

    def _update(self, chosen: list[list[Tensor]], losses: list[float]) -> None:
        """One adaptive natural-gradient step of theta from the samples' losses (lower is better)."""
        if self.dims == 0:
            return
        order = sorted(range(LAMBDA), key=lambda i: losses[i])
        utility = [0.0] * LAMBDA
        if losses[order[0]] < losses[order[-1]]:
            utility[order[0]], utility[order[-1]] = 1.0, -1.0
        alphas = self.network.arch_parameters()
        theta = [a.detach().double().cpu() for a in alphas]
        grad = [sum(u * (c[i].double() - t) for u, c in zip(utility, chosen)) / LAMBDA for i, t in enumerate(theta)]
        fisher = []  # the natural gradient in coordinates where the Fisher metric is the identity
        for t, g in zip(theta, grad):
            if t.shape[-1] < 2:
                continue
            head, last, gh = t[:, :-1], t[:, -1:], g[:, :-1]
            fisher.append((gh / head.sqrt() + head.sqrt() * gh.sum(-1, keepdim=True) / (last + last.sqrt())).reshape(-1))
        s_vec = torch.cat(fisher)
        norm = float(s_vec.norm()) + 1e-8
        step = self.delta / self.Delta
        beta = step / math.sqrt(self.dims)
        new = [t + (step / norm) * g for t, g in zip(theta, grad)]
        self.s = (1 - beta) * self.s + math.sqrt(beta * (2 - beta)) * s_vec / norm
        self.gamma = (1 - beta) ** 2 * self.gamma + beta * (2 - beta)
        self.Delta *= math.exp(beta * (self.gamma - float(self.s @ self.s) / ALPHA))
        self.network.set_architecture([self._clipped(t).to(a.device, a.dtype) for t, a in zip(new, alphas)])

    def _clipped(self, theta: Tensor) -> Tensor:
        """Rows kept in the simplex with every probability at least 1 / (D (K - 1))."""
        k = theta.shape[-1]
        if k < 2:
            return torch.ones_like(theta)
        low = min(1.0 / (self.rows * (k - 1)), 1.0 / k)
        out = theta.clamp(min=0) / theta.clamp(min=0).sum(-1, keepdim=True).clamp_min(1e-30)
        floored = torch.zeros_like(out, dtype=torch.bool)
        for _ in range(k):  # raise the entries under the floor to it, scale the others into the rest
            floored = floored | (out < low)
            rest = torch.where(floored, torch.zeros_like(out), out)
            free = 1.0 - low * floored.sum(-1, keepdim=True)
            out = torch.where(floored, torch.full_like(out, low), rest * free / rest.sum(-1, keepdim=True).clamp_min(1e-30))
            if not (out < low - 1e-12).any():
                break
        return out

    # evaluation and export --------------------------------------------------------------------
    def _eval_architecture(self) -> ContextManager:
        return self.evaluating()

    def describe(self) -> dict:
        return {"step": round(self.delta / self.Delta, 6)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "Delta": self.Delta, "gamma": self.gamma,
                "s": self.s}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.Delta, self.gamma, self.s = float(state["Delta"]), float(state["gamma"]), state["s"]

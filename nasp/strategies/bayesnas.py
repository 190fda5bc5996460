"""BayesNAS (Zhou et al., ICML 2019) as a baseline: a sparse (automatic relevance
determination) prior on the architecture weights, hyperparameters from a Laplace approximation,
pruning by the posterior.

Every candidate is weighted by a *switch* ``w`` (the network's alphas, linear, no softmax;
they start at 1/K for the K candidates of a row, the uniform mix that DARTS starts from). Each
switch has a zero-mean Gaussian prior of variance ``gamma`` (its relevance). Maximising the
posterior over the switches with the gammas integrated out as in sparse Bayesian learning is a
reweighted L1 problem: the architecture step minimises the validation loss plus
``LAMBDA * sum omega * |w|`` (the paper's cost), whose weights ``omega`` come from the
previous gammas and the curvature of the loss. Steps alternate as first-order DARTS: Adam (the
problem's architecture rate; no weight decay on the switches, the prior replaces it) on the
switches and any architecture extras on a validation batch, then the weights on a training
batch, through every remaining candidate weighted by its switch.

After every epoch the hyperparameters take the paper's update (its Algorithm 1; ``h = H / LAMBDA``
with ``H`` the curvature of the loss in the switch)::

    c     = 1 / (1 / gamma + h)            # the Laplace posterior variance of the switch
    omega = sqrt(1 / gamma - c / gamma^2)  # = sqrt(h / (1 + gamma h)), the next penalty weight
    gamma = |w| / omega                    # the next prior variance

Pruning reads the Laplace posterior ``N(w, c)`` of each switch: its relevance is
``|w| / sqrt(c)``, how many posterior standard deviations the switch lies from zero (before the
first update ``c`` is the prior's, 1: the relevance is ``|w|``). A candidate whose relevance
falls under ``PRUNE`` times the largest of its row is pruned: its switch is set to 0 and it no
longer runs (the most relevant never is). An op that does not change the loss (curvature 0)
keeps its prior variance, so its relevance goes to 0 with the growing gamma; the relevance does
not change when the weights after a switch grow while the switch shrinks (where ``c ~ 1 / h``). The
search ends with one candidate per row: after the last epoch each row keeps its most relevant.
The architecture evaluated each epoch and exported is the network's projection of the
relevances over the remaining candidates (cells keep the edges whose chosen candidate is most
relevant), each chosen candidate run with its switch as weight. Under a hard budget the
projection may take a pruned candidate (relevance 0) on an edge where no remaining one fits:
the budget is hard, the pruning is not.

The approximation of the Hessian: its diagonal, by the empirical Fisher of the architecture
steps' gradients, ``H ~ B * mean over the epoch's steps of g^2`` (``g`` the gradient of a
validation batch's mean loss in the switch, ``B`` its examples), first-order and free (the
gradients are those of the steps); where the mean gradient is small (near the mode, where the
Laplace approximation is taken) it estimates the per-example Fisher ``E[(dl/dw)^2]``, which is
the Gauss-Newton curvature of a log-likelihood. The paper propagates a layer-wise Hessian
through its own network by hand.

Differences from the paper: the switches learn on validation batches (the framework's bilevel
convention; the paper trains them with the weights on the training data); one level of the
prior (the paper's hierarchical prior also has a parent switch per edge, whose relevance caps
its ops'; here which edges a cell keeps is left to the network's projection, as for every
strategy of the framework); pruning relative to the row's most relevant candidate instead of
an absolute threshold (the scale of the switches trades against that of the weights after them).
Linear switches on strongly correlated candidates separate slowly: on the feature-transform
example (examples/feature_transform.py) bayesnas needs 200 epochs where DARTS needs 30.
"""
from __future__ import annotations

from typing import Any, ContextManager, Sequence

import torch
from torch import Tensor

from ..mixing import MixingRule, MixPlan
from .base import SearchProblem, Strategy, differentiating_only
from .registry import STRATEGIES

LAMBDA = 0.01
"""Weight of the sparse prior's penalty (the paper's lambda: 0.005-0.01 on CIFAR-10)."""
PRUNE = 0.1
"""A candidate whose relevance falls under this share of its row's largest is pruned."""
_EPS = 1e-12


class Switches(MixingRule):
    """The remaining candidates of each row, each weighted by its switch (gradients reach them)."""

    name = "switches"

    def __init__(self, alive: dict[int, Tensor]) -> None:
        self.alive = alive

    def plan(self, alpha: Tensor) -> MixPlan:
        alive = self.alive.get(id(alpha))
        if alive is None:
            alive = torch.ones(alpha.shape, dtype=torch.bool)
        rows = [[k for k, on in enumerate(row) if on] for row in alive.tolist()]
        return MixPlan(alpha, rows, False, self)


@STRATEGIES.register("bayesnas")
class BayesNAS(Strategy):
    """Switch-weighted supernet, a reweighted-L1 architecture step, an ARD update and pruning
    after every epoch (module docstring). Reads no option."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        alphas = self.network.arch_parameters()
        self.network.set_architecture([torch.full_like(a.detach(), 1.0 / a.shape[-1]) for a in alphas])
        extras = self.network.arch_extra_parameters()
        self.arch_params = alphas + extras
        groups = [{"params": alphas, "weight_decay": 0.0}]  # the prior replaces weight decay on the switches
        if extras:
            groups.append({"params": extras, "weight_decay": problem.arch_weight_decay})
        self.arch_optimizer = torch.optim.Adam(groups, lr=problem.arch_lr, betas=problem.arch_betas)
        self.alive = [torch.ones(a.shape, dtype=torch.bool) for a in alphas]
        self.gamma = [torch.ones(a.shape, dtype=torch.float64) for a in alphas]  # prior variances
        self.omega = [torch.zeros(a.shape, dtype=torch.float64) for a in alphas]  # no data yet: no penalty
        self.cov = [torch.ones(a.shape, dtype=torch.float64) for a in alphas]  # posterior variances (the prior's for now)
        self.fisher = [torch.zeros_like(a.detach()) for a in alphas]  # summed B g^2 of this epoch, on the device
        self.fisher_steps = 0
        self._device_state()

    def _device_state(self) -> None:
        """The penalty weights and masks on the alphas' devices (after an update or a load)."""
        alphas = self.network.arch_parameters()
        self._omega = [o.to(a.device, a.dtype) for o, a in zip(self.omega, alphas)]
        self._mask = [m.to(a.device, a.dtype) for m, a in zip(self.alive, alphas)]

    def _rule(self) -> Switches:
        return Switches({id(a): m for a, m in zip(self.network.arch_parameters(), self.alive)})

    # the step -------------------------------------------------------------------------------
    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        self.arch_optimizer.zero_grad(set_to_none=True)
        alphas = self.network.arch_parameters()
        with self.network.using(self._rule()), differentiating_only(self.network, self.arch_params):
            arch_loss = self.problem.loss(self.network, valid_batch)
        for p, g in zip(self.arch_params, torch.autograd.grad(arch_loss, self.arch_params, allow_unused=True)):
            p.grad = g
        arch_loss = self.sync_gradients(self.arch_params, valid_batch, arch_loss.detach())
        examples = self.problem.examples(valid_batch) * self.world.size
        with torch.no_grad():
            for k, a in enumerate(alphas):
                if a.grad is None:
                    a.grad = torch.zeros_like(a)
                self.fisher[k].add_(a.grad.square(), alpha=float(examples))
                a.grad.add_(LAMBDA * self._omega[k] * torch.sign(a)).mul_(self._mask[k])
        self.fisher_steps += 1
        self.arch_optimizer.step()
        with torch.no_grad():
            for a, m in zip(alphas, self._mask):
                a.mul_(m)  # a pruned switch stays 0 (Adam's momentum would move it)
        train_loss = self.weight_step(train_batch, self._rule())
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().end_epoch(epoch, metrics)
        self.update()
        self.prune(final=epoch >= self.epochs - 1)

    def update(self) -> None:
        """The ARD update of every remaining switch's gamma and omega from this epoch's curvature."""
        if self.fisher_steps == 0:
            return
        for k, a in enumerate(self.network.arch_parameters()):
            alive = self.alive[k]
            h = (self.fisher[k].double().cpu() / self.fisher_steps / LAMBDA).clamp_min(0.0)
            gamma = self.gamma[k].clamp_min(_EPS)
            c = 1.0 / (1.0 / gamma + h)
            omega = (1.0 / gamma - c / gamma.square()).abs().sqrt()
            w = a.detach().double().cpu().abs()
            self.cov[k] = c
            self.omega[k] = torch.where(alive, omega, torch.zeros_like(omega))
            self.gamma[k] = torch.where(alive, w / omega.clamp_min(_EPS), torch.zeros_like(w))
            self.fisher[k].zero_()
        self.fisher_steps = 0
        self._device_state()

    def relevance(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """Per candidate ``|w| / sqrt(c)`` (the posterior mean in posterior standard deviations;
        host, float64), 0 for the pruned."""
        return [torch.where(m, a.detach().double().cpu().abs() / c.clamp_min(_EPS).sqrt(), torch.zeros(a.shape, dtype=torch.float64))
                for a, m, c in zip(alphas, self.alive, self.cov)]

    def prune(self, final: bool = False) -> None:
        """Drop the candidates whose relevance is under ``PRUNE`` times their row's largest
        (``final``: all but the largest); a row's most relevant always stays."""
        alphas = self.network.arch_parameters()
        for k, r in enumerate(self.relevance(alphas)):
            r = torch.where(self.alive[k], r, torch.full_like(r, -1.0))
            largest = torch.zeros_like(self.alive[k]).scatter_(-1, r.argmax(-1, keepdim=True), True)
            kept = largest if final else self.alive[k] & (r >= PRUNE * r.amax(-1, keepdim=True))
            self.alive[k] = kept | largest
        self._device_state()
        with torch.no_grad():
            for a, m in zip(alphas, self._mask):
                a.mul_(m)

    # evaluation and export --------------------------------------------------------------------
    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """The relevance of the remaining candidates (0 for the pruned; a tiny positive floor
        on the others, so that a row never reads as dropped)."""
        return [torch.where(m, r + _EPS, r).float() for r, m in zip(self.relevance(alphas), self.alive)]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        return self.network.export(self.project_values(alphas), alphas)

    def _eval_architecture(self) -> ContextManager:
        """The projected architecture, each chosen candidate weighted by its switch."""
        alphas = self.network.arch_parameters()
        chosen = self.project_values(alphas)
        return self.evaluating([c * torch.where(a.detach() != 0, a.detach(), torch.ones_like(a)) for c, a in zip(chosen, alphas)])

    def describe(self) -> dict:
        return {"alive": sum(int(m.sum()) for m in self.alive)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(), "alive": self.alive,
                "gamma": self.gamma, "omega": self.omega, "cov": self.cov, "fisher": [f.cpu() for f in self.fisher],
                "fisher_steps": self.fisher_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        alphas = self.network.arch_parameters()
        self.alive = [m.clone().bool() for m in state["alive"]]
        self.gamma = [g.clone().double() for g in state["gamma"]]
        self.omega = [o.clone().double() for o in state["omega"]]
        self.cov = [c.clone().double() for c in state["cov"]]
        self.fisher = [f.to(a.device, a.dtype) for f, a in zip(state["fisher"], alphas)]
        self.fisher_steps = int(state["fisher_steps"])
        self._device_state()

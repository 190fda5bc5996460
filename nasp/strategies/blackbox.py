"""Black-box baselines that train every candidate standalone (the SIF paper's AutoML
comparators): REINFORCE and TPE.

Both are ``RandomSearch`` with another proposal: the epoch budget is split between
``candidates`` architectures, each trained from scratch for its share and scored on
validation; the best is kept. Their cost is counted in trainings (``candidates``) and time,
beside the one-shot methods that share weights.

* ``reinforce``: a controller of per-row categorical logits (the alphas' shapes), sampled by
  Gumbel-max through the network's projection; after each candidate the logits take a
  REINFORCE step ``LR * advantage * (onehot - softmax(logits))``, the advantage being the
  reward (the validation metric, negated where lower is better) minus a moving-average baseline,
  divided by the rewards' running scale. (The SIF paper's controller is an RNN; per-row logits
  are the same policy class without weight sharing between rows.)
* ``tpe``: Optuna's ``TPESampler`` (Bergstra et al. 2011) proposes one category per row (and,
  for tensors of several rows such as cells, a strength per row that decides which edges the
  projection keeps). Each proposal comes from a sampler seeded by (seed, candidate) over the
  trials finished so far, so a resumed search proposes exactly what an uninterrupted one would.
  Optuna is an optional extra: ``pip install optuna`` (or ``.[tpe]``).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from ..errors import NaspError
from .base import SearchProblem, sample_categorical
from .random_search import RandomSearch
from .registry import STRATEGIES

LR = 0.5
"""REINFORCE's step on the controller's logits."""
BASELINE_DECAY = 0.7
"""Weight of the past in REINFORCE's moving-average baseline (and reward scale)."""


@STRATEGIES.register("reinforce")
class Reinforce(RandomSearch):
    """Random search whose proposals follow a policy learned by REINFORCE."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.logits = [torch.zeros(a.shape, dtype=torch.float64) for a in self.network.arch_parameters()]
        self.chosen: Optional[list[Tensor]] = None
        self.baseline: Optional[float] = None
        self.scale: Optional[float] = None

    def propose(self, index: int) -> list[Tensor]:
        values, self.chosen = sample_categorical(self.network, [torch.log_softmax(lg, -1) for lg in self.logits], self.generator)
        return values

    def observe(self, architecture: list[Tensor], score: float) -> None:
        reward = score if self.problem.higher_is_better else -score
        if self.baseline is None:
            self.baseline, self.scale = reward, 0.0
        advantage = reward - self.baseline
        self.scale = BASELINE_DECAY * self.scale + (1 - BASELINE_DECAY) * abs(advantage)
        if self.chosen is not None and self.scale > 0:
            step = LR * advantage / self.scale
            self.logits = [lg + step * (c.double() - torch.softmax(lg, -1)) for lg, c in zip(self.logits, self.chosen)]
        self.baseline = BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * reward

    def describe(self) -> dict:
        return {**super().describe(), **({"baseline": round(self.baseline, 6)} if self.baseline is not None else {})}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "logits": self.logits, "chosen": self.chosen, "baseline": self.baseline,
                "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.logits, self.chosen = list(state["logits"]), state["chosen"]
        self.baseline, self.scale = state["baseline"], state["scale"]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise NaspError("--strategy tpe needs Optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@STRATEGIES.register("tpe")
class TPE(RandomSearch):
    """Random search whose proposals come from Optuna's TPE over the finished candidates."""

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        self.optuna = _optuna()
        super().__init__(problem, epochs)
        self.trials: list[dict] = []  # {"params": ..., "score": ...} of every finished candidate
        self.pending: Optional[dict] = None

    def _distributions(self) -> dict[str, Any]:
        dist = self.optuna.distributions
        out: dict[str, Any] = {}
        for t, a in enumerate(self.network.arch_parameters()):
            for r in range(a.shape[0]):
                out[f"t{t}r{r}"] = dist.CategoricalDistribution(list(range(a.shape[-1])))
                if a.shape[0] > 1:
                    out[f"t{t}r{r}w"] = dist.FloatDistribution(0.0, 1.0)
        return out

    def propose(self, index: int) -> list[Tensor]:
        optuna, dists = self.optuna, self._distributions()
        sampler = optuna.samplers.TPESampler(seed=int(self.problem.options.seed) * 10_007 + index,
                                             n_startup_trials=max(2, min(10, self.num_candidates // 3)))
        study = optuna.create_study(direction="maximize" if self.problem.higher_is_better else "minimize", sampler=sampler)
        for trial in self.trials:
            study.add_trial(optuna.trial.create_trial(params=trial["params"], distributions=dists, value=trial["score"]))
        params = study.ask(dists).params
        self.pending = params
        scores = []
        for t, a in enumerate(self.network.arch_parameters()):
            s = torch.zeros(a.shape)
            for r in range(a.shape[0]):
                s[r, int(params[f"t{t}r{r}"])] = 1.0 + float(params.get(f"t{t}r{r}w", 0.0))
            scores.append(s)
        values = self.network.project(scores)
        return [v.to(dtype=a.dtype) for v, a in zip(values, self.network.arch_parameters())]

    def observe(self, architecture: list[Tensor], score: float) -> None:
        if self.pending is not None and math.isfinite(score):
            self.trials.append({"params": dict(self.pending), "score": float(score)})
        self.pending = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "trials": self.trials, "pending": self.pending}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.trials, self.pending = list(state["trials"]), state["pending"]

"""Random search with weight sharing (Li & Talwalkar, UAI 2019): the baseline of one-shot NAS.

Every training step samples one architecture uniformly (``sample_architecture``: under a hard
budget, uniformly among the cells that fit) and trains the shared weights on it, single path.
Then ``candidates`` architectures (default 100) are sampled and ranked on the shared weights
by their mean loss on held validation batches (the last ``RANK_BATCHES`` of the final epoch);
the best is kept, evaluated and exported. The epochs before the last validate the architecture
sampled last (a random one: the shared weights are what they train). The alphas never learn.

The paper ranks 1,000 samples on the shared weights and retrains the top ones from scratch;
here the retraining is the domains' own (``train --arch`` / SIF's retrain), of the best one.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

from ..architect import assigned
from ..mixing import Selection, SinglePath
from .base import SearchProblem, Strategy, sample_architecture
from .registry import STRATEGIES

RANK_BATCHES = 8
"""Validation batches of the last epoch that every sampled architecture is scored on."""


@STRATEGIES.register("rsws")
class RandomSearchWeightSharing(Strategy):
    """Options (``SearchProblem.options``): ``candidates`` ranked at the end (default 100), ``seed``."""

    reads = frozenset({"candidates"})
    selects_on_validation = True

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        if epochs < 1:
            raise ValueError("random search with weight sharing needs at least one epoch")
        super().__init__(problem, epochs)
        self.num_candidates = max(1, int(problem.options.get("candidates", 100)))
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        self.epoch = 0
        self.held: list[Any] = []  # the validation batches the candidates are ranked on
        self.ranking: Optional[list[dict]] = None
        self.best: Optional[list[Tensor]] = None

    def _weight_params(self) -> list[nn.Parameter]:
        return self.network.weights() + self.network.arch_extra_parameters()

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        sample = sample_architecture(self.network, self.generator)
        self.network.set_architecture(sample)  # the last sample is what an epoch before the last validates
        loss = self.weight_step(train_batch, SinglePath(Selection(self.network.arch_parameters(), sample)))
        if self.epoch == self.epochs - 1 and valid_batch is not None:
            self.held = (self.held + [valid_batch])[-RANK_BATCHES:]
        return {"train_loss": loss}

    @torch.no_grad()
    def _rank(self) -> None:
        """Score ``num_candidates`` samples on the held batches; the best becomes the architecture."""
        was_training = self.network.training
        self.network.eval()
        alphas, rows = self.network.arch_parameters(), []
        try:
            for k in range(self.num_candidates):
                sample = sample_architecture(self.network, self.generator)
                with assigned(alphas, sample), self.network.using(SinglePath(Selection(alphas, sample))):
                    losses = [float(self.problem.loss(self.network, batch)) for batch in self.held]
                rows.append({"candidate": k, "loss": sum(losses) / len(losses), "architecture": sample})
        finally:
            self.network.train(was_training)
        best = min(rows, key=lambda r: r["loss"])
        self.best = [a.clone() for a in best["architecture"]]
        self.network.set_architecture(self.best)
        self.ranking = [{"candidate": r["candidate"], "loss": r["loss"]} for r in rows]

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        if self.epoch == self.epochs - 1 and self.best is None and self.held:
            self._rank()
        with self.mixing(self.single_path()):
            yield

    def derive_alphas(self) -> list[Tensor]:
        return [a.clone() for a in self.best] if self.best is not None else super().derive_alphas()

    def describe(self) -> dict:
        if self.ranking is None:
            return {}
        return {"ranked": len(self.ranking), "best_rank_loss": round(min(r["loss"] for r in self.ranking), 6)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state(), "held": self.held,
                "best": self.best, "ranking": self.ranking}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.held, self.best, self.ranking = list(state["held"]), state["best"], state["ranking"]

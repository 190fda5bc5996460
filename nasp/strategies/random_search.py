"""Random search: sample N discrete architectures, train each from scratch, keep the best on
validation. The epoch budget is split evenly between the candidates.

``RandomSearch`` is also the base of the methods that train every candidate standalone and
differ only in how they propose the next one (``propose``) from the scores seen (``observe``):
REINFORCE and TPE (``nasp.strategies.blackbox``)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .base import SearchProblem, Strategy, sample_architecture
from .registry import STRATEGIES


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Options (``SearchProblem.options``): ``candidates`` (default 10), ``seed`` (default 0)."""

    reads = frozenset({"candidates"})
    selects_on_validation = True

    uses_valid_batch = False

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        if epochs < 1:
            raise ValueError("random search needs at least one epoch")
        self.total_epochs = epochs
        self.num_candidates = max(1, min(int(problem.options.get("candidates", 10)), epochs))
        per = epochs // self.num_candidates
        self.starts = [i * per for i in range(self.num_candidates)]
        self.ends = self.starts[1:] + [epochs]
        super().__init__(problem, self.ends[0] - self.starts[0])
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        self.candidate = -1
        self.history: list[dict] = []
        self.best_alphas: Optional[list[Tensor]] = None
        #: the best candidate's ``exported_weights`` (trained with it; later candidates reset them)
        self.best_extra: Optional[list[Tensor]] = None
        self.best_score: Optional[float] = None

    def _weight_params(self) -> list[nn.Parameter]:
        return self.network.weights() + self.network.arch_extra_parameters()

    def _start_candidate(self, index: int) -> None:
        self.candidate = index
        n_epochs = self.ends[index] - self.starts[index]
        self.weight_optimizer = self.problem.weight_optimizer(self.weight_params)
        self.scheduler = self.problem.scheduler(self.weight_optimizer, n_epochs) if self.problem.scheduler else None

    def begin_epoch(self, epoch: int) -> None:
        if epoch in self.starts and self.starts.index(epoch) != self.candidate:
            index = self.starts.index(epoch)
            self.network.set_architecture(self.propose(index))
            if index > 0:
                self.network.reset_weights()
                # the ranks of a data-parallel run start the candidate from rank 0's draw
                self.world.broadcast_state(self.network)
            self._start_candidate(index)

    def propose(self, index: int) -> list[Tensor]:
        """The architecture of candidate ``index``: uniformly random (under a budget: among the
        cells that fit)."""
        return sample_architecture(self.network, self.generator)

    def observe(self, architecture: list[Tensor], score: float) -> None:
        """A candidate finished with validation ``score`` (random search learns nothing from it)."""

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        return {"train_loss": self.weight_step(train_batch, self.single_path())}

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().end_epoch(epoch, metrics)
        if epoch + 1 == self.ends[self.candidate]:
            score = float(metrics[self.problem.metric])
            arch = [a.detach().clone() for a in self.network.arch_parameters()]
            self.history.append({"candidate": self.candidate, "score": score, "architecture": self.network.derive(arch)})
            self.observe(arch, score)
            if self.problem.better(score, self.best_score):
                self.best_score, self.best_alphas = score, arch
                self.best_extra = [w.detach().clone() for w in self.network.exported_weights()]
            if epoch + 1 == self.total_epochs and self.best_extra is not None:
                with torch.no_grad():  # the network ends holding what the kept candidate trained
                    for w, best in zip(self.network.exported_weights(), self.best_extra):
                        w.copy_(best)

    def derive_alphas(self) -> list[Tensor]:
        if self.best_alphas is not None:
            return [a.clone() for a in self.best_alphas]
        return super().derive_alphas()

    def budget_binding(self) -> Optional[bool]:
        """Under a budget: whether it excluded cells from the sampling (the space's most
        expensive cell does not fit)."""
        budget = self.network.budget
        return None if budget is None else budget.most_expensive > budget.limit

    def describe(self) -> dict:
        return {"candidate": self.candidate}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "candidate": self.candidate,
            "generator": self.generator.get_state(),
            "history": self.history,
            "best_alphas": self.best_alphas,
            "best_extra": self.best_extra,
            "best_score": self.best_score,
        }

    def load_state_dict(self, state: dict) -> None:
        self._start_candidate(int(state["candidate"]))
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.history = list(state["history"])
        self.best_alphas = state["best_alphas"]
        self.best_extra = state.get("best_extra")
        self.best_score = state["best_score"]

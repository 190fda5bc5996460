"""NASP: the proximal search of REFERENCE §1, and its single-level variant (SIF "no-auto")."""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import torch
from torch import Tensor

from ..architect import Architect, assigned
from ..errors import NaspError
from ..mixing import Active, Selection, SinglePath
from .base import SearchProblem, Strategy, arch_optimizer, differentiating_only, sample_architecture
from .registry import STRATEGIES


AUTO = "auto"

#: an automatic warm-up ends at the first epoch whose validation metric improves on the best so
#: far by less than this fraction
AUTO_WARMUP_TOLERANCE = 1e-3

#: what NASP's warm-up trains: a uniformly sampled architecture per step (the paper's), or the
#: network's default architecture
WARMUP_PATHS = ("sampled", "default")

#: after a warm-up on the default architecture, the default candidate of every row starts with
#: this lead over the others' architecture values (0.5 + noise of 1e-3): the search leaves the
#: trained default only for a candidate whose gradient keeps preferring it (about 170 Adam steps
#: at a rate of 3e-4)
DEFAULT_LEAD = 0.05


def check_warmup_path(value: object) -> str:
    """``value`` if it names a warm-up path, else a NaspError."""
    if value not in WARMUP_PATHS:
        raise NaspError(f"--warmup-path {value!r}: use one of {', '.join(WARMUP_PATHS)}")
    return str(value)


def check_warmup(warmup_epochs: Union[int, str], epochs: int) -> Union[int, str]:
    """``warmup_epochs`` (a count or ``"auto"``) if it leaves the architecture epochs to move in,
    else a NaspError."""
    if warmup_epochs == AUTO:
        if epochs < 2:
            raise NaspError(f"--warmup-epochs auto needs --epochs of at least 2, got {epochs}")
        return AUTO
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0 or (warmup_epochs and warmup_epochs >= epochs):
        raise NaspError(f"--warmup-epochs ({warmup_epochs}) must be 'auto' or at least 0 and smaller than --epochs "
                        f"({epochs}): the architecture only moves after the warm-up")
    return warmup_epochs


class WarmingUp:
    """The warm-up of a strategy that reads ``warmup_epochs`` (NASP, local search): the first
    epochs train without searching; ``"auto"`` warms up until the validation metric improves on
    its best by less than ``AUTO_WARMUP_TOLERANCE`` (at most ``epochs - 1``). Checkpointed."""

    problem: SearchProblem
    epochs: int

    def init_warmup(self, problem: SearchProblem, epochs: int) -> None:
        self.warmup_epochs = check_warmup(problem.options.get("warmup_epochs", 0), epochs)
        self.warming = False
        self.warmup_over = False           # "auto": the metric has stopped improving
        self.warmup_best: Optional[float] = None

    def begin_warmup(self, epoch: int) -> bool:
        """Whether ``epoch`` warms up (also held in ``warming``)."""
        if self.warmup_epochs == AUTO:
            self.warming = not self.warmup_over and epoch < self.epochs - 1
        else:
            self.warming = epoch < self.warmup_epochs
        return self.warming

    def end_warmup(self, metrics: dict[str, float]) -> None:
        """After a warm-up epoch's evaluation: ``"auto"`` ends at the first epoch that does not improve enough."""
        if self.warming and self.warmup_epochs == AUTO:
            value, best = float(metrics[self.problem.metric]), self.warmup_best
            if best is None or self.problem.beats(value, best, AUTO_WARMUP_TOLERANCE):
                self.warmup_best = value
            else:
                self.warmup_over = True

    def describe(self) -> dict:
        return {"warmup": self.warming}

    def warmup_state(self) -> dict:
        return {"over": self.warmup_over, "best": self.warmup_best}

    def load_warmup_state(self, state: dict) -> None:
        if "warmup" in state:
            self.warmup_over, self.warmup_best = state["warmup"]["over"], state["warmup"]["best"]


@STRATEGIES.register("nasp")
class NASP(WarmingUp, Strategy):
    """Per iteration: discretize; architecture step on a validation batch at the discrete point
    (every op evaluated, only selected ones with autograd), then Adam + clamp on the continuous
    values; discretize again; weight step running only the selected op of every kept edge.

    Option ``warmup_epochs`` (``SearchProblem.options``, default 0): first train the weights
    alone, each step on a uniformly sampled discrete architecture, so that every candidate op
    has trained weights before the architecture values start to move (this prevents the op that
    learns fastest from winning by default). The continuous values are not touched meanwhile.
    ``"auto"`` warms up until the validation metric stops improving (by less than
    ``AUTO_WARMUP_TOLERANCE`` of its best value), leaving at least one epoch for the search.

    Option ``warmup_path``: ``"sampled"`` (the above, the default) or ``"default"``: the warm-up
    trains the network's default architecture (``default_architecture``) alone; when it ends,
    every other candidate starts from the default's weights where the network allows
    (``swap_in``, with their optimizer state) and the architecture values start at the default,
    each row's default candidate ``DEFAULT_LEAD`` ahead. Sampling one path of a large space
    from scratch gives the shared weights conflicting signals; this warm-up does not.
    """

    reads = frozenset({"warmup_epochs", "eta", "warmup_path"})

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.init_warmup(problem, epochs)
        self.warmup_path = check_warmup_path(problem.options.get("warmup_path", "sampled"))
        self.started = False  # whether the search after a warm-up on the default path has set its start
        self.default: list[Tensor] = []
        if self.warmup_path == "default":  # the architecture values start at the default: the warm-up evaluates it
            self.default = [a.detach().cpu() for a in self.network.default_architecture()]
            with torch.no_grad():
                for alpha, a in zip(self.network.arch_parameters(), self.default):
                    if alpha.shape[-1] > 1:
                        alpha.add_(DEFAULT_LEAD * a.to(alpha.device, alpha.dtype))
        self.generator = torch.Generator().manual_seed(int(problem.options.seed))
        net = self.network
        extras = net.arch_extra_parameters()
        self.architect = Architect(
            net.arch_parameters(),
            discretize=net.projection(),
            regularizer=problem.regularizer,
            eta=problem.eta,
            extra_params=extras,
            optimizer=arch_optimizer(problem, net.arch_parameters() + extras),
        )

    def arch_batch(self, train_batch: Any, valid_batch: Any) -> Any:
        return valid_batch

    def begin_epoch(self, epoch: int) -> None:
        self.architect.forget()  # each epoch's first step projects afresh
        if not self.begin_warmup(epoch) and self.warmup_path == "default" and not self.started:
            self.start_from_default()

    def warmup_architecture(self) -> list[Tensor]:
        """The architecture of a warm-up step: sampled, or the network's default."""
        if self.warmup_path == "default":
            return [a.clone() for a in self.default]
        return sample_architecture(self.network, self.generator)

    @torch.no_grad()
    def start_from_default(self) -> None:
        """After a warm-up on the default architecture: every other candidate of each row takes
        the default's weights where the network allows (``swap_in``)."""
        default, state = self.default, self.weight_optimizer.state
        # the last rows first: a candidate may copy weights that a later row's swap fills (SIF: a
        # new op takes the default op's heads, each of which the head row has just started)
        for t, a in reversed(list(enumerate(default))):
            for r in reversed(range(a.shape[0])):
                if a.shape[1] < 2 or int(a[r].count_nonzero()) != 1:
                    continue
                chosen = int(a[r].argmax())
                for column in range(a.shape[1]):
                    if column != chosen:
                        for src, dst in self.network.swap_in(default, t, r, column):
                            if src in state:
                                state[dst] = copy.deepcopy(state[src])
        self.started = True

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().end_epoch(epoch, metrics)
        self.end_warmup(metrics)

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        if self.warming:
            alphas, sampled = self.network.arch_parameters(), self.warmup_architecture()
            with assigned(alphas, sampled):
                return {"train_loss": self.weight_step(train_batch, SinglePath(Selection(alphas, sampled)))}
        arch = self.architect
        arch.zero_grad()
        batch = self.arch_batch(train_batch, valid_batch)
        # the discrete point of the last weight step, unless the alphas moved since (one
        # device-to-host copy of the projection a step, not two)
        with arch.discrete(reuse=True), self.network.using(Active(arch.selection)):
            with differentiating_only(self.network, arch.alphas + arch.extra_params):
                arch_loss = self.problem.loss(self.network, batch)
            arch.backward(arch_loss + arch.penalty())
        arch_loss = self.sync_gradients(arch.alphas + arch.extra_params, batch, arch_loss.detach())
        arch.step()
        with arch.discrete():
            train_loss = self.weight_step(train_batch, SinglePath(arch.selection))
        return {"train_loss": train_loss, "arch_loss": arch_loss}

    @contextmanager
    def _eval_architecture(self) -> Iterator[None]:
        with self.architect.discrete(), self.network.using(SinglePath(self.architect.selection)):
            yield

    def state_dict(self) -> dict:
        return {**super().state_dict(), "architect": self.architect.state_dict(), "generator": self.generator.get_state(),
                "warmup": self.warmup_state(), "started": self.started}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.architect.load_state_dict(state["architect"])
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.load_warmup_state(state)
        self.started = bool(state.get("started", False))


@STRATEGIES.register("no-auto")
class NASPSingleLevel(NASP):
    """NASP with the architecture step on the *training* batch (SIF's "no-auto" ablation)."""

    uses_valid_batch = False

    def arch_batch(self, train_batch: Any, valid_batch: Any) -> Any:
        return train_batch

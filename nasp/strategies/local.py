"""``local``: a warm-started, function-preserving local search over discrete architectures.

Train the network's default architecture (``SearchNetwork.default_architecture``) for the
warm-up epochs. A network with several starting architectures
(``SearchNetwork.starting_architectures``) warms each up in turn, every one from the weights as
built and for the warm-up epochs each; the one that scores best on the whole validation set at
the end of its warm-up becomes the incumbent, with the weights it trained. Then take the rows
of the architecture one after the other (every row of every
architecture tensor with more than one candidate) and run one *row step*: a trial per candidate
of that row, each trial one epoch of the run loop. Every trial starts from the incumbent's
weights and optimizer state; the row's first trial keeps the incumbent ("stay"), every other one
swaps another candidate in (``SearchNetwork.swap_in``: where the space allows, it starts computing
the function of the candidate it replaces). A trial trains one epoch on the training data, its
learning rate ramped up over the first ``RAMP`` of it, and is scored on the whole validation set
(the run loop's evaluation). Option ``trial_fraction`` (default 1) shortens every trial, the
stay's too, to the first part of its epoch's batches (at least one): the same decisions for
candidates that lose by far, at a fraction of the cost, and less time to overtake for the
others. The best trial that beats the stay by the relative ``margin`` becomes the incumbent,
with the weights it trained; otherwise the stay does. A candidate that is a special case of the winner (``SearchNetwork.simpler``: the
history-free input of an input with history, a fixed element-wise function of the learned one)
takes its place when it scores within the margin of it: of two models that fit as well, the
search keeps the smaller. So every replacement is compared with the incumbent trained as long, the network is
discrete at every step, only chosen candidates train, and the validation data only decide.

The search ends when a whole pass over the rows changes nothing (``finished``: the run loop
stops) or when the epochs are spent (a row step cut short decides among the trials it ran); the
network then holds the incumbent. Cost: one epoch per candidate of every row per pass (the
warm-up epochs once per start), and two more copies of the network's state and optimizer state
(the incumbent's and the row step's best trial's; during a warm-up of several starts, the
weights as built and the best start's), which the checkpoint holds too.

Option ``confirm`` (default 0) guards against changes that only learn faster: a row step's
winning change and the stay then each train ``confirm`` trials more, in turn, from the weights
their trials ended with (a third copy: the stay's), and the change replaces the incumbent only if
it still wins as it did (by the margin, or within it as a special case of the incumbent's
candidate); a confirmation starts only while the epochs for all of it are left.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..errors import NaspError
from .base import SearchProblem, Strategy
from .proximal import AUTO, AUTO_WARMUP_TOLERANCE, WarmingUp
from .registry import STRATEGIES

#: the default of ``margin``: a replacement must beat the incumbent by 0.1% of its score
DEFAULT_MARGIN = 1e-3

#: the default of ``confirm``: trials more that a row step's winning change and the stay each
#: train, one after the other, before the change replaces the incumbent (0: none)
DEFAULT_CONFIRM = 0

#: ``LocalSearch.min_epoch_steps``: with fewer steps an epoch, the warm-up and the trials (parts of
#: an epoch) are too short to tell candidates apart (MovieLens-100K's epoch: 137 steps; planted
#: sets of 6,300 ratings in batches of 128: 50 steps, and 5 of 18 identifiable planted choices
#: recovered, against 9 of 18 at 197 steps, ``docs/results/sif.md``)
MIN_EPOCH_STEPS = 100

#: each trial ramps the learning rate up linearly over this fraction of an epoch's steps (the
#: previous epoch's count), the stay's too: a swapped-in parameter without optimizer state then
#: gathers some before its steps reach full size (Adagrad's first step is as large as the rate)
RAMP = 0.25


def check_trial_fraction(value: Any) -> float:
    """``value`` as the part of an epoch a trial trains (a number in (0, 1]), else a NaspError."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise NaspError(f"--trial-fraction {value!r}: must be a number in (0, 1] (the part of an epoch a trial trains)")
    return fraction


#: a row of the architecture: (architecture tensor, row of that tensor)
Row = tuple[int, int]


def check_confirm(value: Any) -> int:
    """``value`` as a count of confirmation trials (an integer >= 0), else a NaspError."""
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise NaspError(f"--confirm {value!r}: must be an integer >= 0 (trials more for a winning change and the stay)")
    return int(value)


def check_margin(value: Any) -> float:
    """``value`` as a relative margin (a finite number >= 0), else a NaspError."""
    try:
        margin = float(value)
    except (TypeError, ValueError):
        margin = float("nan")
    if not 0 <= margin < float("inf"):
        raise NaspError(f"--margin {value!r}: must be a number >= 0 (a fraction of the incumbent's score)")
    return margin


@STRATEGIES.register("local")
class LocalSearch(WarmingUp, Strategy):
    """See the module docstring. Options: ``warmup_epochs`` (a count or ``"auto"``; 0 when not
    given, ``default_warmup`` in the domains' commands), ``margin`` (default ``DEFAULT_MARGIN``)
    and ``trial_fraction`` (default 1)."""

    reads = frozenset({"warmup_epochs", "margin", "trial_fraction", "confirm"})
    #: a few epochs of the default model: the row steps' stay trials keep training it anyway
    default_warmup = 3
    default_epochs = 30
    selects_on_validation = True
    uses_valid_batch = False
    min_epoch_steps = MIN_EPOCH_STEPS

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        super().__init__(problem, epochs)
        self.init_warmup(problem, epochs)
        self.margin = check_margin(problem.options.get("margin", DEFAULT_MARGIN))
        self.trial_fraction = check_trial_fraction(problem.options.get("trial_fraction", 1.0))
        self.confirm = check_confirm(problem.options.get("confirm", DEFAULT_CONFIRM))
        # a confirmation under way: the winning change and the stay ("sides": their score and
        # state after their latest trial), the sides still to train in turn, and the decision's note
        self.confirming: Optional[dict] = None
        self.trial_steps = 0                      # the steps of this epoch's trial, when shortened
        self.starts: list[list[Tensor]] = [[a.detach().clone() for a in arch]
                                           for arch in self.network.starting_architectures()]
        self.incumbent: list[Tensor] = [a.clone() for a in self.starts[0]]
        self.network.set_architecture(self.incumbent)
        self.rows: list[Row] = self._rows()
        # a warm-up of several starts (``starting_architectures``): the start warming up, its
        # epochs so far, the weights as built (every start warms up from them) and the best start
        self.start = 0 if len(self.starts) > 1 and self.warmup_epochs != 0 else len(self.starts)
        self.start_epochs = 0
        self.initial: Optional[dict] = None
        self.best_start: Optional[dict] = None
        self.row = 0                              # the row of the current (or next) row step
        self.unchanged = 0                        # row steps in a row that kept the incumbent
        self.trials: list[Optional[int]] = []     # this row step's candidates (None: stay)
        self.trial = -1                           # the trial this epoch trains
        self.saved: Optional[dict] = None         # the incumbent's weights and optimizer state
        self.best: Optional[dict] = None          # this row step's best trial: its column, score and state
        self.stay_score: Optional[float] = None
        self.stay_state: Optional[dict] = None    # the stay trial's weights, for a confirmation
        self.simple: dict[int, dict] = {}         # this row step's trials that may win as the simpler: column -> score, state
        self.steps = 0                            # this epoch's steps so far
        self.epoch_steps = 0                      # the last epoch's steps (the ramp's length)
        self.label: Optional[str] = None          # the trial this epoch trains, for its metrics row
        self.kept: Optional[str] = None           # the decision of the row step this epoch ended

    def _weight_params(self) -> list[nn.Parameter]:
        # every parameter a chosen candidate has trains on training data (element-wise MLPs too)
        return self.network.weights() + self.network.arch_extra_parameters()

    def _rows(self) -> list[Row]:
        return [(t, r) for t, a in enumerate(self.incumbent) for r in range(a.shape[0])
                if a.shape[1] > 1 and int(a[r].count_nonzero()) == 1]

    # the starts ---------------------------------------------------------------------------------
    def _starting(self) -> bool:
        """Whether a warm-up of several starts is under way."""
        return self.start < len(self.starts)

    def _begin_start_epoch(self, epoch: int) -> None:
        """The network at the start that warms up, from the weights as built at its first epoch."""
        self.warming = True
        if self.initial is None:  # the very first epoch: keep the weights as built for the other starts
            self.initial = self._snapshot()
        elif self.start_epochs == 0:
            self._restore(self.initial)
            self.incumbent = [a.clone() for a in self.starts[self.start]]
            self.network.set_architecture(self.incumbent)
            self.forget_selection()
        self.label = f"start {self.start}"

    def _end_start_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Count the epoch; at the end of a start's warm-up keep it if it is the best so far; once
        every start is warmed up (or the epochs run out), the best becomes the incumbent."""
        score = float(metrics[self.problem.metric])
        self.start_epochs += 1
        if self.warmup_epochs == AUTO:  # each start until its metric stops improving
            done = self.warmup_best is not None and not self.problem.beats(score, self.warmup_best, AUTO_WARMUP_TOLERANCE)
            self.warmup_best = score if self.warmup_best is None or self.problem.better(score, self.warmup_best) else self.warmup_best
        else:
            done = self.start_epochs >= self.warmup_epochs
        last = epoch == self.epochs - 1
        if not (done or last):
            return
        if self.best_start is None or self.problem.better(score, self.best_start["score"]):
            self.best_start = {"index": self.start, "score": score, "state": self._snapshot()}
        self.start, self.start_epochs, self.warmup_best = self.start + 1, 0, None
        if self.start < len(self.starts) and not last:
            return
        best = self.best_start
        self._restore(best["state"])
        self.incumbent = [a.clone() for a in self.starts[best["index"]]]
        self.network.set_architecture(self.incumbent)
        self.forget_selection()
        self.rows = self._rows()
        self.kept = f"start {best['index']}"
        self.start, self.initial, self.best_start = len(self.starts), None, None
        self.warmup_over = True  # an "auto" warm-up too: the starts were it

    # trials -----------------------------------------------------------------------------------
    def changed(self, row: Row, column: Optional[int]) -> list[Tensor]:
        """The incumbent with ``row`` set to candidate ``column`` (None: the incumbent)."""
        out = [a.clone() for a in self.incumbent]
        if column is not None:
            t, r = row
            out[t][r] = 0
            out[t][r, column] = 1
        return out

    def allowed(self, row: Row, column: int) -> bool:
        """Whether the one-row change is an architecture of the network's projection (a budget may forbid it)."""
        arch = self.changed(row, column)
        return all(bool(((p != 0) == (a != 0)).all()) for p, a in zip(self.network.project(arch), arch))

    def move(self, row: Row, column: Optional[int]) -> None:
        """Set the network to the incumbent with ``row`` changed to ``column``, the candidate
        swapped in (``SearchNetwork.swap_in``; the weights it copies bring their optimizer
        state along, so that their next steps are as small as the replaced one's); None: the
        incumbent itself."""
        if column is not None:
            state = self.weight_optimizer.state
            for src, dst in self.network.swap_in(self.incumbent, row[0], row[1], column):
                if src in state:
                    state[dst] = copy.deepcopy(state[src])
        self.network.set_architecture(self.changed(row, column))
        self.forget_selection()

    def _snapshot(self) -> dict:
        """The network's state and the optimizer's, copied."""
        return {"network": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
                "optimizer": copy.deepcopy(Strategy.state_dict(self))}

    def _restore(self, snapshot: dict) -> None:
        self.network.load_state_dict(snapshot["network"])
        Strategy.load_state_dict(self, copy.deepcopy(snapshot["optimizer"]))  # the snapshot stays as it is

    def _start_row_step(self) -> None:
        t, r = row = self.rows[self.row]
        current = int(self.incumbent[t][r].argmax())
        self.trials = [None] + [c for c in range(self.incumbent[t].shape[1]) if c != current and self.allowed(row, c)]
        self.trial = -1

    def _name(self, column: Optional[int]) -> str:
        return "stay" if column is None else f"row {self.row} candidate {column}"

    def _may_be_simpler(self, column: int) -> bool:
        """Whether candidate ``column`` of the current row is a special case of another candidate of it."""
        t, r = self.rows[self.row]
        return any(self.network.simpler(t, r, column, other) for other in range(self.incumbent[t].shape[1]) if other != column)

    def _simplest(self) -> tuple[dict, Optional[str]]:
        """The row step's decision: its best trial (``best``), or the best-scoring trial that is a
        special case of it, scores within the margin of it and would be kept against the stay
        (it beats the stay by the margin, or it is a special case of the incumbent's candidate
        too). Returns (the trial, why it replaced the best; None if it did not)."""
        t, r = self.rows[self.row]
        current = int(self.incumbent[t][r].argmax())
        best = self.best
        top = current if best["column"] is None else best["column"]
        pick = best
        for column, trial in self.simple.items():
            if (self.network.simpler(t, r, column, top) and not self.problem.beats(best["score"], trial["score"], self.margin)
                    and (self.network.simpler(t, r, column, current)
                         or self.problem.beats(trial["score"], self.stay_score, self.margin))
                    and (pick is best or self.problem.better(trial["score"], pick["score"]))):
                pick = {"column": column, **trial}
        return pick, (None if pick is best else f"simpler than {self._name(best['column'])}, within the margin")

    def _end_row_step(self, epoch: int) -> None:
        """The row step's decision becomes the incumbent, or, with ``confirm`` and a change
        winning (and the epochs for a whole confirmation left), its confirmation begins."""
        decision, why = self._simplest()
        room = self.epochs - 1 - epoch >= 2 * self.confirm
        if decision["column"] is not None and self.confirm > 0 and room and self.stay_state is not None:
            self.confirming = {"column": decision["column"], "why": why, "left": ["stay", "change"] * self.confirm,
                               "sides": {"stay": {"score": self.stay_score, "state": self.stay_state},
                                         "change": {"score": decision["score"], "state": decision["state"]}}}
            self.best, self.trials, self.simple, self.stay_state = None, [], {}, None
            self.kept = f"{self._name(decision['column'])} to confirm"
            return
        self._commit(decision["column"], decision["state"], why)

    def _commit(self, column: Optional[int], state: dict, why: Optional[str]) -> None:
        """``column`` (None: the stay), with the weights ``state``, becomes the incumbent; the next row is next."""
        self.kept = self._name(column) + (f" ({why})" if why else "")
        self.incumbent = self.changed(self.rows[self.row], column)
        self.saved, self.best, self.trials, self.simple, self.stay_state = state, None, [], {}, None
        self.unchanged = self.unchanged + 1 if column is None else 0
        self.row = (self.row + 1) % len(self.rows)
        self.finished = self.unchanged >= len(self.rows)

    def _begin_confirm_epoch(self) -> None:
        """The side whose turn it is trains on from its state after its latest trial."""
        c = self.confirming
        side = c["left"][0]
        self._restore(c["sides"][side]["state"])
        self.network.set_architecture(self.changed(self.rows[self.row], c["column"] if side == "change" else None))
        self.forget_selection()
        self.label = f"confirm {self._name(c['column'] if side == 'change' else None)}"

    def _end_confirm_epoch(self, score: float) -> None:
        """Record the side's score and weights; once both sides trained their trials, the change
        replaces the incumbent if it still wins as in the row step: it beats the stay by the
        margin, or it is a special case of the incumbent's candidate and scores within the margin."""
        c = self.confirming
        side = c["left"].pop(0)
        c["sides"][side] = {"score": score, "state": self._snapshot()}
        if c["left"]:
            return
        stay, change = c["sides"]["stay"], c["sides"]["change"]
        self.confirming = None
        t, r = self.rows[self.row]
        simpler = self.network.simpler(t, r, c["column"], int(self.incumbent[t][r].argmax()))
        if (self.problem.beats(change["score"], stay["score"], self.margin)
                or simpler and not self.problem.beats(stay["score"], change["score"], self.margin)):
            self._commit(c["column"], change["state"], (c["why"] + ", " if c["why"] else "") + "confirmed")
        else:
            self._commit(None, stay["state"], f"{self._name(c['column'])} not confirmed")

    # lifecycle --------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.kept = self.label = None
        self.steps = 0
        if self._starting():
            self._begin_start_epoch(epoch)
            return
        if self.begin_warmup(epoch) or self.finished or not self.rows:
            return  # the incumbent trains on
        if self.saved is None:  # the first trial: the warm-up is over
            self.saved = self._snapshot()
        if self.confirming is not None:
            self._begin_confirm_epoch()
            return
        if not self.trials:
            self._start_row_step()
        self.trial += 1
        self._restore(self.saved)
        self.move(self.rows[self.row], self.trials[self.trial])
        self.label = self._name(self.trials[self.trial])

    def epoch_batches(self, epoch: int, batches: Any) -> Any:
        """A trial's first ``trial_fraction`` of the epoch's batches (all of them at 1)."""
        self.trial_steps = 0
        if self.trial_fraction >= 1 or self.label is None or self.warming:
            return batches
        batches = list(batches)
        self.trial_steps = max(1, math.ceil(self.trial_fraction * len(batches)))
        return batches[:self.trial_steps]

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        groups = self.weight_optimizer.param_groups
        rates = [g["lr"] for g in groups]
        # trials only, over a part of their own length (a shortened one's) or else the last
        # epoch's; the very first epoch of a search without warm-up has no length to go by
        ramp = RAMP * (self.trial_steps or self.epoch_steps) if self.label is not None and not self.warming else 0
        scale = min(1.0, (self.steps + 1) / ramp) if ramp >= 1 else 1.0
        for g, rate in zip(groups, rates):
            g["lr"] = rate * scale
        try:
            loss = self.weight_step(train_batch, self.single_path())
        finally:
            for g, rate in zip(groups, rates):
                g["lr"] = rate
        self.steps += 1
        return {"train_loss": loss}

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().end_epoch(epoch, metrics)
        self.epoch_steps = self.steps
        if self._starting():
            self._end_start_epoch(epoch, metrics)
            return
        if self.warming:
            self.end_warmup(metrics)
            return
        if self.finished or not self.rows:  # nothing (left) to try
            self.finished = True
            return
        last = epoch == self.epochs - 1
        if self.confirming is not None:
            self._end_confirm_epoch(float(metrics[self.problem.metric]))
            self._end_of_run(last)
            return
        score, column = float(metrics[self.problem.metric]), self.trials[self.trial]
        if column is None:
            self.stay_score = score
            self.best = {"column": None, "score": score, "state": self._snapshot()}
            self.stay_state = self.best["state"] if self.confirm > 0 else None
        else:
            wins = self.problem.beats(score, self.stay_score, self.margin) and self.problem.better(score, self.best["score"])
            simple = self._may_be_simpler(column)
            state = self._snapshot() if wins or simple else None
            if wins:
                self.best = {"column": column, "score": score, "state": state}
            if simple:
                self.simple[column] = {"score": score, "state": state}
        if self.trial == len(self.trials) - 1 or last:
            self._end_row_step(epoch)
        self._end_of_run(last)

    def _end_of_run(self, last: bool) -> None:
        """When the search ends, the network holds the incumbent."""
        if self.finished or last:
            self._restore(self.saved)
            self.network.set_architecture(self.incumbent)
            self.forget_selection()

    def describe(self) -> dict:
        out = super().describe()
        if self.label is not None:
            out["trial"] = self.label
        if self.kept is not None:
            out["kept"] = self.kept
        return out

    def derive_alphas(self) -> list[Tensor]:
        return [a.clone() for a in self.incumbent]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "warmup": self.warmup_state(), "incumbent": self.incumbent, "row": self.row,
                "unchanged": self.unchanged, "trials": self.trials, "trial": self.trial, "saved": self.saved,
                "best": self.best, "simple": self.simple, "stay_score": self.stay_score, "finished": self.finished,
                "epoch_steps": self.epoch_steps, "start": self.start, "start_epochs": self.start_epochs,
                "initial": self.initial, "best_start": self.best_start, "confirming": self.confirming,
                "stay_state": self.stay_state}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.load_warmup_state(state)
        self.incumbent = [a.clone() for a in state["incumbent"]]
        self.row, self.unchanged, self.trial = int(state["row"]), int(state["unchanged"]), int(state["trial"])
        self.trials, self.saved, self.best = list(state["trials"]), state["saved"], state["best"]
        self.simple = dict(state.get("simple", {}))
        self.stay_score, self.finished = state["stay_score"], bool(state["finished"])
        self.epoch_steps = int(state["epoch_steps"])
        self.confirming, self.stay_state = state.get("confirming"), state.get("stay_state")
        if "start" in state:  # a checkpoint of this version
            self.start, self.start_epochs = int(state["start"]), int(state["start_epochs"])
            self.initial, self.best_start = state["initial"], state["best_start"]
        else:
            self.start = len(self.starts)
        self.rows = self._rows()

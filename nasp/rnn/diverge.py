"""Divergence watches for language-model runs (search and retraining).

Small corpora with the paper's settings (batch 256, SGD lr 20) can diverge: the training loss
rises epoch after epoch, or stays above what predicting every word as equally likely gives
(``log(vocabulary)``), while nothing says so. ``DivergenceWatch`` looks at each epoch's loss: a
loss that is not finite stops the run with one clear error (nothing after it can recover); a
loss more than ``tolerance`` above its best, or above ``ceiling``, for ``patience`` epochs in a
row logs one warning on stderr with settings that learn on small corpora (docs/rnn.md, "Small
corpora"). The validation perplexity can blow up while the training loss looks normal;
``ValidationWatch`` stops the run when it does. Both stop with ``StopRun``: the epoch's row and
``curves.png`` are still written, then the command ends with the one error line.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

from ..loop import Hook, StopRun

log = logging.getLogger("nasp")

BLOWUP = 10.0
"""``ValidationWatch``: a validation perplexity more than this many times its best so far stops the run."""
CEILING = 100.0
"""``ValidationWatch``: a validation perplexity more than this many times the vocabulary's size stops the run."""
ADVICE = ("on a small corpus try --batch-size 32 --emb-size 64 --hidden-size 64 --dropout 0.3 --dropouth 0.1 "
          "--dropoutx 0.3 --dropouti 0.1, or a lower --lr (docs/rnn.md, 'Small corpora')")
VALID_ADVICE = "try a lower --lr, e.g. a quarter of it (docs/rnn.md, 'Divergence')"


class DivergenceWatch(Hook):
    """Feed it one loss per epoch (``update``); it raises on a non-finite loss and warns once when
    the loss stays more than ``tolerance`` (relative) above its best, or above ``ceiling``, for
    ``patience`` epochs."""

    def __init__(self, key: str = "train_loss", patience: int = 2, tolerance: float = 0.05,
                 ceiling: Optional[float] = None) -> None:
        self.key, self.patience, self.tolerance, self.ceiling = key, patience, tolerance, ceiling
        self.best: Optional[float] = None
        self.best_epoch = -1
        self.rising = 0
        self.above = 0
        self.warned = False

    def update(self, epoch: int, loss: float) -> None:
        """Record epoch ``epoch``'s (0-based) loss."""
        if not math.isfinite(loss):
            raise StopRun(f"{self.key} is {loss} at epoch {epoch + 1}: the run diverged; {ADVICE}")
        self.above = self.above + 1 if self.ceiling is not None and loss > self.ceiling else 0
        if self.best is None or loss < self.best:
            self.best, self.best_epoch, self.rising = loss, epoch, 0
        else:
            self.rising = self.rising + 1 if loss > self.best * (1 + self.tolerance) else 0
        if self.warned:
            return
        if self.rising >= self.patience:
            self.warned = True
            log.warning("%s %.3f at epoch %d is above its best %.3f (epoch %d) for %d epochs: the run is diverging; %s",
                        self.key, loss, epoch + 1, self.best, self.best_epoch + 1, self.rising, ADVICE)
        elif self.above >= self.patience:
            self.warned = True
            log.warning("%s %.3f at epoch %d is above %.3f, the loss of predicting every word as equally likely, "
                        "for %d epochs: the model is not learning; %s", self.key, loss, epoch + 1, self.ceiling,
                        self.above, ADVICE)

    def end_epoch(self, epoch: int, row: dict) -> bool:
        """The run loop's hook: watch ``row[key]`` (never stops the run itself)."""
        if self.key in row:
            self.update(epoch, float(row[self.key]))
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "rising": self.rising, "above": self.above,
                "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.rising, self.above, self.warned = state["rising"], state.get("above", 0), state["warned"]


class ValidationWatch(Hook):
    """Stops the run (``StopRun``) when the validation perplexity is not finite, or more than
    ``factor`` times its best so far, or more than ``ceiling`` times ``vocabulary`` (the perplexity
    of predicting every word as equally likely). Reads ``valid_loss`` (the log of the perplexity,
    finite where the perplexity overflows) and, in a search, ``architecture``: the cell the
    strategy would export, which the epoch validated. A blow-up of a cell other than the one that
    validated best (a sampling strategy's new choice, whose operations were rarely trained
    together) says nothing of the weights: it logs one warning per epoch and the search goes on
    (the training loss is watched by ``DivergenceWatch``); the same cell blowing up stops it."""

    def __init__(self, vocabulary: int, factor: float = BLOWUP, ceiling: float = CEILING) -> None:
        self.vocabulary, self.factor, self.ceiling = vocabulary, factor, ceiling
        self.best: Optional[float] = None  # the best validation loss so far
        self.best_epoch = -1
        self.best_architecture: Any = None  # the cell that validated best (None: not a search)

    def update(self, epoch: int, loss: float, train_loss: Optional[float] = None, architecture: Any = None) -> None:
        """Record epoch ``epoch``'s (0-based) validation loss of ``architecture`` (None outside a
        search); raises ``StopRun`` on a blow-up (naming ``train_loss`` when given)."""
        where = f"at epoch {epoch + 1}" + (f" (train_loss {train_loss:.4g})" if train_loss is not None else "")
        problem = None
        if not math.isfinite(loss):
            problem = f"valid_loss is {loss} {where}"
        elif self.best is not None and loss > self.best + math.log(self.factor):
            problem = (f"valid_ppl {math.exp(min(loss, 700.0)):.4g} {where} is more than {self.factor:g}x its best, "
                       f"{math.exp(self.best):.4g} at epoch {self.best_epoch + 1}")
        elif loss > math.log(self.ceiling * self.vocabulary):
            problem = (f"valid_ppl {math.exp(min(loss, 700.0)):.4g} {where} is more than {self.ceiling:g}x the "
                       f"vocabulary's {self.vocabulary} words (the perplexity of predicting every word as equally likely)")
        if problem is not None:
            if architecture is not None and architecture != self.best_architecture:
                log.warning("%s, for a cell the search had not validated before: its operations were rarely trained "
                            "together; the search goes on", problem)
                return
            raise StopRun(f"{problem}: the run diverged; {VALID_ADVICE}")
        if self.best is None or loss < self.best:
            self.best, self.best_epoch, self.best_architecture = loss, epoch, architecture

    def end_epoch(self, epoch: int, row: dict) -> bool:
        """The run loop's hook: watch ``row["valid_loss"]`` (stops with ``StopRun``, never by returning True)."""
        if "valid_loss" in row:
            self.update(epoch, float(row["valid_loss"]), row.get("train_loss"), row.get("architecture"))
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_architecture": self.best_architecture}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_architecture = state.get("best_architecture")

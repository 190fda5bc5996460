"""Retraining a recurrent genotype: SGD, then averaged SGD (the NT-ASGD switch of AWD-LSTM and
DARTS), gradient clipping, variable BPTT, the best model on validation, test perplexity."""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import click
import numpy as np
import torch
from torch import Tensor, nn

from ..config import setting, with_defaults
from ..devices import autocast_loss
from ..distributed import check_shards
from ..loop import Hook, KeepBest, RunLoop
from ..plots import Curves
from ..runs import RunDir, save_torch
from ..strategies import SearchProblem
from ..strategies.fixed import Fixed
from .config import RNNConfig, positive
from .corpus import Corpus, batchify, segments
from .diverge import DivergenceWatch, ValidationWatch
from .genotypes import RecurrentGenotype
from .model import (TRAIN_DROPOUTS, LMLoss, RecurrentModel, evaluate_nll, perplexity,
                    segment_streams)
from .search import CURVES

log = logging.getLogger("nasp")
MODEL = "model.pt"


@dataclass
@with_defaults(epochs=8000, batch_size=64, emb_size=850, hidden_size=850, weight_decay=8e-7, dropoute=TRAIN_DROPOUTS.embedding)
class TrainConfig(RNNConfig):
    """Settings of a retraining, each declared once (field = option; defaults: DARTS' recurrent
    evaluation, 850 units, batch 64)."""

    nonmono: int = setting(5, "Switch to averaged SGD when validation has not improved on the best of all but the last N epochs.",
                           type=click.INT, callback=positive)
    max_seq_len_delta: int = 20

    def validate(self, corpus: Corpus) -> None:
        """The batch sizes against ``corpus`` (``nasp.config``: called before the run directory exists)."""
        check_shards(self.batch_size, "--batch-size")  # the streams are split over torchrun's processes
        check_shards(self.eval_batch_size, "--eval-batch-size")
        batchify(corpus.train, self.batch_size, split="train")
        for split in ("valid", "test"):
            batchify(corpus.split(split), self.eval_batch_size, split=split)


class ParameterAverage:
    """Uniform average of the iterates since ``start()`` (averaged SGD with t0 = switch time)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.avg: Optional[list[Tensor]] = None
        self.count = 0

    @property
    def active(self) -> bool:
        return self.avg is not None

    @torch.no_grad()
    def start(self) -> None:
        self.avg = [p.detach().clone() for p in self.params]
        self.count = 1

    @torch.no_grad()
    def update(self) -> None:
        if self.avg is None:
            return
        self.count += 1
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 / self.count)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside, the parameters hold the average (no-op before ``start``)."""
        if self.avg is None:
            yield
            return
        with torch.no_grad():
            backup = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)

    def state_dict(self) -> dict:
        return {"avg": self.avg, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        avg = state["avg"]  # onto the parameters' devices (a run may resume on another --device)
        self.avg = None if avg is None else [a.to(p.device, p.dtype) for a, p in zip(avg, self.params)]
        self.count = int(state["count"])


def bptt_lengths(n_steps: int, bptt: int, max_delta: int, rng: np.random.Generator) -> list[int]:
    """Variable BPTT: base length ``bptt`` (half of it with probability 0.05), then a normal
    draw around it (std 5), at least 5 and at most ``bptt + max_delta``; enough lengths to cover
    ``n_steps``."""
    out, total = [], 0
    while total < n_steps:
        base = bptt if rng.random() < 0.95 else bptt / 2
        length = int(min(max(5, int(rng.normal(base, 5))), bptt + max_delta))
        out.append(length)
        total += length
    return out


class AveragedSGD(Fixed):
    """The weight steps of AWD-LSTM's and DARTS' recurrent retraining, as a stepper of the run loop:
    SGD whose step grows with the segment's length (variable BPTT), gradient clipping, and the
    NT-ASGD switch: once the validation loss is worse than the best of all but the last
    ``nonmono`` epochs, the iterates are averaged, and evaluation uses the average."""

    def __init__(self, problem: SearchProblem, epochs: int, cfg: TrainConfig) -> None:
        super().__init__(problem, epochs)
        self.cfg = cfg
        self.average = ParameterAverage(self.weight_params)
        self.history: list[float] = []
        self.asgd_epoch: Optional[int] = None  # 0-based

    def _set_lr(self, lr: float) -> None:
        for group in self.weight_optimizer.param_groups:
            group["lr"] = lr

    def step(self, seg: Any, valid_batch: Any) -> dict[str, Tensor]:
        self._set_lr(self.cfg.lr * seg.inputs.size(0) / self.cfg.bptt)  # longer segments get a larger step
        loss = self.weight_step(seg, self.single_path())
        self.average.update()
        return {"train_loss": loss}

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        self._set_lr(self.cfg.lr)
        with super().evaluation(), self.average.swapped():
            yield

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        super().end_epoch(epoch, metrics)
        val_loss = float(metrics["valid_loss"])
        nonmono = self.cfg.nonmono
        if not self.average.active and len(self.history) > nonmono and val_loss > min(self.history[:-nonmono]):
            self.average.start()
            self.asgd_epoch = epoch
            log.info("switching to averaged SGD at epoch %d", epoch + 1)
        self.history.append(val_loss)

    def describe(self) -> dict:
        return {"averaging": self.average.active}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "average": self.average.state_dict(), "history": list(self.history),
                "asgd_epoch": self.asgd_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.average.load_state_dict(state["average"])
        self.history, self.asgd_epoch = list(state["history"]), state["asgd_epoch"]


class Perplexities(Hook):
    """Adds ``train_ppl`` to every row and the untrained model's ``initial_valid_ppl`` to the first."""

    def __init__(self, initial: Callable[[], float]) -> None:
        self.initial_fn = initial
        self.initial: Optional[float] = None

    def on_start(self, loop: RunLoop) -> None:
        if loop.start_epoch == 0:
            self.initial = self.initial_fn()

    def end_epoch(self, epoch: int, row: dict) -> bool:
        row["train_ppl"] = perplexity(row["train_loss"])
        if epoch == 0 and self.initial is not None:
            row["initial_valid_ppl"] = self.initial
        return False


class Trainer:
    """Trains a ``RecurrentModel`` on a corpus through the run loop (one checkpoint per epoch in
    ``run``); keeps the best model on validation in ``model.pt``."""

    def __init__(self, corpus: Corpus, genotype: RecurrentGenotype, cfg: TrainConfig, run: RunDir, device: torch.device) -> None:
        self.cfg, self.run, self.device = cfg, run, device
        self.model = RecurrentModel(len(corpus.vocab), genotype, cfg.emb_size, cfg.hidden_size, cfg.dropouts).to(device)
        problem = SearchProblem(
            network=self.model,
            loss=autocast_loss(LMLoss(tar=cfg.tar), device, cfg.amp),
            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=cfg.lr, weight_decay=cfg.weight_decay),
            grad_clip=cfg.clip,
            examples=segment_streams,
        )
        self.stepper = AveragedSGD(problem, cfg.epochs, cfg)
        self.world = self.stepper.world  # in a data-parallel run each rank trains on its share of the streams
        self.train_data = self.world.shard(batchify(corpus.train, cfg.batch_size, device, "train"), 1)
        self.valid_data = batchify(corpus.valid, cfg.eval_batch_size, device, "valid")
        self.test_data = batchify(corpus.test, cfg.eval_batch_size, device, "test")
        self.watches = [DivergenceWatch("train_loss", ceiling=math.log(len(corpus.vocab))), ValidationWatch(len(corpus.vocab))]

    @property
    def asgd_epoch(self) -> Optional[int]:
        return self.stepper.asgd_epoch

    def nll(self, data: Tensor) -> float:
        """Mean negative log-likelihood per token of ``data`` (the model as it is)."""
        return evaluate_nll(self.model, data, self.cfg.bptt, self.world)

    def evaluate(self, data: Tensor) -> float:
        """``nll`` in evaluation mode with the averaged weights when averaging."""
        with self.stepper.evaluation():
            return self.nll(data)

    def train_segments(self, epoch: int) -> list:
        """Epoch ``epoch``'s segments: variable BPTT lengths drawn from (seed, epoch) only."""
        cfg = self.cfg
        lengths = bptt_lengths(self.train_data.size(0) - 1, cfg.bptt, cfg.max_seq_len_delta,
                               np.random.default_rng([cfg.seed, epoch]))
        return segments(self.train_data, cfg.bptt, "train", lengths)

    def save_best(self) -> None:
        with self.stepper.average.swapped():
            save_torch(self.run.file(MODEL), self.model.state_dict())

    def fit(self) -> dict[str, Any]:
        """Train for ``cfg.epochs`` epochs (resuming when ``run.resume``; writes ``curves.png``);
        returns the summary of the best validation model. A diverged run ends with one ``StopRun``
        error (``nasp.rnn.diverge``)."""
        cfg = self.cfg

        def evaluate(model: nn.Module) -> dict[str, float]:
            nll = self.nll(self.valid_data)
            return {"valid_loss": nll, "valid_ppl": perplexity(nll)}

        hooks = [Perplexities(lambda: perplexity(self.evaluate(self.valid_data))), *self.watches,
                 KeepBest("valid_loss", self.save_best),
                 Curves(self.run.file(CURVES), ("train_loss", "valid_loss", "valid_ppl"), f"retraining ({cfg.epochs} epochs)")]
        rows = RunLoop(self.stepper, self.train_segments, evaluate, cfg.epochs, self.run, hooks=hooks, stage="train")()
        best = torch.load(self.run.file(MODEL), map_location=self.device, weights_only=True)
        self.model.load_state_dict(best)
        self.stepper.average.avg = None  # the saved model already holds the averaged weights
        valid_loss, test_loss = self.evaluate(self.valid_data), self.evaluate(self.test_data)
        return {
            "valid_ppl": perplexity(valid_loss),
            "test_ppl": perplexity(test_loss),
            "params": sum(p.numel() for p in self.model.parameters()),
            "epochs": cfg.epochs,
            "initial_valid_ppl": rows[0].get("initial_valid_ppl") if rows else None,
            "asgd_epoch": None if self.asgd_epoch is None else self.asgd_epoch + 1,  # counted from 1
            "train_seconds": round(sum(r["seconds"] for r in rows), 3),
            "genotype": self.model.genotype.to_json(),
        }

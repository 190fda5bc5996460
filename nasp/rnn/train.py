"""Retraining a recurrent genotype: SGD, then averaged SGD (the NT-ASGD switch of AWD-LSTM and
DARTS), gradient clipping, variable BPTT, the best model on validation, test perplexity."""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..runs import RunDir, progress, rng_state, save_torch, set_rng_state
from .corpus import Corpus, batchify, segments
from .diverge import DivergenceWatch
from .genotypes import RecurrentGenotype
from .model import TRAIN_DROPOUTS, Dropouts, LMLoss, RecurrentModel, evaluate_nll

log = logging.getLogger("nasp")
MODEL = "model.pt"


@dataclass
class TrainConfig:
    """Settings of a retraining (defaults: DARTS' recurrent evaluation, 850 units, batch 64)."""

    epochs: int = 8000
    batch_size: int = 64
    eval_batch_size: int = 10
    bptt: int = 35
    emb_size: int = 850
    hidden_size: int = 850
    lr: float = 20.0
    weight_decay: float = 8e-7
    clip: float = 0.25
    nonmono: int = 5
    tar: float = 1e-3
    max_seq_len_delta: int = 20
    dropouts: Dropouts = field(default_factory=lambda: TRAIN_DROPOUTS)
    seed: int = 0


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
        self.avg, self.count = state["avg"], int(state["count"])


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


class Trainer:
    """Trains a ``RecurrentModel`` on a corpus, one checkpoint per epoch in ``run``."""

    def __init__(self, corpus: Corpus, genotype: RecurrentGenotype, cfg: TrainConfig, run: RunDir, device: torch.device) -> None:
        self.cfg, self.run, self.device = cfg, run, device
        self.model = RecurrentModel(len(corpus.vocab), genotype, cfg.emb_size, cfg.hidden_size, cfg.dropouts).to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.average = ParameterAverage(self.params)
        self.loss = LMLoss(tar=cfg.tar)
        self.train_data = batchify(corpus.train, cfg.batch_size, device, "train")
        self.valid_data = batchify(corpus.valid, cfg.eval_batch_size, device, "valid")
        self.test_data = batchify(corpus.test, cfg.eval_batch_size, device, "test")
        self.history: list[float] = []
        self.best_loss: Optional[float] = None
        self.asgd_epoch: Optional[int] = None
        self.start_epoch = 0
        self.watch = DivergenceWatch("train_loss", ceiling=math.log(len(corpus.vocab)))

    def evaluate(self, data: Tensor) -> float:
        self.model.eval()
        try:
            with self.average.swapped():
                return evaluate_nll(self.model, data, self.cfg.bptt)
        finally:
            self.model.train()

    def train_epoch(self, epoch: int) -> Tensor:
        cfg = self.cfg
        self.model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        lengths = bptt_lengths(self.train_data.size(0) - 1, cfg.bptt, cfg.max_seq_len_delta, rng)
        total = self.train_data.new_zeros((), dtype=torch.float32)
        count = 0
        segs = segments(self.train_data, cfg.bptt, "train", lengths)
        for seg in progress(segs, len(segs), f"epoch {epoch + 1}/{cfg.epochs}"):
            for group in self.optimizer.param_groups:  # longer segments get a larger step
                group["lr"] = cfg.lr * seg.inputs.size(0) / cfg.bptt
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model, seg)
            loss.backward()
            nn.utils.clip_grad_norm_(self.params, cfg.clip)
            self.optimizer.step()
            self.average.update()
            total += loss.detach()
            count += 1
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr
        return total / max(count, 1)

    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "average": self.average.state_dict(),
            "history": list(self.history),
            "best_loss": self.best_loss,
            "asgd_epoch": self.asgd_epoch,
            "watch": self.watch.state_dict(),
            "rng": rng_state(),
        }

    def restore(self) -> None:
        """Continue from the run's checkpoint (``--resume``)."""
        if not self.run.has_checkpoint():
            self.run.truncate_metrics(0)
            return
        state = self.run.load_checkpoint(map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average.load_state_dict(state["average"])
        self.history = list(state["history"])
        self.best_loss = state["best_loss"]
        self.asgd_epoch = state["asgd_epoch"]
        if "watch" in state:
            self.watch.load_state_dict(state["watch"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"]) + 1
        self.run.truncate_metrics(self.start_epoch)

    def fit(self) -> dict[str, Any]:
        """Train for ``cfg.epochs`` epochs; returns the summary (best validation model)."""
        cfg = self.cfg
        if self.run.resume:
            self.restore()
        initial = None
        if self.start_epoch == 0:
            initial = math.exp(min(self.evaluate(self.valid_data), 700.0))
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            train_loss = float(self.train_epoch(epoch))
            self.watch.update(epoch, train_loss)
            val_loss = self.evaluate(self.valid_data)
            if self.best_loss is None or val_loss < self.best_loss:
                self.best_loss = val_loss
                with self.average.swapped():
                    save_torch(self.run.file(MODEL), self.model.state_dict())
            if (not self.average.active and len(self.history) > cfg.nonmono
                    and val_loss > min(self.history[: -cfg.nonmono])):
                self.average.start()
                self.asgd_epoch = epoch
                log.info("switching to averaged SGD at epoch %d", epoch + 1)
            self.history.append(val_loss)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_ppl": math.exp(min(train_loss, 700.0)),
                   "valid_loss": val_loss, "valid_ppl": math.exp(min(val_loss, 700.0)),
                   "averaging": self.average.active, "seconds": round(time.perf_counter() - t0, 4)}
            if initial is not None and epoch == 0:
                row["initial_valid_ppl"] = initial
            self.run.append_metrics(row)
            self.run.save_checkpoint(self.state(epoch))
            log.info("epoch %d/%d %s", epoch + 1, cfg.epochs, row)
        rows = self.run.read_metrics()
        best = torch.load(self.run.file(MODEL), map_location=self.device, weights_only=True)
        self.model.load_state_dict(best)
        self.average.avg = None  # the saved model already holds the averaged weights
        valid_loss, test_loss = self.evaluate(self.valid_data), self.evaluate(self.test_data)
        return {
            "valid_ppl": math.exp(min(valid_loss, 700.0)),
            "test_ppl": math.exp(min(test_loss, 700.0)),
            "params": sum(p.numel() for p in self.model.parameters()),
            "epochs": cfg.epochs,
            "initial_valid_ppl": rows[0].get("initial_valid_ppl") if rows else None,
            "asgd_epoch": None if self.asgd_epoch is None else self.asgd_epoch + 1,  # counted from 1
            "train_seconds": round(sum(r["seconds"] for r in rows), 3),
            "genotype": self.model.genotype.to_json(),
        }

"""Cell search on a corpus with any registered strategy, through the shared run loop."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import click
import torch

from .. import prox
from ..budget import RecordCosts, summary as budget_summary
from ..options import AMOUNT, LEARNING_RATE, WARMUP_EPOCHS
from ..config import setting, with_defaults
from ..devices import autocast_loss
from ..distributed import check_shards
from ..plots import Curves
from ..devices import peak_memory_mb
from ..loop import Hook, run_search
from ..runs import RunDir
from ..strategies import STRATEGIES, SearchProblem, Strategy, build_strategy, check_search_strategy, search_strategy_names
from ..strategies.base import SearchOptions
from ..strategies.darts import UNROLLED, UNROLLED_HELP
from ..strategies.proximal import check_warmup
from .config import RNNConfig, positive
from .corpus import Corpus, batchify, segments
from .diverge import DivergenceWatch, ValidationWatch
from .genotypes import RecurrentGenotype
from .model import (SEARCH_DROPOUTS, LMLoss, RNNSearchNetwork, evaluate_nll, perplexity,
                    segment_streams)
from .spaces import SPACES, RecurrentSpace

CURVES = "curves.png"


@dataclass
@with_defaults(epochs=50, batch_size=256, emb_size=300, hidden_size=300, weight_decay=5e-7, dropoute=SEARCH_DROPOUTS.embedding)
class SearchConfig(RNNConfig):
    """Settings of an RNN search, each declared once (field = option; defaults: DARTS' recurrent
    search, batch 256, BPTT 35)."""

    strategy: str = setting("nasp", f"Search method: {', '.join(search_strategy_names('rnn'))}.")
    space: str = setting("darts", f"Search space: {', '.join(SPACES.names())}.")
    arch_lr: float = setting(3e-4, "Adam learning rate of the architecture (the NASP authors' rate; DARTS' RNN search "
                             "uses 3e-3, at which NASP's cells can collapse to identities on small corpora: "
                             "docs/results/rnn.md).", type=LEARNING_RATE)
    arch_weight_decay: float = 1e-3
    arch_dropout: bool = setting(True, "Keep the dropouts on in the architecture steps (as DARTS does); --no-arch-dropout: the "
                                 "architecture's loss on the validation batch runs without dropout (and without the TAR term).",
                                 secondary="--no-arch-dropout")
    # options only some strategies read; None: not given (the strategy's default; the others stay silent)
    candidates: Optional[int] = setting(None, "random only: architectures tried (default: 10).", type=click.INT, callback=positive)
    warmup_epochs: Union[int, str, None] = setting(
        None, "nasp/no-auto only: first train the weights alone on random discrete cells for this many epochs ('auto': until "
        "the validation perplexity stops improving; default: 0).", type=WARMUP_EPOCHS)
    unrolled: Optional[str] = setting(None, UNROLLED_HELP, type=click.Choice(list(UNROLLED)))
    max_params: Optional[float] = setting(
        None, "Hard budget: parameters of the recurrent cell's matrices at --emb-size/--hidden-size ((E + H) x 2H + nodes x H x "
        "2H; K/M/G suffixes). Every node has its matrix whatever it picks, so in these spaces every cell has the same count: "
        "the budget is checked before the search and never changes the cell (the summary reports it).", type=AMOUNT)

    def budget(self) -> Optional[prox.BudgetedCellProjection]:
        """The budgeted projection of ``max_params`` (None without one); a budget below the cell's
        matrices is one ``NaspError``."""
        if self.max_params is None:
            return None
        space = SPACES.get(self.space)
        return prox.BudgetedCellProjection(space.edges_per_node, cell_costs(space, self.emb_size, self.hidden_size),
                                           self.max_params, k=1, label="--max-params",
                                           unit=f"parameters in the cell's matrices at --emb-size {self.emb_size} "
                                                f"--hidden-size {self.hidden_size}")

    def validate(self, corpus: Corpus) -> None:
        """Names, the warm-up and the batch sizes against ``corpus`` (``nasp.config``: called before
        the run directory exists)."""
        check_search_strategy(self.strategy, "rnn")
        if STRATEGIES.get(self.strategy).uses_warmup and self.warmup_epochs is not None:  # the others warn
            check_warmup(self.warmup_epochs, self.epochs)
        SPACES.get(self.space)
        check_shards(self.batch_size, "--batch-size")  # the streams are split over torchrun's processes
        check_shards(self.eval_batch_size, "--eval-batch-size")
        batchify(corpus.train, self.batch_size, split="train")
        batchify(corpus.valid, self.batch_size, split="valid")  # the architecture steps' batches
        batchify(corpus.valid, self.eval_batch_size, split="valid")
        self.budget()


def cell_matrices(space: RecurrentSpace, emb_size: int, hidden_size: int) -> int:
    """Parameters of the recurrent cell's matrices: ``W0`` ((E + H) x 2H) and one H x 2H matrix per
    node. Every node has its matrix whatever predecessor and activation it picks, so every cell of a
    space has this count."""
    return (emb_size + hidden_size) * 2 * hidden_size + space.steps * hidden_size * 2 * hidden_size


def cell_costs(space: RecurrentSpace, emb_size: int, hidden_size: int) -> prox.CellCosts:
    """The cell's parameter costs for ``nasp.prox.BudgetedCellProjection``: no entry adds a matrix
    (all zero), the matrices are the fixed part."""
    return prox.CellCosts((torch.zeros(space.num_rows, len(space.activations), dtype=torch.float64),),
                          float(cell_matrices(space, emb_size, hidden_size)))


def build_search(corpus: Corpus, cfg: SearchConfig, device: torch.device) -> tuple[Strategy, LMLoss]:
    """Network, loss and strategy for ``cfg`` (call after seeding)."""
    net = RNNSearchNetwork(len(corpus.vocab), SPACES.get(cfg.space), cfg.emb_size, cfg.hidden_size, cfg.dropouts).to(device)
    net.set_budget(cfg.budget())
    loss = LMLoss(tar=cfg.tar)
    problem = SearchProblem(
        network=net,
        loss=autocast_loss(loss if cfg.arch_dropout else WithoutDropoutOn(loss, "valid"), device, cfg.amp),
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=cfg.lr, weight_decay=cfg.weight_decay),
        metric="valid_ppl",
        higher_is_better=False,
        grad_clip=cfg.clip,
        arch_lr=cfg.arch_lr,
        arch_betas=(0.9, 0.999),
        arch_weight_decay=cfg.arch_weight_decay,
        options=SearchOptions(seed=cfg.seed, warmup_epochs=cfg.warmup_epochs, candidates=cfg.candidates,
                              unrolled=cfg.unrolled),
        examples=segment_streams,
    )
    return build_strategy(cfg.strategy, problem, cfg.epochs), loss


class WithoutDropoutOn:
    """``loss(model, segment)`` that runs the segments of ``stream`` (the architecture steps'
    validation batches) with the model's dropouts off (eval mode, still differentiable), the others
    as ``loss`` does."""

    def __init__(self, loss: LMLoss, stream: str) -> None:
        self.loss, self.stream = loss, stream

    def __call__(self, model: torch.nn.Module, seg: Any) -> torch.Tensor:
        if seg.stream != self.stream or not model.training:
            return self.loss(model, seg)
        model.eval()
        try:
            return self.loss(model, seg)
        finally:
            model.train()


def search(corpus: Corpus, cfg: SearchConfig, run: RunDir, device: torch.device, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
    """Run the search (resuming when ``run.resume``; writes ``curves.png``); returns the genotype
    and the summary. A diverged run ends with one ``StopRun`` error (``nasp.rnn.diverge``).
    ``hooks``: extra run-loop hooks after the run's own (e.g. a benchmark's per-epoch measurements)."""
    strategy, _ = build_search(corpus, cfg, device)
    world = strategy.world  # in a data-parallel run each rank trains on its share of the streams
    train = world.shard(batchify(corpus.train, cfg.batch_size, device, "train"), 1)
    valid = world.shard(batchify(corpus.valid, cfg.batch_size, device, "valid"), 1)
    valid_eval = batchify(corpus.valid, cfg.eval_batch_size, device, "valid")
    train_segments = segments(train, cfg.bptt, "train")
    valid_segments = segments(valid, cfg.bptt, "valid")

    def evaluate(net: RNNSearchNetwork) -> dict[str, float]:
        nll = evaluate_nll(net, valid_eval, cfg.bptt, world)
        return {"valid_loss": nll, "valid_ppl": perplexity(nll)}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    watches = [DivergenceWatch("train_loss", ceiling=math.log(len(corpus.vocab))), ValidationWatch(len(corpus.vocab))]
    curves = Curves(run.file(CURVES), ("train_loss", "arch_loss", "valid_loss", "valid_ppl"), f"{cfg.strategy} search ({cfg.space} space)")
    params = cell_matrices(SPACES.get(cfg.space), cfg.emb_size, cfg.hidden_size)
    rows = run_search(strategy, lambda epoch: train_segments, lambda i: valid_segments, evaluate, cfg.epochs, run,
                      hooks=[*watches, curves, RecordCosts(lambda architecture: {"cell_params": params}), *hooks], stage="search")
    genotype = RecurrentGenotype.from_json(strategy.export(), source="exported genotype")
    best = getattr(strategy, "best_score", None)
    summary = {
        "strategy": cfg.strategy,
        "space": cfg.space,
        "epochs": cfg.epochs,
        "search_seconds": round(sum(r["seconds"] for r in rows), 3),
        "seconds_per_epoch": round(sum(r["seconds"] for r in rows) / max(len(rows), 1), 3),
        "train_seconds_per_epoch": round(sum(r["train_seconds"] for r in rows) / max(len(rows), 1), 3),
        "steps_per_epoch": len(train_segments),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "valid_ppl": float(best) if best is not None else rows[-1]["valid_ppl"],
        "valid_score_of": strategy.validates,
        "genotype": genotype.to_json(),
        "cell_params": params,
        "budget": None if strategy.network.budget is None else budget_summary(
            strategy.network.budget, "params", "--max-params", params, strategy.budget_binding(),
            f"recurrent cell matrices at --emb-size {cfg.emb_size} --hidden-size {cfg.hidden_size}"),
    }
    return {"genotype": genotype, "summary": summary, "rows": rows}

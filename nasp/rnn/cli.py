"""``nasp rnn``: recurrent cell search and retraining on a word-level corpus (PTB)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import click

from ..commands import (AMOUNT, LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, FiniteFloatRange, RequiredUnlessResume, RunCommand,
                        amp_option, data_dir_option, finish_run, resume_option, run_options, start_run, threads_option)
from ..errors import NaspError
from ..runs import ARCH
from ..strategies import search_strategy_names
from ..strategies.darts import UNROLLED
from .corpus import load_corpus
from .genotypes import GENOTYPES, load_genotype
from .model import SEARCH_DROPOUTS, TRAIN_DROPOUTS, Dropouts
from .plot import draw_cell
from .search import SearchConfig, search as run_cell_search
from .spaces import SPACES
from .train import Trainer, TrainConfig

CELL_PNG = "cell.png"


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and not 0 <= value < 1:
        raise click.BadParameter("must be in [0, 1)")
    return value


def common_options(defaults: Any, dropouts: Dropouts) -> Callable[[Callable], Callable]:
    """Options shared by ``search`` and ``train`` (contract ones first), with per-command defaults."""

    def decorate(f: Callable) -> Callable:
        extra = [
            click.option("--dropout", type=float, default=dropouts.output, show_default=True, callback=_rate,
                         help="Locked dropout on the cell output."),
            click.option("--dropouth", type=float, default=dropouts.hidden, show_default=True, callback=_rate,
                         help="Variational dropout on states entering a matrix."),
            click.option("--dropoutx", type=float, default=dropouts.x, show_default=True, callback=_rate,
                         help="Variational dropout on x_t entering the cell."),
            click.option("--dropouti", type=float, default=dropouts.input, show_default=True, callback=_rate,
                         help="Locked dropout on the embedded input."),
            click.option("--dropoute", type=float, default=dropouts.embedding, show_default=True, callback=_rate,
                         help="Embedding dropout (whole words)."),
            click.option("--tar", type=WEIGHT, default=defaults.tar, show_default=True,
                         help="Temporal activation regularization weight."),
            click.option("--clip", type=FiniteFloatRange(min=0, min_open=True), default=defaults.clip, show_default=True,
                         help="Max gradient norm of the weights."),
            click.option("--weight-decay", type=WEIGHT, default=defaults.weight_decay, show_default=True,
                         help="SGD weight decay of the weights."),
            click.option("--lr", type=LEARNING_RATE, default=defaults.lr, show_default=True,
                         help="SGD learning rate of the weights."),
            click.option("--eval-batch-size", type=int, default=defaults.eval_batch_size, show_default=True,
                         callback=_positive, help="Batch size of validation/test perplexity."),
            data_dir_option,
            click.option("--hidden-size", type=int, default=defaults.hidden_size, show_default=True, callback=_positive,
                         help="Size of the recurrent state."),
            click.option("--emb-size", type=int, default=defaults.emb_size, show_default=True, callback=_positive,
                         help="Size of the word embeddings."),
            click.option("--bptt", type=int, default=defaults.bptt, show_default=True, callback=_positive,
                         help="Back-propagation through time: tokens per segment."),
            click.option("--batch-size", type=int, default=defaults.batch_size, show_default=True, callback=_positive,
                         help="Sequences per step."),
            click.option("--epochs", type=int, default=defaults.epochs, show_default=True, callback=_positive,
                         help="Training epochs (search epochs for search, warm-up included)."),
            click.option("--data", cls=RequiredUnlessResume,
                         help="Corpus folder (ptb.{train,valid,test}.txt or {train,valid,test}.txt) or a known name (ptb)."),
        ]
        for option in extra:
            f = option(f)
        return run_options(amp_option(threads_option(f)))

    return decorate


def _dropouts(opts: dict) -> Dropouts:
    return Dropouts(output=opts["dropout"], hidden=opts["dropouth"], x=opts["dropoutx"],
                    input=opts["dropouti"], embedding=opts["dropoute"])


def _require(opts: dict, *names: str) -> None:
    for name in names:
        if not opts["resume"] and opts.get(name) is None:
            raise NaspError(f"--{name} is required (except with --resume)")


def _config(cls: type, opts: dict) -> Any:
    names = {f.name for f in fields(cls)} - {"dropouts"}
    return cls(dropouts=_dropouts(opts), **{k: opts[k] for k in names if k in opts})


@click.group()
def rnn() -> None:
    """Recurrent cells for language modelling: search and retrain.

    Penn Treebank and DARTS' recurrent space by default.
    """


@rnn.command(cls=RunCommand)
@common_options(SearchConfig(), SEARCH_DROPOUTS)
@click.option("--strategy", default="nasp", show_default=True,
              help=f"Search method: {', '.join(search_strategy_names())}.")
@click.option("--space", default="darts", show_default=True, help=f"Search space: {', '.join(SPACES.names())}.")
@click.option("--arch-lr", type=LEARNING_RATE, default=SearchConfig.arch_lr, show_default=True,
              help="Adam learning rate of the architecture.")
@click.option("--candidates", type=int, default=None, callback=_positive,
              help="random only: architectures tried (default: 10).")
@click.option("--warmup-epochs", type=WARMUP_EPOCHS, default=None,
              help="nasp/no-auto only: first train the weights alone on random discrete cells for this many epochs "
                   "('auto': until the validation perplexity stops improving; default: 0).")
@click.option("--unrolled", type=click.Choice(list(UNROLLED)), default=None,
              help="darts2 only: the unrolled weight step, plain (w - xi * grad; the default) or darts (DARTS' code: the step of the real optimizer, with its momentum buffer and weight decay).")
@click.option("--max-params", type=AMOUNT, default=None,
              help="Hard budget: parameters of the recurrent cell's matrices at --emb-size/--hidden-size "
                   "((E + H) x 2H + nodes x H x 2H; K/M/G suffixes). Every node has its matrix whatever it picks, so in "
                   "these spaces every cell has the same count: the budget is checked before the search and never "
                   "changes the cell (the summary reports it).")
@resume_option
def search(**opts: Any) -> None:
    """Search a recurrent cell.

    Writes arch.json (the genotype), cell.png, curves.png and summary.json. A run that diverges
    stops with one error line (see docs/rnn.md, "Divergence"): a training or validation loss that
    is not finite, or a validation perplexity more than 10x its best so far or 100x the vocabulary
    size; its last row, checkpoint and curves.png are still written.
    """
    _require(opts, "data")
    # the one pre-run validation (nasp.config): bad input fails before a run directory exists
    corpus = load_corpus(opts["data"], opts["data_dir"])
    cfg: SearchConfig = _config(SearchConfig, opts)
    cfg.validate(corpus)
    run, opts, device = start_run("rnn-search", opts)
    result = run_cell_search(corpus, cfg, run, device)
    genotype = result["genotype"]
    run.write_json(ARCH, genotype.to_json())
    draw_cell(genotype, run.file(CELL_PNG), title=f"{cfg.strategy} cell ({cfg.space} space)")
    finish_run(run, result["summary"], opts["as_json"])


@rnn.command(cls=RunCommand)
@common_options(TrainConfig(), TRAIN_DROPOUTS)
@click.option("--genotype", cls=RequiredUnlessResume,
              help=f"Genotype JSON file, a search run directory, or a published name ({', '.join(GENOTYPES.names())}).")
@click.option("--nonmono", type=int, default=TrainConfig.nonmono, show_default=True, callback=_positive,
              help="Switch to averaged SGD when validation has not improved on the best of all but the last N epochs.")
@resume_option
def train(**opts: Any) -> None:
    """Retrain a genotype.

    Writes model.pt (best on validation), cell.png, curves.png and summary.json. A run that
    diverges stops with one error line, as search does (docs/rnn.md, "Divergence").
    """
    _require(opts, "data", "genotype")
    # the one pre-run validation (nasp.config); a resumed run retrains the genotype it saved,
    # wherever --genotype points now
    saved = Path(opts["out"]) / ARCH if opts["resume"] and opts.get("out") is not None else None
    genotype = load_genotype(saved if saved is not None and saved.exists() else opts["genotype"])
    corpus = load_corpus(opts["data"], opts["data_dir"])
    cfg: TrainConfig = _config(TrainConfig, opts)
    cfg.validate(corpus)
    run, opts, device = start_run("rnn-train", opts)
    if not run.resume:
        run.write_json(ARCH, genotype.to_json())
        draw_cell(genotype, run.file(CELL_PNG), title="retrained cell")
    summary = Trainer(corpus, genotype, cfg, run, device).fit()
    finish_run(run, summary, opts["as_json"])

"""``nasp rnn``: recurrent cell search and retraining on a word-level corpus (PTB)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from ..commands import RequiredUnlessResume, RunCommand, finish_run, start_run
from ..options import amp_option, data_dir_option, options_from, resume_option, run_options, threads_option
from ..errors import NaspError
from ..runs import ARCH
from .config import RNNConfig
from .corpus import load_corpus
from .genotypes import GENOTYPES, load_genotype
from .plot import draw_cell
from .search import SearchConfig, search as run_cell_search
from .train import Trainer, TrainConfig

CELL_PNG = "cell.png"

SIZES = ("epochs", "batch_size", "bptt", "emb_size", "hidden_size")
"""The shared settings that ``--help`` lists before ``--data-dir``."""


def config_options(config: type) -> Callable[[Callable], Callable]:
    """The run's options, ``--data`` and those of the settings both commands share (``RNNConfig``,
    with ``config``'s defaults), in the order of ``--help``; the command's own follow (``own_options``)."""
    shared = RNNConfig.field_names()

    def decorate(f: Callable) -> Callable:
        f = data_dir_option(options_from(config, names=[name for name in shared if name not in SIZES])(f))
        f = click.option("--data", cls=RequiredUnlessResume,
                         help="Corpus folder (ptb.{train,valid,test}.txt or {train,valid,test}.txt) or a known name (ptb).")(
            options_from(config, names=SIZES)(f))
        return run_options(amp_option(threads_option(f)))

    return decorate


def own_options(config: type) -> Callable[[Callable], Callable]:
    """The options of the settings of ``config`` alone (not ``RNNConfig``'s)."""
    return options_from(config, leave_out=RNNConfig.field_names())


def _require(opts: dict, *names: str) -> None:
    for name in names:
        if not opts["resume"] and opts.get(name) is None:
            raise NaspError(f"--{name} is required (except with --resume)")


@click.group()
def rnn() -> None:
    """Recurrent cells for language modelling: search and retrain.

    Penn Treebank and DARTS' recurrent space by default.
    """


@rnn.command(cls=RunCommand)
@config_options(SearchConfig)
@own_options(SearchConfig)
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
    cfg = SearchConfig.of(opts)
    cfg.validate(corpus)
    run, opts, device = start_run("rnn-search", opts)
    result = run_cell_search(corpus, cfg, run, device)
    genotype = result["genotype"]
    run.write_json(ARCH, genotype.to_json())
    draw_cell(genotype, run.file(CELL_PNG), title=f"{cfg.strategy} cell ({cfg.space} space)")
    finish_run(run, result["summary"], opts["as_json"])


@rnn.command(cls=RunCommand)
@config_options(TrainConfig)
@click.option("--genotype", cls=RequiredUnlessResume,
              help=f"Genotype JSON file, a search run directory, or a published name ({', '.join(GENOTYPES.names())}).")
@own_options(TrainConfig)
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
    cfg = TrainConfig.of(opts)
    cfg.validate(corpus)
    run, opts, device = start_run("rnn-train", opts)
    if not run.resume:
        run.write_json(ARCH, genotype.to_json())
        draw_cell(genotype, run.file(CELL_PNG), title="retrained cell")
    summary = Trainer(corpus, genotype, cfg, run, device).fit()
    finish_run(run, summary, opts["as_json"])

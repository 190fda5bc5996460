"""``nasp cnn``: cell search (``search``) and retraining of a genotype (``train``)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from typing import Callable, Iterator

import click

from ..commands import WARMUP_EPOCHS, RunCommand, data_dir_option, finish_run, resume_option, run_options, start_run, threads_option
from ..errors import NaspError
from ..runs import CONFIG, LOCK, RunDir
from ..strategies import check_search_strategy, search_strategy_names
from ..strategies.darts import UNROLLED
from . import data as _data  # noqa: F401  (registers cifar10 for `nasp data list/fetch`)
from .defaults import SEARCH as SEARCH_DEFAULTS, TRAIN as TRAIN_DEFAULTS, help_text
from .genotypes import GENOTYPES
from .model import MODELS
from .spaces import SPACES


@contextmanager
def _cleanup_on_error(run: RunDir) -> Iterator[None]:
    """A fresh run that fails before its first epoch leaves no directory behind (so the same
    ``--out`` can be used again); later failures keep the checkpoint for ``--resume``."""
    try:
        yield
    except (NaspError, KeyboardInterrupt):
        if not run.resume and {p.name for p in run.path.iterdir()} <= {CONFIG, LOCK, "metrics.jsonl"}:
            if not run.file("metrics.jsonl").exists() or run.file("metrics.jsonl").stat().st_size == 0:
                shutil.rmtree(run.path, ignore_errors=True)
        raise


def _run(command: str, opts: dict, body: Callable[[dict, RunDir, object], dict]) -> None:
    run, opts, device = start_run(command, opts)
    with _cleanup_on_error(run):
        summary = body(opts, run, device)
    finish_run(run, summary, opts["as_json"])


def _common(f: Callable) -> Callable:
    """Options shared by search and train (beyond --seed --device --out --json)."""
    f = threads_option()(f)
    f = click.option("--amp", is_flag=True, help="bfloat16 autocast on CUDA (ignored on CPU).")(f)
    f = click.option("--image-size", type=int, default=None, help="Image side for ImageFolder data (default 224).")(f)
    f = click.option("--eval-batch-size", type=click.IntRange(min=1), default=None, help="Batch size of evaluation passes (default 2 x --batch-size).")(f)
    f = data_dir_option(f)
    return f


@click.group()
def cnn() -> None:
    """Image cells: search and retrain (DARTS/NASP spaces)."""


@cnn.command(cls=RunCommand)
@click.option("--space", default="darts", show_default=True, help=f"Search space: {', '.join(SPACES.names())}.")
@click.option("--strategy", default="nasp", show_default=True, help=f"Search method: {', '.join(search_strategy_names())}.")
@click.option("--data", default="cifar10", show_default=True, help="cifar10, digits, a CIFAR-10 folder/.tar.gz, or an ImageFolder (train/, val/).")
@click.option("--epochs", type=int, default=None, help=help_text(SEARCH_DEFAULTS, "epochs", "Search epochs"))
@click.option("--batch-size", type=int, default=None, help=help_text(SEARCH_DEFAULTS, "batch_size", "Batch size"))
@click.option("--layers", type=int, default=None, help=help_text(SEARCH_DEFAULTS, "layers", "Cells in the search network"))
@click.option("--channels", type=int, default=None, help=help_text(SEARCH_DEFAULTS, "channels", "Initial channels of the search network"))
@click.option("--eta", type=float, default=0.0, show_default=True, help="Weight of the model-size term (normal cell); larger gives smaller cells.")
@click.option("--lr", type=float, default=0.025, show_default=True, help="Weights: SGD learning rate (cosine schedule).")
@click.option("--lr-min", type=float, default=0.001, show_default=True, help="Weights: learning rate at the end of the cosine schedule.")
@click.option("--weight-decay", type=float, default=3e-4, show_default=True, help="Weights: SGD weight decay.")
@click.option("--arch-lr", type=float, default=None,
              help=help_text(SEARCH_DEFAULTS, "arch_lr", "Architecture: Adam learning rate; 3e-4 suits the paper's ~20k steps, short searches need more"))
@click.option("--train-portion", type=float, default=0.5, show_default=True, help="Share of the training set for the weights; the rest is architecture data.")
@click.option("--subset", type=int, default=None, help="Use only this many training examples (quick runs).")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="random only: architectures sampled (default: 10).")
@click.option("--nodes", type=int, default=4, show_default=True, help="Intermediate nodes per cell.")
@click.option("--warmup-epochs", type=WARMUP_EPOCHS, default=None,
              help="nasp/no-auto only: first train the weights alone on random discrete cells for this many epochs "
                   "('auto': until the validation accuracy stops improving; default: 0).")
@click.option("--unrolled", type=click.Choice(list(UNROLLED)), default=None,
              help="darts2 only: the unrolled weight step, plain (w - xi * grad; the default) or darts (DARTS' code: the step of the real optimizer, with its momentum buffer and weight decay).")
@_common
@run_options
@resume_option
def search(**opts) -> None:
    """Search a normal and a reduction cell.

    Writes arch.json, genotype.txt, cells.png and summary.json. Options left out take their data
    set's defaults (digits: a CPU-sized search; cifar10 and image folders: the paper's);
    config.json records the values used.
    """
    from .search import search as run_search_command

    if opts["nodes"] < 1:
        raise NaspError(f"--nodes {opts['nodes']}: must be at least 1")
    if not opts.get("resume"):
        SPACES.get(opts["space"])
        check_search_strategy(opts["strategy"])
    _run("cnn-search", opts, run_search_command)


@cnn.command(cls=RunCommand)
@click.option("--genotype", default="DARTS_V2", show_default=True,
              help=f"A name ({', '.join(GENOTYPES.names())}), a .json / Genotype(...) text file, a search run directory, or Genotype(...) text.")
@click.option("--data", default="cifar10", show_default=True, help="cifar10, digits, a CIFAR-10 folder/.tar.gz, or an ImageFolder (train/, val/).")
@click.option("--model", default="auto", show_default=True, help=f"auto (imagenet for ImageFolder data, else cifar), {', '.join(MODELS.names())}.")
@click.option("--epochs", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "epochs", "Training epochs"))
@click.option("--batch-size", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "batch_size", "Batch size"))
@click.option("--layers", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "layers", "Cells"))
@click.option("--channels", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "channels", "Initial channels"))
@click.option("--lr", type=float, default=0.025, show_default=True, help="SGD learning rate, cosine to 0.")
@click.option("--weight-decay", type=float, default=3e-4, show_default=True, help="SGD weight decay.")
@click.option("--auxiliary-weight", type=float, default=0.4, show_default=True, help="Auxiliary head loss weight (0: no head).")
@click.option("--drop-path", type=float, default=None,
              help=help_text(TRAIN_DEFAULTS, "drop_path", "Drop-path probability, ramped linearly from 0"))
@click.option("--cutout", type=int, default=None, help="Cutout square side (default 16 on CIFAR-10, else 0).")
@click.option("--label-smoothing", type=float, default=None, help="Default 0.1 for the imagenet model, else 0.")
@_common
@run_options
@resume_option
def train(**opts) -> None:
    """Train the evaluation network of a genotype.

    Writes arch.json, cells.png, curves.png, checkpoint.pt and summary.json (test_acc, params,
    flops). Options left out take their data set's defaults (digits: a CPU-sized network;
    cifar10: the paper's 20 cells x 36 channels; image folders: 14 x 48); config.json records
    the values used.
    """
    from .genotypes import load_genotype
    from .train import train as run_train_command

    if not opts.get("resume"):
        load_genotype(opts["genotype"])  # a bad genotype fails before a run directory exists
        if opts["model"] != "auto":
            MODELS.get(opts["model"])
    _run("cnn-train", opts, run_train_command)

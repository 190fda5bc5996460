"""``nasp cnn``: cell search (``search``) and retraining of a genotype (``train``)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from typing import Callable, Iterator

import click

from ..commands import (LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, FiniteFloatRange, RunCommand, data_dir_option, finish_run, resume_option,
                        run_options, start_run, threads_option)
from ..errors import NaspError
from ..runs import CONFIG, LOCK, RunDir
from ..strategies import search_strategy_names
from ..strategies.darts import UNROLLED
from .config import CNNSearchConfig, CNNTrainConfig
from .data import load_data  # also registers cifar10 for `nasp data list/fetch`
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


def _run(command: str, opts: dict, config_class: type, body: Callable[..., dict]) -> None:
    """The one pre-run validation (``nasp.config``): read the data, build the typed config with the
    data set's defaults, check it, and only then open the run directory, whose config.json records
    the resolved values (a ``--resume`` goes through the same steps on the saved ones)."""
    data = load_data(opts["data"], opts.get("data_dir"), opts.get("image_size"))
    config = config_class.from_options(opts, data)
    config.validate(data)
    run, _, device = start_run(command, {**opts, **config.options()})
    with _cleanup_on_error(run):
        summary = body(config, run, device, data)
    finish_run(run, summary, opts["as_json"])


def _common(f: Callable) -> Callable:
    """Options shared by search and train (beyond --seed --device --out --json)."""
    f = threads_option()(f)
    f = click.option("--amp", is_flag=True, help="bfloat16 autocast on CUDA (ignored on CPU).")(f)
    f = click.option("--image-size", type=click.IntRange(min=1), default=None, help="Image side for ImageFolder data (default 224).")(f)
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
@click.option("--eta", type=WEIGHT, default=CNNSearchConfig.eta, show_default=True, help="Weight of the model-size term (normal cell); larger gives smaller cells.")
@click.option("--lr", type=LEARNING_RATE, default=CNNSearchConfig.lr, show_default=True, help="Weights: SGD learning rate (cosine schedule).")
@click.option("--lr-min", type=WEIGHT, default=CNNSearchConfig.lr_min, show_default=True, help="Weights: learning rate at the end of the cosine schedule (at most --lr).")
@click.option("--weight-decay", type=WEIGHT, default=CNNSearchConfig.weight_decay, show_default=True, help="Weights: SGD weight decay.")
@click.option("--arch-lr", type=LEARNING_RATE, default=None,
              help=help_text(SEARCH_DEFAULTS, "arch_lr", "Architecture: Adam learning rate; 3e-4 suits the paper's ~20k steps, short searches need more"))
@click.option("--train-portion", type=float, default=CNNSearchConfig.train_portion, show_default=True, help="Share of the training set for the weights; the rest is architecture data.")
@click.option("--subset", type=int, default=None, help="Use only this many training examples (quick runs).")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="random only: architectures sampled (default: 10).")
@click.option("--nodes", type=int, default=CNNSearchConfig.nodes, show_default=True, help="Intermediate nodes per cell.")
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

    _run("cnn-search", opts, CNNSearchConfig, run_search_command)


@cnn.command(cls=RunCommand)
@click.option("--genotype", default=CNNTrainConfig.genotype, show_default=True,
              help=f"A name ({', '.join(GENOTYPES.names())}), a .json / Genotype(...) text file, a search run directory, or Genotype(...) text.")
@click.option("--data", default="cifar10", show_default=True, help="cifar10, digits, a CIFAR-10 folder/.tar.gz, or an ImageFolder (train/, val/).")
@click.option("--model", default="auto", show_default=True, help=f"auto (imagenet for ImageFolder data, else cifar), {', '.join(MODELS.names())}.")
@click.option("--epochs", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "epochs", "Training epochs"))
@click.option("--batch-size", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "batch_size", "Batch size"))
@click.option("--layers", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "layers", "Cells"))
@click.option("--channels", type=int, default=None, help=help_text(TRAIN_DEFAULTS, "channels", "Initial channels"))
@click.option("--lr", type=LEARNING_RATE, default=CNNTrainConfig.lr, show_default=True, help="SGD learning rate, cosine to 0.")
@click.option("--weight-decay", type=WEIGHT, default=CNNTrainConfig.weight_decay, show_default=True, help="SGD weight decay.")
@click.option("--auxiliary-weight", type=WEIGHT, default=CNNTrainConfig.auxiliary_weight, show_default=True, help="Auxiliary head loss weight (0: no head).")
@click.option("--drop-path", type=FiniteFloatRange(min=0, max=1, max_open=True), default=None,
              help=help_text(TRAIN_DEFAULTS, "drop_path", "Drop-path probability, ramped linearly from 0"))
@click.option("--cutout", type=click.IntRange(min=0), default=None, help="Cutout square side (default 16 on CIFAR-10, else 0).")
@click.option("--label-smoothing", type=FiniteFloatRange(min=0, max=1), default=None, help="Default 0.1 for the imagenet model, else 0.")
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
    from .train import train as run_train_command

    _run("cnn-train", opts, CNNTrainConfig, run_train_command)

"""``nasp cnn``: cell search (``search``) and retraining of a genotype (``train``)."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import click

from ..commands import (AMOUNT, LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, FiniteFloatRange, RunCommand, amp_option, data_dir_option, finish_run, resume_option,
                        run_options, start_run, threads_option)
from ..errors import NaspError
from ..runs import CONFIG, LOCK, RunDir
from ..strategies import search_strategy_names
from ..strategies.darts import UNROLLED
from .config import CNNSearchConfig, CNNTrainConfig
from .costs import NETWORKS
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
    f = threads_option(f)
    f = amp_option(f)
    f = click.option("--image-size", type=click.IntRange(min=1), default=None, help="Image side for ImageFolder data (default 224).")(f)
    f = click.option("--eval-batch-size", type=click.IntRange(min=1), default=None, help="Batch size of evaluation passes (default 2 x --batch-size).")(f)
    f = data_dir_option(f)
    return f


def _budget_options(f: Callable) -> Callable:
    """The hard budgets of ``cnn search`` (docs/cnn.md, "Budgets")."""
    what = ("Every iterate and the exported cell fit it (nasp, no-auto, gdas: the projection; random: only cells "
            "that fit are sampled; darts, darts2: the exported cell is the budgeted projection of the softmax weights). "
            "K/M/G suffixes; one budget at a time; with --eta both apply (the budget hard, eta a soft size term inside it).")
    options = [
        click.option("--eval-channels", type=int, default=None,
                     help=help_text(TRAIN_DEFAULTS, "channels", "--cost-network eval: initial channels of the evaluation network")),
        click.option("--eval-layers", type=int, default=None,
                     help=help_text(TRAIN_DEFAULTS, "layers", "--cost-network eval: cells of the evaluation network (nasp cnn train's --layers)")),
        click.option("--cost-network", type=click.Choice(NETWORKS.names()), default=CNNSearchConfig.cost_network, show_default=True,
                     help="The network the costs are counted in: eval (what nasp cnn train builds: --eval-layers x "
                          "--eval-channels, no auxiliary head) or search (the search network's --layers x --channels)."),
        click.option("--latency-table", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Per-op latencies from nasp cnn profile-ops (needed by --max-latency-ms; with it every epoch "
                          "records its latency too)."),
        click.option("--max-latency-ms", type=AMOUNT, default=None,
                     help="Hard budget: milliseconds per forward of the cost network, summed from --latency-table. " + what),
        click.option("--max-madds", type=AMOUNT, default=None,
                     help="Hard budget: multiply-adds of one image through the cost network (600M). " + what),
        click.option("--max-params", type=AMOUNT, default=None,
                     help="Hard budget: parameters of the cost network (3.0M). " + what),
    ]
    for option in options:
        f = option(f)
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
@click.option("--eta", type=WEIGHT, default=CNNSearchConfig.eta, show_default=True, help="Weight of the soft model-size term (normal cell, search width; nasp, no-auto); larger gives smaller cells. For a hard limit use --max-params (both may be given).")
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
@_budget_options
@_common
@run_options
@resume_option
def search(**opts) -> None:
    """Search a normal and a reduction cell.

    Writes arch.json, genotype.txt, cells.png, curves.png, pareto.png and summary.json (each
    parameter count with the network it counts: docs/cnn.md). Options left out take their data
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


@cnn.command("profile-ops")
@click.option("--space", default="darts", show_default=True, help=f"Search space: {', '.join(SPACES.names())}.")
@click.option("--data", default="cifar10", show_default=True,
              help="The data the network will see (its image shape): cifar10, digits (known without reading), or a path.")
@click.option("--cost-network", type=click.Choice(NETWORKS.names()), default="eval", show_default=True,
              help="eval: the evaluation network of nasp cnn train; search: the search network (its defaults).")
@click.option("--model", default="auto", show_default=True, help=f"eval network: auto (imagenet for ImageFolder data, else cifar), {', '.join(MODELS.names())}.")
@click.option("--layers", type=int, default=None, help="Cells (default: nasp cnn train's for the data set; search: nasp cnn search's).")
@click.option("--channels", type=int, default=None, help="Initial channels (default: likewise).")
@click.option("--nodes", type=int, default=4, show_default=True, help="Intermediate nodes per cell.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Images per timed forward (the latency a budget limits).")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs per op; the table keeps the median.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed runs before the timed ones.")
@click.option("--image-size", type=click.IntRange(min=1), default=None, help="Image side for ImageFolder data (default 224).")
@data_dir_option
@threads_option
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N: the device that will serve the model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The latency table to write (JSON), for cnn search --latency-table.")
@click.option("--force", is_flag=True, help="Overwrite --out even when it exists and is not a latency table.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object.")
def profile_ops(**opts) -> None:
    """Measure each op's forward time at each position's shape.

    Every op of the space is timed alone at every shape where the network runs it (median of
    --repeats after --warmup runs, on --device), and so are the fixed modules (stem, the cells'
    preprocessing, classifier). cnn search --max-latency-ms sums a cell's entries from this table.
    """
    import torch

    from ..devices import resolve_device
    from .costs import CostNetwork, image_shape, is_latency_table, network_costs, profile_ops as measure, write_latency_table
    from .defaults import profile

    space = SPACES.get(opts["space"])
    shape = image_shape(opts["data"], opts["data_dir"], opts["image_size"])
    kind = opts["cost_network"]
    model = (shape.kind if opts["model"] == "auto" else opts["model"]) if kind == "eval" else "cifar"
    MODELS.get(model)
    table = (TRAIN_DEFAULTS if kind == "eval" else SEARCH_DEFAULTS).get(profile(shape.name, model))
    layers = opts["layers"] if opts["layers"] is not None else table["layers"]
    channels = opts["channels"] if opts["channels"] is not None else table["channels"]
    if layers < 1 or channels < 1 or opts["nodes"] < 1:
        raise NaspError(f"--layers {layers}, --channels {channels}, --nodes {opts['nodes']}: each must be at least 1")
    if model == "imagenet" and channels % 2:
        raise NaspError(f"--channels {channels}: the imagenet network needs an even number")
    if not Path(opts["out"]).parent.is_dir():
        raise NaspError(f"--out {opts['out']}: the folder {Path(opts['out']).parent} does not exist")
    if os.path.lexists(opts["out"]) and not opts["force"] and not is_latency_table(opts["out"]):
        raise NaspError(f"--out {opts['out']}: exists and is not a latency table; choose another file (or pass --force)")
    device = resolve_device(opts["device"])
    torch.set_num_threads(int(opts["threads"]))
    network = CostNetwork(kind, model, layers, channels, shape.in_channels, shape.num_classes, shape.image_size, opts["nodes"])
    latency = measure(space, network, device, opts["batch_size"], opts["repeats"], opts["warmup"])
    write_latency_table(latency, opts["out"])
    from ..prox import BudgetedCellProjection

    span = BudgetedCellProjection(network_costs(space, network).edges_per_node,
                                  network_costs(space, network).cell_costs("latency", latency), float("1e300"))
    summary = {"out": str(opts["out"]), "network": network.describe(), "space": space.name, "device": str(device),
               "entries": len(latency.ms), "base_ms": round(latency.base_ms, 6), "cheapest_cell_ms": round(span.cheapest, 6),
               "most_expensive_cell_ms": round(span.most_expensive, 6)}
    if opts["as_json"]:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:>24s}  {value}")

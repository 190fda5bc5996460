"""``nasp cnn``: cell search (``search``) and retraining of a genotype (``train``)."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import click

from ..commands import RunCommand, finish_run, start_run
from ..options import amp_option, data_dir_option, options_from, resume_option, run_options, threads_option
from ..errors import NaspError
from ..runs import CONFIG, LOCK, RunDir
from .config import CNNConfig, CNNSearchConfig, CNNTrainConfig
from .costs import NETWORKS
from .data import load_data  # also registers cifar10 for `nasp data list/fetch`
from .defaults import SEARCH as SEARCH_DEFAULTS, TRAIN as TRAIN_DEFAULTS
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


def config_options(config: type) -> Callable[[Callable], Callable]:
    """The options of ``config``'s settings (``CNNSearchConfig`` or ``CNNTrainConfig``): the
    command's own, then those both commands share, then the run's, in the order of ``--help``."""
    shared = CNNConfig.field_names()

    def decorate(f: Callable) -> Callable:
        f = options_from(config, names=shared)(amp_option(threads_option(f)))
        return options_from(config, leave_out=shared)(data_dir_option(f))

    return decorate


@click.group()
def cnn() -> None:
    """Image cells: search and retrain (DARTS/NASP spaces)."""


@cnn.command(cls=RunCommand)
@config_options(CNNSearchConfig)
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
@config_options(CNNTrainConfig)
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
@options_from(CNNSearchConfig, names=("space",))
@click.option("--data", default="cifar10", show_default=True,
              help="The data the network will see (its image shape): cifar10, digits (known without reading), or a path.")
@click.option("--cost-network", type=click.Choice(NETWORKS.names()), default="eval", show_default=True,
              help="eval: the evaluation network of nasp cnn train; search: the search network (its defaults).")
@click.option("--model", default="auto", show_default=True, help=f"eval network: auto (imagenet for ImageFolder data, else cifar), {', '.join(MODELS.names())}.")
@click.option("--layers", type=int, default=None, help="Cells (default: nasp cnn train's for the data set; search: nasp cnn search's).")
@click.option("--channels", type=int, default=None, help="Initial channels (default: likewise).")
@options_from(CNNSearchConfig, names=("nodes",))
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Images per timed forward (the latency a budget limits).")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs per op; the table keeps the median.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed runs before the timed ones.")
@options_from(CNNConfig, names=("image_size",))
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

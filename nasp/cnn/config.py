"""Typed settings of ``nasp cnn search`` and ``nasp cnn train`` and their pre-run checks.

Each field is one setting declared once (``nasp.config.setting``: help, Click type, default); the
commands generate their options from the fields (``nasp.cnn.cli.config_options``). A size left at
None takes its data set's default, whose one declaration is ``defaults.py`` (``--help`` shows it
through ``defaults.help_text``).
``from_options`` builds a config from the Click options with the data set's defaults
(``defaults.py``) filled in, without changing the options; ``validate`` raises ``NaspError`` for
settings that cannot run on the data, before a run directory exists (``nasp.config``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import click

from ..options import AMOUNT, LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, FiniteFloatRange
from ..config import RunConfig, setting
from ..distributed import check_shards
from ..errors import NaspError
from ..strategies import search_strategy_names
from ..strategies.darts import UNROLLED, UNROLLED_HELP
from ..strategies.pcdarts import PARTIAL_CHANNELS
from . import defaults
from .costs import NETWORKS
from .data import ImageData, search_split
from .genotypes import GENOTYPES
from .model import MODELS
from .spaces import SPACES

if TYPE_CHECKING:
    from .costs import CellBudget, CostNetwork


def check_sizes(batch_size: int, channels: int, layers: int, n_train: Optional[int] = None, what: str = "training",
                even_channels: bool = False) -> None:
    """Batch size / width / depth that cannot work raise ``NaspError``."""
    if batch_size < 2:
        raise NaspError(f"--batch-size {batch_size}: must be at least 2 (batch norm needs two examples per batch)")
    check_shards(batch_size, "--batch-size", 2, " (batch norm needs two examples on every process)")
    if channels < 1:
        raise NaspError(f"--channels {channels}: must be at least 1")
    if even_channels and (channels < 2 or channels % 2):
        raise NaspError(f"--channels {channels}: this network needs an even number >= 2 (its first cell halves the resolution in two paths)")
    if layers < 1:
        raise NaspError(f"--layers {layers}: must be at least 1")
    if n_train is not None and batch_size > n_train:
        raise NaspError(f"--batch-size {batch_size}: larger than the {n_train} examples of the {what} data")


def check_partial_channels(k: Optional[int], channels: int) -> None:
    """``--partial-channels K`` that cannot split the edges' channels raises ``NaspError``: K < 1,
    or K not dividing ``--channels`` (the cells have C, 2C, 4C channels: K | C splits them all)."""
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise NaspError(f"--partial-channels {k!r}: must be an integer of at least 1 (1: every channel through the ops)")
    if channels % k:
        raise NaspError(f"--partial-channels {k}: must divide --channels {channels} (each edge sends channels / K of its "
                        f"channels through its ops; with --strategy pcdarts K defaults to {PARTIAL_CHANNELS})")


def _at_least_one(flag: str, value: int) -> None:
    if value < 1:
        raise NaspError(f"{flag} {value}: must be at least 1")


_BUDGET = ("Every iterate and the exported cell fit it (nasp, no-auto, gdas: the projection; random: only cells "
           "that fit are sampled; darts, darts2: the exported cell is the budgeted projection of the softmax weights, "
           "pcdarts: of those times the edge weights). "
           "K/M/G suffixes; one budget at a time; with --eta both apply (the budget hard, eta a soft size term inside it).")
"""What every hard budget of ``cnn search`` says of itself in ``--help`` (docs/cnn.md, "Budgets")."""


@dataclass(frozen=True)
class CNNConfig(RunConfig):
    """Settings both ``nasp cnn`` commands share, declared once (``nasp.config.setting``); the
    shared run settings (``--seed``, ``--amp``, ``--data-dir``) are declared in
    ``nasp.options.RunOptions`` and only held here."""

    data: str = setting("cifar10", "cifar10, digits, a CIFAR-10 folder/.tar.gz, or an ImageFolder (train/, val/).")
    eval_batch_size: Optional[int] = setting(None, "Batch size of evaluation passes (default 2 x --batch-size).",
                                             type=click.IntRange(min=1))
    image_size: Optional[int] = setting(None, "Image side for ImageFolder data (default 224).", type=click.IntRange(min=1))
    amp: bool = False  #: bfloat16 autocast on CUDA (``RunOptions.amp``)
    data_dir: Optional[Path] = None  #: data root for known names (``RunOptions.data_dir``)
    seed: int = 0  #: seed of the split, the batches and the initialisation (``RunOptions.seed``)


@dataclass(frozen=True)
class CNNSearchConfig(CNNConfig):
    """Settings of ``nasp cnn search``, each declared once: field = option, with its help and Click
    type (``options_from`` makes the command line); None: the data set's default (``defaults.py``,
    filled in by ``from_options``); ``config.json`` records the values used."""

    space: str = setting("darts", f"Search space: {', '.join(SPACES.names())}.")
    strategy: str = setting("nasp", f"Search method: {', '.join(search_strategy_names())}.")
    epochs: int = setting(None, defaults.help_text(defaults.SEARCH, "epochs", "Search epochs"))
    batch_size: int = setting(None, defaults.help_text(defaults.SEARCH, "batch_size", "Batch size"))
    layers: int = setting(None, defaults.help_text(defaults.SEARCH, "layers", "Cells in the search network"))
    channels: int = setting(None, defaults.help_text(defaults.SEARCH, "channels", "Initial channels of the search network"))
    eta: float = setting(0.0, "Weight of the soft model-size term (normal cell, search width; nasp, no-auto); larger gives "
                         "smaller cells. For a hard limit use --max-params (both may be given).", type=WEIGHT)
    lr: float = setting(0.025, "Weights: SGD learning rate (cosine schedule).", type=LEARNING_RATE)
    lr_min: float = setting(0.001, "Weights: learning rate at the end of the cosine schedule (at most --lr).", type=WEIGHT)
    weight_decay: float = setting(3e-4, "Weights: SGD weight decay.", type=WEIGHT)
    arch_lr: float = setting(None, defaults.help_text(defaults.SEARCH, "arch_lr", "Architecture: Adam learning rate; 3e-4 "
                                                      "suits the paper's ~20k steps, short searches need more"),
                             type=LEARNING_RATE)
    train_portion: float = setting(0.5, "Share of the training set for the weights; the rest is architecture data.")
    subset: Optional[int] = setting(None, "Use only this many training examples (quick runs).")
    candidates: Optional[int] = setting(None, "random only: architectures sampled (default: 10).", type=click.IntRange(min=1))
    nodes: int = setting(4, "Intermediate nodes per cell.")
    warmup_epochs: Union[int, str, None] = setting(
        None, "nasp/no-auto only: first train the weights alone on random discrete cells for this many epochs ('auto': until "
        "the validation accuracy stops improving; default: 0).", type=WARMUP_EPOCHS)
    unrolled: Optional[str] = setting(None, UNROLLED_HELP, type=click.Choice(list(UNROLLED)))
    partial_channels: Optional[int] = setting(
        None, f"PC-DARTS' partial channel connections: each edge sends 1/K of its channels through its ops, the rest bypass "
        f"them (a channel shuffle follows); K must divide --channels. Any strategy (default: {PARTIAL_CHANNELS} with pcdarts, the "
        "paper's K on CIFAR-10; else 1: off). pcdarts also weights every edge (edge normalisation); pcdarts with 1: "
        "edge normalisation alone.", type=click.IntRange(min=1), metavar="K")
    max_params: Optional[float] = setting(None, "Hard budget: parameters of the cost network (3.0M). " + _BUDGET, type=AMOUNT)
    max_madds: Optional[float] = setting(None, "Hard budget: multiply-adds of one image through the cost network (600M). "
                                         + _BUDGET, type=AMOUNT)
    max_latency_ms: Optional[float] = setting(None, "Hard budget: milliseconds per forward of the cost network, summed from "
                                              "--latency-table. " + _BUDGET, type=AMOUNT)
    latency_table: Optional[Path] = setting(None, "Per-op latencies from nasp cnn profile-ops (needed by --max-latency-ms; with "
                                            "it every epoch records its latency too).",
                                            type=click.Path(dir_okay=False, path_type=Path))
    cost_network: str = setting("eval", "The network the costs are counted in: eval (what nasp cnn train builds: --eval-layers "
                                "x --eval-channels, no auxiliary head) or search (the search network's --layers x --channels).",
                                type=click.Choice(NETWORKS.names()))
    eval_layers: Optional[int] = setting(None, defaults.help_text(defaults.TRAIN, "layers", "--cost-network eval: cells of the "
                                                                  "evaluation network (nasp cnn train's --layers)"))
    eval_channels: Optional[int] = setting(None, defaults.help_text(defaults.TRAIN, "channels", "--cost-network eval: initial "
                                                                    "channels of the evaluation network"))

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], data: ImageData) -> "CNNSearchConfig":
        """The config of the Click options ``opts``; options left out (None) take ``data``'s profile
        (the evaluation network of the costs: ``nasp cnn train``'s for the data set and its network)."""
        table = defaults.SEARCH.get(defaults.profile(data.name, data.kind))
        train = defaults.TRAIN.get(defaults.profile(data.name, data.kind))
        eval_table = {"eval_layers": train["layers"], "eval_channels": train["channels"]}
        # pcdarts: the paper's K; every other strategy: all channels through the ops (as before the option existed)
        channels_table = {"partial_channels": PARTIAL_CHANNELS if opts.get("strategy") == "pcdarts" else 1}
        return cls.of({**opts, **defaults.resolve(opts, table), **defaults.resolve(opts, eval_table),
                       **defaults.resolve(opts, channels_table)})

    def target(self, data: ImageData) -> "CostNetwork":
        """The network whose costs the budget limits and the metrics record."""
        from .costs import CostNetwork

        if self.cost_network == "search":
            return CostNetwork("search", "cifar", self.layers, self.channels, data.in_channels, data.num_classes,
                               data.image_size, self.nodes)
        return CostNetwork("eval", data.kind, self.eval_layers, self.eval_channels, data.in_channels, data.num_classes,
                           data.image_size, self.nodes)

    def budget(self, data: ImageData) -> "CellBudget":
        """The costs every epoch records and the budget, if one is given (``nasp.cnn.costs.cell_budget``)."""
        from .costs import NETWORKS, cell_budget
        from .spaces import SPACES

        NETWORKS.get(self.cost_network)
        limits = {"params": self.max_params, "madds": self.max_madds, "latency": self.max_latency_ms}
        return cell_budget(SPACES.get(self.space), self.target(data), limits, self.latency_table)

    def split(self, data: ImageData) -> tuple[Any, Any]:
        """Indices of the weight data and of the architecture data."""
        return search_split(len(data.train), self.train_portion, self.seed, self.subset)

    def validate(self, data: ImageData) -> None:
        from ..strategies import STRATEGIES, check_search_strategy
        from ..strategies.proximal import check_warmup
        from .spaces import SPACES

        SPACES.get(self.space)
        check_search_strategy(self.strategy, "cnn")
        _at_least_one("--epochs", self.epochs)
        _at_least_one("--nodes", self.nodes)
        if STRATEGIES.get(self.strategy).uses_warmup and self.warmup_epochs is not None:  # the others warn
            check_warmup(self.warmup_epochs, self.epochs)
        if self.lr_min > self.lr:
            raise NaspError(f"--lr-min {self.lr_min:g}: larger than --lr {self.lr:g} (the schedule anneals from --lr down to it)")
        check_sizes(self.batch_size, self.channels, self.layers)
        check_partial_channels(self.partial_channels, self.channels)
        w_idx, a_idx = self.split(data)
        check_sizes(self.batch_size, self.channels, self.layers, min(len(w_idx), len(a_idx)), "weight or architecture")
        if self.cost_network == "eval":
            _at_least_one("--eval-layers", self.eval_layers)
            _at_least_one("--eval-channels", self.eval_channels)
            if data.kind == "imagenet" and (self.eval_channels < 2 or self.eval_channels % 2):
                raise NaspError(f"--eval-channels {self.eval_channels}: the imagenet network needs an even number >= 2")
        self.budget(data)  # two budgets, a latency table that does not fit, a budget no cell meets


@dataclass(frozen=True)
class CNNTrainConfig(CNNConfig):
    """Settings of ``nasp cnn train``, each declared once (as ``CNNSearchConfig``'s); None: the data
    set's or the network's default, filled in by ``from_options``."""

    genotype: str = setting("DARTS_V2", f"A name ({', '.join(GENOTYPES.names())}), a .json / Genotype(...) text file, a search "
                            "run directory, or Genotype(...) text.")
    model: str = setting("auto", f"auto (imagenet for ImageFolder data, else cifar), {', '.join(MODELS.names())}.")
    epochs: int = setting(None, defaults.help_text(defaults.TRAIN, "epochs", "Training epochs"))
    batch_size: int = setting(None, defaults.help_text(defaults.TRAIN, "batch_size", "Batch size"))
    layers: int = setting(None, defaults.help_text(defaults.TRAIN, "layers", "Cells"))
    channels: int = setting(None, defaults.help_text(defaults.TRAIN, "channels", "Initial channels"))
    lr: float = setting(0.025, "SGD learning rate, cosine to 0.", type=LEARNING_RATE)
    weight_decay: float = setting(3e-4, "SGD weight decay.", type=WEIGHT)
    auxiliary_weight: float = setting(0.4, "Auxiliary head loss weight (0: no head).", type=WEIGHT)
    drop_path: float = setting(None, defaults.help_text(defaults.TRAIN, "drop_path", "Drop-path probability, ramped linearly "
                                                        "from 0"), type=FiniteFloatRange(min=0, max=1, max_open=True))
    cutout: int = setting(None, "Cutout square side (default 16 on CIFAR-10, else 0).", type=click.IntRange(min=0))
    label_smoothing: float = setting(None, "Default 0.1 for the imagenet model, else 0.", type=FiniteFloatRange(min=0, max=1))

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], data: ImageData) -> "CNNTrainConfig":
        """The config of the Click options ``opts``; options left out (None; ``--model auto``) take
        ``data``'s profile and network kind."""
        model = data.kind if opts.get("model", "auto") == "auto" else opts["model"]
        filled = defaults.resolve(opts, defaults.TRAIN.get(defaults.profile(data.name, model)))
        derived = {"model": model,
                   "cutout": 16 if data.name == "cifar10" else 0,
                   "label_smoothing": 0.1 if model == "imagenet" else 0.0}
        filled.update({key: value for key, value in derived.items() if key == "model" or opts.get(key) is None})
        return cls.of({**opts, **filled})

    def validate(self, data: ImageData) -> None:
        from .genotypes import load_genotype
        from .model import MODELS

        load_genotype(self.genotype)
        MODELS.get(self.model)
        _at_least_one("--epochs", self.epochs)
        check_sizes(self.batch_size, self.channels, self.layers, len(data.train), "training",
                    even_channels=self.model == "imagenet")

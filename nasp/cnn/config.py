"""Typed settings of ``nasp cnn search`` and ``nasp cnn train`` and their pre-run checks.

``from_options`` builds a config from the Click options with the data set's defaults
(``defaults.py``) filled in, without changing the options; ``validate`` raises ``NaspError`` for
settings that cannot run on the data, before a run directory exists (``nasp.config``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ..config import RunConfig
from ..distributed import check_shards
from ..errors import NaspError
from . import defaults
from .data import ImageData, search_split

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


def _at_least_one(flag: str, value: int) -> None:
    if value < 1:
        raise NaspError(f"{flag} {value}: must be at least 1")


@dataclass(frozen=True)
class CNNSearchConfig(RunConfig):
    """Settings of ``nasp cnn search`` (field = option; ``config.json`` records them)."""

    data: str  #: cifar10, digits, a CIFAR-10 folder or archive, or an ImageFolder
    epochs: int  #: search epochs (data-set default)
    batch_size: int  #: examples per weight step and per architecture step (data-set default)
    layers: int  #: cells of the search network (data-set default)
    channels: int  #: initial channels of the search network (data-set default)
    arch_lr: float  #: Adam learning rate of the architecture (data-set default)
    space: str = "darts"  #: search space (``nasp.cnn.spaces.SPACES``)
    strategy: str = "nasp"  #: search method (``nasp.strategies``)
    eta: float = 0.0  #: weight of the model-size term of the normal cell
    lr: float = 0.025  #: SGD learning rate of the weights (cosine schedule)
    lr_min: float = 0.001  #: the weights' learning rate at the end of the cosine schedule
    weight_decay: float = 3e-4  #: SGD weight decay of the weights
    train_portion: float = 0.5  #: share of the (sub)set of training examples for the weights; the rest is architecture data
    subset: Optional[int] = None  #: use only this many training examples (None: all)
    candidates: Optional[int] = None  #: random search: architectures sampled (None: its default)
    nodes: int = 4  #: intermediate nodes per cell
    warmup_epochs: Union[int, str, None] = None  #: nasp/no-auto: warm-up epochs or "auto" (None: 0)
    unrolled: Optional[str] = None  #: darts2: the unrolled weight step (None: plain)
    amp: bool = False  #: bfloat16 autocast on CUDA
    image_size: Optional[int] = None  #: image side of ImageFolder data (None: 224)
    eval_batch_size: Optional[int] = None  #: batch size of evaluation passes (None: 2 x batch_size)
    data_dir: Optional[Path] = None  #: data root for known names
    seed: int = 0  #: seed of the split, the batches and the initialisation
    max_params: Optional[float] = None  #: hard budget: parameters of the cost network (None: no budget)
    max_madds: Optional[float] = None  #: hard budget: multiply-adds of one image through the cost network
    max_latency_ms: Optional[float] = None  #: hard budget: milliseconds per forward, from ``latency_table``
    latency_table: Optional[Path] = None  #: the ops.json of ``nasp cnn profile-ops``
    cost_network: str = "eval"  #: the network costs are counted in (``nasp.cnn.costs.NETWORKS``: eval, search)
    eval_layers: Optional[int] = None  #: cells of the evaluation network (None: ``cnn train``'s default for the data)
    eval_channels: Optional[int] = None  #: initial channels of the evaluation network (likewise)

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], data: ImageData) -> "CNNSearchConfig":
        """The config of the Click options ``opts``; options left out (None) take ``data``'s profile
        (the evaluation network of the costs: ``nasp cnn train``'s for the data set and its network)."""
        table = defaults.SEARCH.get(defaults.profile(data.name, data.kind))
        train = defaults.TRAIN.get(defaults.profile(data.name, data.kind))
        eval_table = {"eval_layers": train["layers"], "eval_channels": train["channels"]}
        return cls.of({**opts, **defaults.resolve(opts, table), **defaults.resolve(opts, eval_table)})

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
        check_search_strategy(self.strategy)
        _at_least_one("--epochs", self.epochs)
        _at_least_one("--nodes", self.nodes)
        if STRATEGIES.get(self.strategy).uses_warmup and self.warmup_epochs is not None:  # the others warn
            check_warmup(self.warmup_epochs, self.epochs)
        if self.lr_min > self.lr:
            raise NaspError(f"--lr-min {self.lr_min:g}: larger than --lr {self.lr:g} (the schedule anneals from --lr down to it)")
        check_sizes(self.batch_size, self.channels, self.layers)
        w_idx, a_idx = self.split(data)
        check_sizes(self.batch_size, self.channels, self.layers, min(len(w_idx), len(a_idx)), "weight or architecture")
        if self.cost_network == "eval":
            _at_least_one("--eval-layers", self.eval_layers)
            _at_least_one("--eval-channels", self.eval_channels)
            if data.kind == "imagenet" and (self.eval_channels < 2 or self.eval_channels % 2):
                raise NaspError(f"--eval-channels {self.eval_channels}: the imagenet network needs an even number >= 2")
        self.budget(data)  # two budgets, a latency table that does not fit, a budget no cell meets


@dataclass(frozen=True)
class CNNTrainConfig(RunConfig):
    """Settings of ``nasp cnn train`` (field = option; ``config.json`` records them)."""

    data: str  #: cifar10, digits, a CIFAR-10 folder or archive, or an ImageFolder
    epochs: int  #: training epochs (data-set default)
    batch_size: int  #: examples per step (data-set default)
    layers: int  #: cells of the network (data-set default)
    channels: int  #: initial channels of the network (data-set default)
    drop_path: float  #: largest drop-path probability, ramped linearly from 0 (data-set default)
    model: str  #: evaluation network (``nasp.cnn.model.MODELS``); ``auto`` resolved by the data
    cutout: int  #: cutout square side (0: none; default 16 on CIFAR-10)
    label_smoothing: float  #: label smoothing of the loss (default 0.1 for the imagenet model)
    genotype: str = "DARTS_V2"  #: a genotype name, a .json / Genotype(...) file, a search run directory, or Genotype(...) text
    lr: float = 0.025  #: SGD learning rate, cosine to 0
    weight_decay: float = 3e-4  #: SGD weight decay
    auxiliary_weight: float = 0.4  #: loss weight of the auxiliary head (0: no head)
    amp: bool = False  #: bfloat16 autocast on CUDA
    image_size: Optional[int] = None  #: image side of ImageFolder data (None: 224)
    eval_batch_size: Optional[int] = None  #: batch size of evaluation passes (None: 2 x batch_size)
    data_dir: Optional[Path] = None  #: data root for known names
    seed: int = 0  #: seed of the batches and the initialisation

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

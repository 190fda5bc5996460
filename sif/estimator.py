"""The Python API of SIF: ``SIF(task=..., strategy=..., **options).fit(data)``.

A small estimator in the manner of Surprise and LensKit, and the one place that runs a SIF job:
the ``nasp sif`` commands only turn their options into a ``SIF`` and print its summary.

>>> from sif import SIF
>>> model = SIF(task="ranking", epochs=4).fit("ml-100k")      # search, then retrain
>>> model.recommend("196", k=10)                              # a DataFrame: rank, item, score, title
>>> model.evaluate(held_out_frame)                            # metrics on other interactions
>>> model.save("my-run"); SIF.load("my-run").predict(["196"], ["242"])
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from nasp.commands import configure_logging, release_with_command, usable_threads
from nasp.config import MAX_SEED, RunConfig, check_rate
from nasp.errors import NaspError
from nasp.loop import improves
from nasp.devices import check_amp, set_deterministic
from nasp.distributed import check_shards
from nasp.devices import resolve_device
from nasp.runs import CONFIG, RunDir, read_json
from nasp.seeding import seed_everything, set_rng_state
from nasp.strategies import STRATEGIES
from nasp.strategies.local import check_margin
from nasp.strategies.proximal import check_warmup

from . import itemitem, lightgcn, pipeline, tensor
from .data import LineFormat, RatingTable, Splits, check_folds, kfold
from .engine import TrainSettings
from .model import HISTORY_REFRESHES, ModelConfig
from .groundtruth import arch_key
from .itemitem import DEFAULT_LAMBDAS, DEFAULT_NEIGHBOURS, DEFAULT_SHRINK, ITEM_MODELS, ItemItemConfig
from .joint import JointConfig, check_choices, parse_choices
from .lightgcn import DEFAULT_LAYERS, LightGCNConfig, check_layers
from .space import INTERACTION_FUNCTIONS, SEARCH_SPACE, SPACES
from .tasks import TASKS, Task, build_task

Data = Union[str, Path, pd.DataFrame]
#: the fixed models that only rank, and why (``--task rating`` refuses them)
RANKING_MODELS = {**{name: "it scores items from a user's interactions" for name in ITEM_MODELS.names()},
                  lightgcn.NAME: "it is trained by BPR on interactions and scores them"}
log = logging.getLogger("nasp.sif")


@dataclass
class SIFOptions(RunConfig):
    """Every option of a SIF job, named as the ``nasp sif`` options (``None``: the default of
    the task, the strategy or the searched architecture). See ``nasp sif search --help``.
    ``validate`` checks what Click's types check on the command line, for Python callers."""

    task: str = "rating"
    strategy: str = "nasp"
    #: id columns of the data: 2 (user, item) or 3 (head, relation, tail: ``sif.tensor``, ranking only)
    ways: int = 2
    #: the search space: "sif" (the paper's: vector-wise ops) or "autocf" (every choice searched jointly)
    space: str = "sif"
    #: train this fixed interaction function instead of searching (``nasp sif train --ifc``)
    ifc: Optional[str] = None
    #: EASE^R's L2 weight lambda: a value or a list chosen from on validation (``--ease-lambda``)
    ease_lambda: Optional[Union[str, float, Sequence[float]]] = None
    #: ItemKNN's neighbourhood size k: a value or a list chosen from on validation (``--knn-neighbours``)
    knn_neighbours: Optional[Union[str, int, Sequence[int]]] = None
    #: ItemKNN's shrinkage of the cosine similarity (``--knn-shrink``)
    knn_shrink: Optional[float] = None
    #: LightGCN's propagation layers K (``--gcn-layers``); None: ``lightgcn.DEFAULT_LAYERS``
    gcn_layers: Optional[int] = None
    #: train this fixed model of the autocf space instead: ``ROW=NAME[+ROW=NAME...]`` changes of
    #: its default SVD++ model, the ``baselines`` syntax (``nasp sif train --choices``)
    choices: Optional[str] = None
    #: retrain this searched architecture (an arch.json or a search run directory) instead
    arch: Optional[Union[str, Path]] = None
    # data
    split: Optional[str] = None
    test_ratio: Optional[float] = None
    valid_ratio: Optional[float] = None
    data_dir: Optional[Union[str, Path]] = None
    seed: int = 0
    #: files: the separator of the fields (``--sep``; "tab" for a tab); None: sniffed
    sep: Optional[str] = None
    #: files: the role of each column in order (``--columns user,item,rating``; "-" skips one);
    #: None: the header's names, else user, item[, rating][, timestamp]
    columns: Optional[Union[str, Sequence[str]]] = None
    # ranking
    min_rating: Optional[float] = None
    topk: Optional[Union[str, Sequence[int]]] = None
    loss: Optional[str] = None
    negatives: Optional[int] = None
    # model
    dim: Optional[int] = None
    mlp: str = ModelConfig.mlp
    head: Optional[str] = None
    biases: Optional[bool] = None
    implicit: Optional[bool] = None
    #: times per epoch the cached history sums of the implicit term hand their gradient to the
    #: item factors (``HistoryEncoder``); 0: exact sums at every step; None: ``HISTORY_REFRESHES``
    history_refreshes: Optional[int] = None
    # optimisation
    epochs: int = 10
    lr: Optional[float] = None
    reg: Optional[float] = None
    implicit_reg: Optional[float] = None
    batch_size: Optional[int] = None
    arch_lr: Optional[float] = None
    warmup_epochs: Union[int, str, None] = None
    candidates: Optional[int] = None
    #: local search: the relative margin by which a replacement must beat the incumbent (``--margin``)
    margin: Optional[float] = None
    retrain: bool = True
    warm_start: bool = False
    max_epochs: int = 100
    patience: int = 3
    refit: Optional[bool] = None
    #: fixed models a search is compared with on validation: "none", "all" (the paper's space) or a
    #: list of IFC names and ROW=NAME changes of the larger space's default model; None: the
    #: task's (``Task.default_baselines``)
    baselines: Optional[Union[str, Sequence[str]]] = None
    #: "best": keep whichever of the searched model and the baselines validates best; "searched": the searched one
    keep: str = "best"
    device: str = "auto"
    #: bfloat16 autocast of the training forward passes (CUDA only: ``--amp``)
    amp: bool = False
    #: CPU threads of torch during ``fit`` (``--threads``; 1, as the commands: more threads than
    #: cores shared with other work make training several times slower)
    threads: int = 1
    #: train the searched element-wise MLPs with the architecture on validation batches, as the
    #: paper does (``--mlp-on-valid``; validation data then enter these weights); off: they are
    #: weights, trained on training data only
    mlp_on_valid: bool = False
    #: cross-validation folds of ``cross_validate`` (``nasp sif train --folds``); None: ``fit`` trains once
    folds: Optional[int] = None
    #: deterministic algorithms, so that a CUDA run repeats exactly (``--deterministic``)
    deterministic: bool = False
    #: one log line per epoch on stderr during ``fit`` (the commands' default; ``-q`` there)
    verbose: bool = True

    def line_format(self) -> LineFormat:
        """How the data files' lines are read (``sep`` and ``columns``, checked)."""
        return LineFormat.of(self.sep, self.columns)

    def item_item_config(self, name: str, num_users: int, num_items: int) -> ItemItemConfig:
        """The ``ItemItemConfig`` of item-item model ``name`` with these options' grids."""
        return ItemItemConfig(name, num_users, num_items,
                              lambdas=DEFAULT_LAMBDAS if self.ease_lambda is None else self.ease_lambda,
                              neighbours=DEFAULT_NEIGHBOURS if self.knn_neighbours is None else self.knn_neighbours,
                              shrink=DEFAULT_SHRINK if self.knn_shrink is None else float(self.knn_shrink))

    @classmethod
    def of(cls, options: dict) -> "SIFOptions":
        """Options from keyword arguments (NumPy scalars as the Python numbers they hold); an
        unknown name is a clear error."""
        unknown = sorted(set(options) - set(cls.field_names()))
        if unknown:
            raise NaspError(f"unknown SIF option(s) {', '.join(unknown)}; known: {', '.join(sorted(cls.field_names()))}")
        return cls(**{name: _plain(value) for name, value in options.items()})

    def validate(self, *context: Any) -> None:
        self.check_types()
        if not 0 <= self.seed <= MAX_SEED:
            raise NaspError(f"--seed {self.seed}: must be in [0, {MAX_SEED}]")
        TASKS.get(self.task)
        self.line_format()
        tensor.check_options(self)
        STRATEGIES.get(self.strategy)
        for name in ("lr", "arch_lr"):
            if getattr(self, name) is not None:
                check_rate(f"--{name.replace('_', '-')}", float(getattr(self, name)))
        for name in ("reg", "implicit_reg"):
            if getattr(self, name) is not None:
                check_rate(f"--{name.replace('_', '-')}", float(getattr(self, name)), positive=False)
        lowest = {name: 1 for name in ("dim", "batch_size", "epochs", "max_epochs", "patience", "candidates", "threads")}
        for name, low in {**lowest, "history_refreshes": 0}.items():
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise NaspError(f"--{name.replace('_', '-')} {value!r}: must be an integer >= {low}")
        if self.margin is not None:
            check_margin(self.margin)
        if self.batch_size is not None:
            check_shards(self.batch_size, "--batch-size")
        if self.implicit is False:
            given = [f"--{name.replace('_', '-')}" for name in ("history_refreshes", "implicit_reg") if getattr(self, name) is not None]
            if given:
                raise NaspError(f"{' and '.join(given)} set{'s' if len(given) == 1 else ''} the implicit term, which "
                                f"--no-implicit turns off: drop one or the other")
        given = [name for name in ("ifc", "arch", "choices") if getattr(self, name) is not None]
        if len(given) > 1:
            raise NaspError(f"give at most one of ifc= (a fixed interaction), arch= (a searched architecture) or choices= "
                            f"(a fixed model of the autocf space); got {' and '.join(given)}")
        if self.ifc is not None:
            check_model_name(self.ifc)
        self.item_item_config("ease", 1, 1)  # the item-item settings, checked
        if self.gcn_layers is not None:
            check_layers(self.gcn_layers)
        if self.choices is not None:
            check_choices(self.choices)
        if self.space not in SPACES:
            raise NaspError(f"--space {self.space!r}: use one of {', '.join(SPACES)}")
        if self.space != "sif" and (self.ifc is not None or self.arch is not None or self.choices is not None):
            raise NaspError("--space applies to a search; --ifc, --arch and --choices name the model to train")
        if self.space != "sif":
            given = [f"--{name}" for name in ("implicit", "head") if getattr(self, name) is not None]
            if self.warm_start:
                given.append("--warm-start")
            if given:
                raise NaspError(f"{' and '.join(given)}: the {self.space} space searches the input encodings and heads; "
                                "leave them out (or use --space sif)")
        if self.folds is not None:
            check_folds(self.folds)
            if self.test_ratio is not None:
                raise NaspError("--test-ratio with --folds: the folds make the test parts; leave it out")
        if self.keep not in ("best", "searched"):
            raise NaspError(f"--keep {self.keep!r}: use best or searched")


class SIF:
    """Search (or train) an interaction function for collaborative filtering.

    ``task``: "rating" (explicit ratings, RMSE) or "ranking" (implicit feedback, top-K).
    ``strategy``: a search strategy (nasp, no-auto, darts, darts2, gdas, random, local); ``space="autocf"``
    searches the larger space (docs/sif.md), the default "sif" the paper's. Give
    ``ifc="multiply"`` (or another fixed interaction) to train a baseline instead, or
    ``arch=PATH`` to retrain a searched architecture. Every other option is a ``SIFOptions``
    field. After ``fit``: ``summary_`` (the metrics), ``arch_`` (the searched architecture).
    """

    def __init__(self, task: str = "rating", strategy: str = "nasp", **options: Any) -> None:
        self.options = SIFOptions.of({"task": task, "strategy": strategy, **options})
        self.options.validate()
        self.task: Task = build_task(self.options.task, topk=self.options.topk, loss_name=self.options.loss,
                                     negatives=self.options.negatives, min_rating=self.options.min_rating)
        if self.options.ifc == "pop" and self.task.name != "ranking":
            raise NaspError("pop (popularity) is a ranking baseline: use it with --task ranking")
        ranking_only = [n for n in (self.options.ifc, *self.baseline_names()) if n in RANKING_MODELS]
        if ranking_only and self.task.name != "ranking":
            raise NaspError(f"{ranking_only[0]} is a ranking model ({RANKING_MODELS[ranking_only[0]]}, not ratings): "
                            "use it with --task ranking")
        if self.options.arch is not None:
            tensor.check_arch_ways(self.options.arch, self.options.ways)
        self.arch_in: Optional[dict] = ((tensor.load_arch if self.options.ways == 3 else pipeline.load_arch)(self.options.arch)
                                        if self.options.arch is not None else None)
        if self.arch_in is not None:
            self._check_arch_task(self.arch_in)
        self._check_warmup()
        self.baseline_names()
        self.summary_: dict = {}
        self.arch_: Optional[dict] = None
        self._model: Optional[pipeline.Recommender] = None
        self._run_path: Optional[Path] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._loaded: Optional[tuple[Splits, Path]] = None
        self._folds: Optional[tuple[RatingTable, np.ndarray, int]] = None  # load_folds

    # checks --------------------------------------------------------------------------------------
    def _check_arch_task(self, arch: dict) -> None:
        saved = arch.get("task", "rating")
        if saved != self.task.name:
            raise NaspError(f"{arch['_path']}: an architecture searched for the {saved} task; this is --task {self.task.name}")

    def _check_warmup(self) -> Union[int, str, None]:
        """--warmup-epochs, defaulting to the strategy's (``default_warmup``) or else the task's
        (no warm-up for a one-epoch search), checked against --epochs; as given for strategies
        without a warm-up (which warn that they ignore it)."""
        given, strategy, epochs = self.options.warmup_epochs, STRATEGIES.get(self.options.strategy), self.options.epochs
        if self.searches and strategy.uses_warmup:
            default = self.task.warmup(epochs) if strategy.default_warmup is None else min(strategy.default_warmup, epochs - 1)
            return check_warmup(default if given is None else given, epochs)
        return given

    @property
    def searches(self) -> bool:
        """Whether ``fit`` searches (no fixed ``ifc``, ``arch`` or ``choices`` given)."""
        return self.options.ifc is None and self.options.arch is None and self.options.choices is None

    def settings(self, search: bool = True, config: Any = None) -> TrainSettings:
        """The optimisation settings: the options given, else the defaults of ``config``'s model
        where it has its own (LightGCN's), else the task's."""
        d, o = getattr(config, "defaults", self.task.defaults), self.options
        pick = lambda name: getattr(d, name) if getattr(o, name) is None else getattr(o, name)  # noqa: E731
        return TrainSettings(lr=pick("lr"), reg=pick("reg"), implicit_reg=pick("implicit_reg"), batch_size=pick("batch_size"),
                             arch_lr=pick("arch_lr") if search else d.arch_lr, amp=bool(o.amp))

    # data ----------------------------------------------------------------------------------------
    def load_data(self, data: Data, valid_data: Optional[Data] = None, test_data: Optional[Data] = None) -> tuple[Splits, Path]:
        """Read and split the data as the options say; every check of the input happens here,
        so the CLI calls it before any run directory exists."""
        o = self.options
        if o.ways == 3:
            self._loaded = (tensor.load(data, valid_data, test_data, o.valid_ratio, o.test_ratio, o.seed, o.sep), Path(str(data)))
            return self._loaded
        opts = pipeline.DataOptions(_source(data), _source(test_data), o.data_dir, o.test_ratio, o.valid_ratio, o.seed,
                                    _source(valid_data), o.split, o.line_format())
        self._loaded = pipeline.load_splits(opts, self.task)
        return self._loaded

    # fit -----------------------------------------------------------------------------------------
    def fit(self, data: Optional[Data] = None, valid_data: Optional[Data] = None, test_data: Optional[Data] = None,
            run: Optional[RunDir] = None) -> "SIF":
        """Search and retrain (or train the fixed ``ifc`` / the searched ``arch``) on ``data``: a
        ratings or interaction file, a known name (ml-100k, ...), or a DataFrame with user, item
        (and rating, timestamp) columns. Validation (selection, early stopping) comes out of
        ``data`` unless ``valid_data`` is given; test likewise. The run's files go to ``run``
        (a ``RunDir``), else to a temporary folder that ``save`` copies."""
        if self.options.folds is not None:
            raise NaspError(f"folds={self.options.folds}: call cross_validate(data), which fits one model per fold; fit trains one")
        if data is not None:
            self.load_data(data, valid_data, test_data)
        if self._loaded is None:
            raise NaspError("fit needs data: a file, a known name or a DataFrame")
        splits, path = self._loaded
        if run is not None:  # a command: start_run has seeded and set the threads and the log level
            self._run_path = run.path
            return self._fit(run, splits, path, owned=False)
        self._tmp = tempfile.TemporaryDirectory(prefix="sif-")
        run = RunDir(Path(self._tmp.name) / "run")
        self._run_path = run.path
        with _as_the_command(self.options):
            try:
                run.write_config({"command": "SIF.fit", "options": {k: (str(v) if isinstance(v, Path) else v)
                                                                    for k, v in dataclasses.asdict(self.options).items()}})
                return self._fit(run, splits, path, owned=True)
            finally:  # also when the fit fails: the temporary run's lock is not left open
                run.close()

    def load_folds(self, data: Data, folds: Optional[int] = None) -> None:
        """Read ``data`` as the task reads it and deal its rows into ``folds`` (else the option's)
        test parts; every check happens here, so the CLI calls it before any run directory exists."""
        if data is None:
            raise NaspError("cross_validate needs data: a file, a known name or a DataFrame")
        folds = self.options.folds if folds is None else folds
        SIFOptions.of({**dataclasses.asdict(self.options), "folds": folds}).validate()
        table = self.task.read(pipeline.read_table(_source(data), self.options.data_dir, self.options.line_format()))
        self._folds = (table, kfold(table, folds, self.options.seed), folds)

    def cross_validate(self, data: Optional[Data] = None, folds: Optional[int] = None, run: Optional[RunDir] = None) -> dict:
        """K-fold cross-validation, as Surprise's ``cross_validate``: the rows of ``data`` dealt
        into ``folds`` test parts by the seed (``sif.data.kfold``: every user with two or more rows
        trains in every fold); each fold fits a fresh model on the other rows (validation split off
        them as ``fit`` does) and scores its part. Returns (and keeps in ``cv_results_``) every
        metric's mean over the folds, its standard deviation (``_std``, NumPy's) and the per-fold
        values (``fold_``), with ``folds`` and ``seconds``. ``run``: fold K's files go to
        RUN/fold-K/ (a finished fold is read back on resume)."""
        if data is not None or self._folds is None:
            self.load_folds(data, folds)
        table, fold, folds = self._folds
        t0, summaries = time.perf_counter(), []
        options = {**dataclasses.asdict(self.options), "folds": None}
        for k in range(folds):
            est = SIF(**options)
            est.load_data(table.subset(fold != k), test_data=table.subset(fold == k))
            if run is None:
                est.fit()
                summaries.append(est.summary_)
                continue
            out = run.file(f"fold-{k + 1}")
            if (out / "summary.json").exists():  # finished by an earlier process: read back
                summaries.append(read_json(out / "summary.json"))
                run.clock.saw(float(summaries[-1].get("seconds", 0.0)))  # the run's time when it finished
                continue
            sub = release_with_command(RunDir(out, resume=(out / CONFIG).exists(), clock=run.clock))
            if not sub.resume:
                sub.write_config({"command": f"fold-{k + 1}", "rows": int((fold != k).sum()), "test_rows": int((fold == k).sum())})
            seed_everything(self.options.seed)  # each fold starts as a Python fit does
            est.fit(run=sub)
            summaries.append(sub.finish({**est.summary_, "fold_seconds": est.summary_["seconds"]}))
        seconds = run.clock.total() if run is not None else time.perf_counter() - t0  # across resumes
        self.cv_results_ = {"task": self.task.name, "folds": folds, **_fold_statistics(summaries, self.task),
                            "seconds": round(seconds, 3)}
        return self.cv_results_

    def _fit(self, run: RunDir, splits: Splits, path: Any, owned: bool) -> "SIF":
        """``fit``'s work in ``run``: search (if asked), retrain, compare, test, keep the model."""
        device = resolve_device(self.options.device)
        check_amp(self.options.amp, device)
        if self.options.ways == 3:
            self.summary_ = tensor.fit_options(run, splits, self.options, self.arch_in, self._check_warmup(), device)
            self.summary_ = run.finish(self.summary_) if owned else self.summary_
            return self
        t0 = time.perf_counter()
        summary: dict = {"task": self.task.name}
        if self.searches:
            found = self._search(run, splits, device)
            summary.update(found)
            config = self._arch_config(splits, self.arch_)
            mlp_state = self.arch_.get("elementwise_mlp")
        else:
            mlp_state = self.arch_in.get("elementwise_mlp") if self.arch_in else None
            config = (self._arch_config(splits, self.arch_in) if self.arch_in
                      else self._baseline_config(splits, self.options.choices) if self.options.choices is not None
                      else self._config(splits, self.options.ifc, None, searched=False, elementwise=False))
            if self.options.choices is not None:
                summary["choices"] = parse_choices(self.options.choices)
                summary["fixed_model"] = arch_key(summary["choices"])
        summary.update(pipeline.data_summary(splits, self.task))
        if self.searches and not self.options.retrain:
            self.summary_ = {**summary, "seconds": round(time.perf_counter() - t0, 3)}
            if owned:
                self.summary_ = run.finish(self.summary_)
            return self
        init = None
        if self.searches and self.options.warm_start:
            init = pipeline.chosen_op_state(run.load_checkpoint()["network"], SEARCH_SPACE, config.ops[0])
        net, trained = self._train_one(run, "retrain" if self.searches else None, splits, config, device, mlp_state, init)
        if self.searches:
            net, trained, config, mlp_state, init, compared = self._against_baselines(run, splits, device, net, trained,
                                                                                     config, mlp_state, init)
            summary.update(compared)
        net, trained = self._test_one(run, net, trained, splits, config, device, mlp_state, init)
        pipeline.save_model(run.file(pipeline.MODEL_FILE), net, splits, path, self.task)
        self._model = pipeline.Recommender(run.file(pipeline.MODEL_FILE), device)
        self.summary_ = {**summary, **trained, "seconds": round(time.perf_counter() - t0, 3)}
        if owned:  # the CLI writes its own summary (with the run directory's path)
            self.summary_ = run.finish(self.summary_)
        return self

    def _config(self, splits: Splits, name: str, saved: Optional[dict], searched: bool, elementwise: bool = True) -> ModelConfig:
        """The model of a run: the options given, else the searched architecture's, else the defaults
        (biases and the implicit term on, except for NCF's gmf and neumf; pop has only item biases)."""
        o = self.options

        def switch(key: str) -> bool:
            if getattr(o, key) is not None:
                return bool(getattr(o, key))
            if saved is not None:
                return bool(saved.get(key, getattr(ModelConfig, key)))
            return name not in ("gmf", "neumf")

        if name in ITEM_MODELS:
            return o.item_item_config(name, splits.ids.num_users, splits.ids.num_items)
        if name == lightgcn.NAME:
            return LightGCNConfig(splits.ids.num_users, splits.ids.num_items, dim=o.dim or 64,
                                  layers=DEFAULT_LAYERS if o.gcn_layers is None else o.gcn_layers)
        if name == "pop":
            return ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=1, ops=("pop",), elementwise=False, biases=True,
                               implicit=False)
        dim = o.dim or (saved["dim"] if saved else 64)
        head = o.head or (saved.get("head", ModelConfig.head) if saved else ModelConfig.head)
        mlp = saved.get("mlp", ModelConfig.mlp) if saved else o.mlp
        mean = float(splits.train.ratings.mean()) if self.task.name == "rating" else 0.0
        return ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=dim, ops=(name,), elementwise=elementwise,
                           biases=switch("biases"), implicit=switch("implicit"), head=head, mlp=mlp, global_mean=mean,
                           history_refreshes=self._history_refreshes(), mlp_on_valid=bool(o.mlp_on_valid) and searched)

    def _history_refreshes(self) -> Optional[int]:
        """``ModelConfig.history_refreshes`` of the options (a training setting: a searched
        architecture's saved value is not reused)."""
        given = self.options.history_refreshes
        return HISTORY_REFRESHES if given is None else (given or None)

    def _arch_config(self, splits: Splits, arch: dict) -> ModelConfig:
        """The fixed model of a searched architecture, sized for ``splits``: its space's config
        with one candidate per row (the larger space), or its interaction (the paper's)."""
        saved = arch["model"]
        if "choices" not in arch:
            return self._config(splits, arch["interaction"], saved, searched=True,
                                elementwise=arch.get("elementwise_mlp") is not None)
        base = self._config(splits, arch["interaction"], saved, searched=True)
        sizes = {"num_users": base.num_users, "num_items": base.num_items, "dim": base.dim, "global_mean": base.global_mean,
                 "biases": base.biases, "history_refreshes": base.history_refreshes}
        return JointConfig.from_dict({**saved, **sizes}).fixed(arch["choices"])

    def _baseline_config(self, splits: Splits, name: str) -> ModelConfig:
        """The fixed model a ``--baselines`` entry names: an IFC with plain embeddings, or
        (``row=name+...``) a fixed model of the larger space."""
        base = self._config(splits, "multiply" if "=" in name else name, None, searched=False, elementwise=False)
        return JointConfig.search_space(base, self.options.mlp).fixed(parse_choices(name)) if "=" in name else base

    def _search(self, run: RunDir, splits: Splits, device: torch.device) -> dict:
        """The search stage (skipped on resume when it finished): writes arch.json and search.json."""
        if run.resume and run.file("search.json").exists():
            self.arch_ = pipeline.load_arch(run.file("arch.json"))
            # the retraining starts from the random state the finished search left, as uninterrupted
            set_rng_state(run.load_checkpoint()["rng"])
            return read_json(run.file("search.json"))
        o = self.options
        base = self._config(splits, SEARCH_SPACE[0], None, searched=True)
        if o.space == "autocf":
            config = JointConfig.search_space(base, o.mlp)
        else:
            config = ModelConfig.from_dict({**base.to_dict(), "ops": list(SEARCH_SPACE), "mlp": o.mlp})
        self.arch_, found = pipeline.search(run, splits, config, self.settings(), o.strategy, o.epochs, o.seed, device,
                                            o.candidates, self._check_warmup(), self.task, o.margin)
        run.write_json("search.json", found)
        return found

    def _train_one(self, run: RunDir, name: Optional[str], splits: Splits, config: ModelConfig, device: torch.device,
                   mlp_state: Optional[dict], init_state: Optional[dict], stage: str = "") -> tuple[Any, dict]:
        """Train with early stopping (in RUN/<name>/, or RUN itself), scored on validation only;
        ``stage`` names it in the log (default: ``name``, else ``train``)."""
        o, settings = self.options, self.settings(search=False, config=config)
        rdir = _subrun(run, name, config, settings) if name else run
        if isinstance(config, ItemItemConfig):
            return itemitem.fit(splits, config, self.task, device)
        return pipeline.train(rdir, splits, config, settings, o.max_epochs, o.patience, o.seed, device, mlp_state,
                              init_state=init_state, task=self.task, test=False, stage=stage or name or "train")

    def baseline_names(self) -> tuple[str, ...]:
        """The fixed IFCs a search is compared with (``--baselines``: none, all or a list)."""
        given = self.options.baselines if self.options.baselines is not None else self.task.default_baselines
        if given == "":
            return ()
        names = SEARCH_SPACE if given == "all" else () if given == "none" else tuple(
            n.strip() for n in (given.split(",") if isinstance(given, str) else given) if n.strip())
        for name in names:
            if "=" in name:  # a fixed model of the larger space: an unknown row or name is a clear NaspError
                check_choices(name)
            else:
                check_model_name(name)
        return tuple(dict.fromkeys(names))

    def _against_baselines(self, run: RunDir, splits: Splits, device: torch.device, net: Any, trained: dict,
                           config: ModelConfig, mlp_state: Optional[dict], init: Optional[dict]) -> tuple:
        """Train each fixed baseline (plain embeddings, the same settings) and score it on
        validation beside the searched model; with ``--keep best`` the better one is kept (the
        test split is scored only for the kept model). Returns the kept (net, summary, config,
        mlp_state, init) and the comparison for the summary."""
        metric, higher = self.task.metric, self.task.higher_is_better
        searched = trained.get(metric)
        out: dict = {"searched_interaction": config.ops[0], f"searched_{metric}": searched}
        names = self.baseline_names()
        if not names or searched is None:  # nothing to compare on without validation data
            return net, trained, config, mlp_state, init, out
        scores, best = {}, None
        for name in names:
            fixed = self._baseline_config(splits, name)
            shortfall = isinstance(fixed, ItemItemConfig) and itemitem.memory_shortfall(fixed.model, fixed.num_items)
            if shortfall and self.options.baselines is None:  # asked for by name, it is an error (itemitem.fit)
                log.warning("the default baseline %s is left out: %s", name, shortfall)
                continue
            folder = "baseline-" + name.replace("=", "-").replace("+", "_")
            b_net, b_summary = self._train_one(run, folder, splits, fixed, device, None, None, f"baseline {name}")
            scores[name] = b_summary.get(metric)
            if best is None or improves(scores[name], best[1], higher):
                best = (name, scores[name], b_net, b_summary, fixed)
        if best is None:  # every default baseline was left out
            return net, trained, config, mlp_state, init, out
        keep_baseline = self.options.keep == "best" and improves(best[1], searched, higher)
        out.update({
            f"baseline_{metric}": scores,
            "best_baseline": best[0],
            # positive: the searched model validates better than the best baseline
            "searched_margin": (searched - best[1]) if higher else (best[1] - searched),
            "kept": f"{best[0]} (baseline)" if keep_baseline else f"{config.ops[0]} (searched)",
        })
        if keep_baseline:
            return best[2], best[3], best[4], None, None, out
        return net, trained, config, mlp_state, init, out

    def _test_one(self, run: RunDir, net: Any, summary: dict, splits: Splits, config: ModelConfig, device: torch.device,
                  mlp_state: Optional[dict], init_state: Optional[dict]) -> tuple[Any, dict]:
        """The kept model's test metrics (the one look at the test split): after a refit on
        train+valid (in RUN/refit/) when asked, else of the early-stopped model."""
        o, settings = self.options, self.settings(search=False, config=config)
        summary = dict(summary)
        refit = self.task.refit_by_default if o.refit is None else o.refit
        test_keys = self.task.test_keys()
        # nothing to stop on without validation; a closed-form model has no epochs
        source = "closed form" if isinstance(config, ItemItemConfig) else "early-stopped" if len(splits.valid) else "last epoch"
        early = self.task.evaluate(net, splits.to(device), "test")
        closed_form = isinstance(config, ItemItemConfig)  # computed, not trained: refit with the chosen setting
        if refit and len(splits.valid) and (summary["epochs_trained"] or closed_form):
            if early:
                summary[f"early_stopped_{test_keys[0]}"] = early[test_keys[0]]
            if closed_form:
                net, refitted = itemitem.fit(splits.with_valid_in_train(), net.config, self.task, device, test=True)
                refitted = {k: v for k, v in refitted.items() if k in test_keys}
            else:
                net, refitted = pipeline.refit(_subrun(run, "refit", config, settings), splits, config, settings,
                                               summary["best_epoch"], o.seed, device, mlp_state, init_state, self.task)
            summary.update(refitted)
            source = "refit"
        else:
            summary.update(early)
        if test_keys[0] in summary:  # absent without a test split (--test-ratio 0)
            summary[f"{test_keys[0]}_source"] = source
        return net, summary

    # using the model -----------------------------------------------------------------------------
    @property
    def model(self) -> pipeline.Recommender:
        if self._model is None:
            raise NaspError("this SIF has no trained model: call fit (with retrain on) or SIF.load first")
        return self._model

    def predict(self, users: Sequence, items: Sequence) -> pd.DataFrame:
        """Predicted ratings (rating task, clipped to the training range) or scores (ranking) of
        the (user, item) pairs given as raw ids: a DataFrame with user, item, prediction and
        ``known`` (False where the user or item is not in the model's data: the prediction is then
        the biases' alone, as Surprise's ``was_impossible``)."""
        users, items = _id_list(users, "users"), _id_list(items, "items")
        predictions, known = self.model.predict_pairs(users, items)
        return pd.DataFrame({"user": users, "item": items, "prediction": predictions, "known": known})

    def recommend(self, users: Any, k: int = 10, fallback: str = "pop") -> pd.DataFrame:
        """The top-``k`` items a user never interacted with in the data given to ``fit``: for one
        raw id, a DataFrame of rank, item, score, title; for a list of ids, the same with a user
        column first. A user the model does not know gets ``fallback``'s list ("pop": the most
        popular items, scored by their interaction count; "none": none, and an error for a single
        user), reported in one warning."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise NaspError(f"-k {k!r}: must be an integer >= 1")
        k = int(k)
        pipeline.FALLBACKS.get(fallback)
        many = not isinstance(users, (str, int, np.integer))
        ids = _id_list(users, "users") if many else [str(users)]
        served = self.model.serve(ids, k, fallback)
        columns = ["rank", "item", "score", "title"]
        if not many:
            return pd.DataFrame(served[0][1] if served else [], columns=columns)
        rows = [{"user": user, **row} for user, items in served for row in items]
        return pd.DataFrame(rows, columns=["user", *columns])

    def evaluate(self, data: Data) -> dict[str, float]:
        """Metrics on ``data`` (a file or DataFrame of held-out interactions): RMSE and MAE for
        the rating task; full-ranking metrics for ranking, excluding what the model trained and
        was validated on (as the test split is scored). ``rows`` and ``rows_scored`` say how many
        rows were given and used; none usable is an error."""
        table = self.task.read(pipeline.read_table(data, self.options.data_dir, self.options.line_format()))
        return self.model.evaluate(table, self.task)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the run directory (model.pt, arch.json, summary.json, ...) to ``path``."""
        if self._run_path is None:
            raise NaspError("nothing to save: call fit first")
        path = Path(path)
        if path.resolve() != self._run_path.resolve():
            if path.exists() and not path.is_dir():
                raise NaspError(f"{path}: exists and is not a folder; save into a new folder")
            if path.exists() and any(path.iterdir()):
                raise NaspError(f"{path}: exists and is not empty; save into a new folder")
            shutil.copytree(self._run_path, path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: str = "cpu") -> "SIF":
        """A SIF read from a run directory (of ``nasp sif search``/``train`` or ``save``)."""
        path = Path(path)
        model_file = path / pipeline.MODEL_FILE if path.is_dir() else path
        folder = model_file.parent
        recommender = pipeline.Recommender(model_file, resolve_device(device))
        est = cls(**_task_options(recommender.task))
        est._model = recommender
        est._run_path = folder
        est.summary_ = read_json(folder / "summary.json") if (folder / "summary.json").exists() else {}
        est.arch_ = read_json(folder / "arch.json") if (folder / "arch.json").exists() else None
        return est


@contextlib.contextmanager
def _as_the_command(options: SIFOptions) -> Iterator[None]:
    """What ``start_run`` does for a command, for the length of a Python ``fit``: the seed, the
    threads (at most the CPUs this process may use), determinism, and one log line per epoch on
    stderr (``verbose``); the caller's threads, determinism and log set-up are restored after."""
    threads, logger = torch.get_num_threads(), logging.getLogger("nasp")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark)
    try:
        configure_logging(logging.INFO if options.verbose else logging.WARNING)
        torch.set_num_threads(usable_threads(options.threads))
        seed_everything(options.seed)
        set_deterministic(options.deterministic)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic[1:]
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def check_model_name(name: str) -> str:
    """``name`` if it is a fixed model (an interaction function, an item-item model or LightGCN)."""
    if name not in model_names():
        raise NaspError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return name


def model_names() -> list[str]:
    """Every fixed model ``--ifc`` and ``--baselines`` name: interaction functions, item-item models, LightGCN."""
    return [*INTERACTION_FUNCTIONS.names(), *ITEM_MODELS.names(), lightgcn.NAME, *tensor.BASELINES]


def _fold_statistics(summaries: list[dict], task: Task) -> dict:
    """Mean, standard deviation and per-fold values of every validation and test metric."""
    metrics = [k[len("test_"):] for k in task.test_keys()]
    keys = [f"{part}_{m}" for part in ("valid", "test") for m in metrics
            if all(isinstance(s.get(f"{part}_{m}"), (int, float)) for s in summaries)]
    out: dict = {}
    for key in keys:
        values = np.array([s[key] for s in summaries], dtype=np.float64)
        out.update({key: float(values.mean()), f"{key}_std": float(values.std()), f"fold_{key}": values.tolist()})
    return out


def _plain(value: Any) -> Any:
    """A NumPy scalar (or array, or list of them) as Python numbers; anything else as it is."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.generic) for v in value):
        return type(value)(v.item() if isinstance(v, np.generic) else v for v in value)
    return value


def _id_list(ids: Any, name: str) -> list[str]:
    """Raw ids as strings, from a list, array or Series of str or int; anything else is an error."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        raise NaspError(f"{name}: give a list of raw ids, got {type(ids).__name__}")
    out = []
    for value in ids:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)  # 196.0 is the id 196, as DataFrames and files read it
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
            raise NaspError(f"{name}: {value!r} is not a raw id (a string or an integer)")
        out.append(str(value))
    return out


def _task_options(task: Task) -> dict:
    d = task.to_dict()
    name = d.pop("task")
    if name == "ranking":
        return {"task": name, "topk": d["topk"], "loss": d["loss"], "negatives": d["negatives"], "min_rating": d["min_rating"]}
    return {"task": name}


def _source(data: Optional[Data]) -> Any:
    """A path or name as a string; a DataFrame or table as it is (None stays None)."""
    if data is None or isinstance(data, (pd.DataFrame, RatingTable)):
        return data
    return str(data)


def _subrun(run: RunDir, name: str, config: ModelConfig, settings: TrainSettings) -> RunDir:
    """RUN/<name>/, resumed when it was started before (its lock released with the command)."""
    out = run.file(name)
    rdir = release_with_command(RunDir(out, resume=(out / CONFIG).exists(), clock=run.clock))
    if not rdir.resume:
        rdir.write_config({"command": name, "model": config.to_dict(), "settings": settings.to_dict()})
    return rdir

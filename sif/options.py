"""Every setting of a SIF job, declared once.

Each field of ``SIFOptions`` is one setting: its default (per task where the tasks differ), its
help text, its Click type and the commands that offer it. ``nasp sif search`` and ``nasp sif
train`` generate their options from these fields (``nasp.options.options_from``); the Python
API ``SIF(**options)`` takes the same names as keywords and checks them with the same types.
A setting left at ``None`` takes its task's default (``get``) or the model's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import click
import numpy as np

from nasp.options import LEARNING_RATE, WARMUP_EPOCHS, WEIGHT, RunOptions, check_settings
from nasp.config import resolved, task_default
from nasp.config import setting as _setting
from nasp.errors import NaspError
from nasp.strategies import STRATEGIES, check_domain, search_strategy_names
from nasp.strategies.local import DEFAULT_CONFIRM, check_margin, check_trial_fraction
from nasp.strategies.proximal import WARMUP_PATHS

from . import lightgcn, tensor
from .engine import TrainSettings
from .itemitem import DEFAULT_LAMBDAS, DEFAULT_NEIGHBOURS, DEFAULT_SHRINK, ITEM_MODELS, ItemItemConfig
from .joint import check_choices
from .lightgcn import DEFAULT_LAYERS, LightGCNConfig, check_layers
from .model import HISTORY_REFRESHES, MAX_DIM, ModelConfig
from .readers import LineFormat
from .space import INTERACTION_FUNCTIONS, MLP_FORMS, OUTPUT_BOUNDS, SPACES
from .splits import SPLITS, check_folds
from .tasks import TASKS, RankingTask

SEARCH, TRAIN = ("search",), ("train",)

DEFAULT_EPOCHS = 10
"""Search epochs of a strategy without a default of its own (``Strategy.default_epochs``)."""
LIGHTGCN = LightGCNConfig.defaults  # LightGCN's own defaults of lr, reg, batch_size


def search_epochs(o: "SIFOptions") -> int:
    """The default search epochs: the strategy's own (three-way local search: the starts'
    warm-ups and a trial per candidate, ``tensor.LOCAL_DEFAULTS``), else ``DEFAULT_EPOCHS``."""
    if o.ways == 3 and o.get("strategy") == "local":
        return tensor.LOCAL_DEFAULTS[o.task].epochs
    return STRATEGIES.get(o.get("strategy")).default_epochs or DEFAULT_EPOCHS


#: the fixed models that only rank, and why (``--task rating`` refuses them)
RANKING_MODELS = {**{name: "it scores items from a user's interactions" for name in ITEM_MODELS.names()},
                  lightgcn.NAME: "it is trained by BPR on interactions and scores them"}


def model_names() -> list[str]:
    """Every fixed model ``--ifc`` and ``--baselines`` name: interaction functions, item-item models, LightGCN."""
    return list(dict.fromkeys([*INTERACTION_FUNCTIONS.names(), *ITEM_MODELS.names(), lightgcn.NAME, *tensor.BASELINES]))


def check_model_name(name: str) -> str:
    """``name`` if it is a fixed model (an interaction function, an item-item model or LightGCN)."""
    if name not in model_names():
        raise NaspError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return name


def setting(default: Any = None, help: str = "", **kw: Any) -> Any:
    """``nasp.config.setting`` (kept short for the declarations below)."""
    return _setting(default, help, **kw)


@dataclass
class SIFOptions(RunOptions):
    """Every option of a SIF job, named as the ``nasp sif`` options (``None``: the default of
    the task, the strategy or the searched architecture). See ``nasp sif search --help``."""

    # what to run ---------------------------------------------------------------------------------
    task: str = setting("rating", "rating: predict explicit ratings (RMSE); ranking: implicit feedback, every row an "
                        "interaction (NDCG@K, Recall@K...).", type=click.Choice(list(TASKS.names())))
    strategy: Optional[str] = setting("local", "local (warm-started local search: train the default model, then try each "
                                      "one-row change, one epoch each from the incumbent's weights, and keep the best that beats "
                                      "the incumbent by --margin on the whole validation set; --epochs is its budget, about one "
                                      "epoch per candidate of each row per pass); nasp (proximal), no-auto (single level); the "
                                      "comparators darts, darts2, gdas, snas, asap, drnas, asng, bayesnas, random, rsws, reinforce, "
                                      "tpe (pcdarts needs a CNN cell). docs/sif.md.",
                                      type=click.Choice(search_strategy_names()), commands=SEARCH)
    space: Optional[str] = setting(None, "sif: the paper's space (one row of vector-wise ops; element-wise MLPs, SVD++ user vector and "
                                   "box head fixed). autocf: input encoding and element-wise function of each side, vector-wise op "
                                   "and prediction head searched jointly (3,024 architectures; docs/sif.md). autocf-graph: autocf plus graph-propagated "
                                   "(1 or 2 hops) and item-item input encodings (10,080) [default: autocf with "
                                   "--strategy local, else sif: where each was measured].",
                                   type=click.Choice(list(SPACES)), commands=SEARCH,
                                   derived=lambda o: "autocf" if o.get("strategy") == "local" else "sif")
    ifc: Optional[str] = setting(None, "A fixed interaction function instead (multiply = SVD++, or biased MF with --no-implicit, "
                                 "BPR-MF when ranking; gmf; mlp = NCF tower; neumf; pop = popularity, ranking only), or an "
                                 "item-item model in closed form (ease = EASE^R, itemknn = cosine ItemKNN; ranking only), or "
                                 "lightgcn = LightGCN (graph-propagated embeddings, BPR, Adam; ranking only; --gcn-layers). "
                                 "With --ways 3: cp, distmult (first and third columns of one kind: ranking only), complex, "
                                 "tucker, mlp (an MLP over the three embeddings).",
                                 type=click.Choice(model_names()), commands=TRAIN)
    arch: Optional[Union[str, Path]] = setting(None, "arch.json (or a search run directory) to retrain.",
                                               type=click.Path(path_type=Path), commands=TRAIN)
    choices: Optional[str] = setting(None, "A fixed model of the autocf space instead: these changes of its default SVD++ model "
                                     "(e.g. item_input=both+op=max; rows: user_input, item_input, user_function, item_function, "
                                     "op, head), the --baselines syntax; the summary's choices name the whole model.",
                                     type=click.STRING, metavar="ROW=NAME[+ROW=NAME...]", commands=TRAIN)
    # data ----------------------------------------------------------------------------------------
    ways: int = setting(2, "Id columns of the data: 2 (user, item) or 3: three ids and optionally a value, e.g. a knowledge "
                        "graph's head, relation, tail (--task ranking: filtered MRR and Hits@1/3/10 of knowledge-graph "
                        "completion) or user, item, context, rating (--task rating: RMSE; also RecBole .inter files with three "
                        ":token columns and rating:float); docs/sif.md 'Three-way data'.",
                        type=click.INT)
    split: Optional[str] = setting(None, "global: random over all rows; random: per user, RecBole's ratio split; temporal: per "
                                   "user by timestamp, newest to test.", type=click.Choice(list(SPLITS.names())),
                                   by_task={"rating": "global", "ranking": "random"})
    test_ratio: Optional[float] = setting(None, "Held out for test (ignored with --test-data).", type=click.FLOAT,
                                          by_task={"rating": 0.2, "ranking": 0.1})
    valid_ratio: Optional[float] = setting(None, "Held out for validation (selection, early stopping): a fraction of all rows "
                                           "(--split global) or of each user's.", type=click.FLOAT,
                                           by_task={"rating": 0.1, "ranking": 0.1})
    data_dir: Optional[Union[str, Path]] = setting(None, "Data root for known names (default: $NASP_DATA_DIR, else ./datasets).",
                                                   type=click.Path(file_okay=False, path_type=Path))
    sep: Optional[str] = setting(None, "Field separator of the data files, e.g. ';', '|', '::' or tab [default: sniffed: '::', "
                                 "tab, ',' or whitespace].", type=click.STRING, metavar="SEP")
    columns: Optional[Union[str, Sequence[str]]] = setting(
        None, "The role of each column of the data files, in order ('-' skips a column), e.g. item,user,-,rating "
        "[default: the header's names, else user,item,rating,timestamp].", type=click.STRING,
        metavar="user,item[,rating][,timestamp]")
    # ranking -------------------------------------------------------------------------------------
    min_rating: Optional[float] = setting(None, "Ranking: keep only rows rated at least this (RecBole's threshold) [default: "
                                          "every row].", type=click.FLOAT)
    topk: Optional[Union[str, Sequence[int]]] = setting(None, "Ranking cut-offs of the metrics; the first selects (valid_ndcg@K) "
                                                        f"[default: {','.join(map(str, RankingTask.topk))}].",
                                                        type=click.STRING, metavar="K[,K...]")
    loss: Optional[str] = setting(None, f"Ranking loss [default: {RankingTask.loss_name}].", type=click.Choice(["bpr", "bce"]))
    negatives: Optional[int] = setting(None, "Ranking: sampled negatives per positive (1 to 1000), uniform over items the user has "
                                       f"not interacted with in training [default: {RankingTask.negatives}].", type=click.INT)
    # model ---------------------------------------------------------------------------------------
    dim: Optional[int] = setting(None, "Embedding dimension (the tables must fit in the device's available memory) "
                                 f"[default: an --arch's, else 64; --ways 3 --task ranking: {tensor.TensorSettings.dim}].",
                                 type=click.IntRange(min=1, max=MAX_DIM))
    mlp: str = setting(ModelConfig.mlp, "Element-wise MLP g: residual (x + MLP(x), starts as the identity) or paper (the paper's "
                       "Linear(1,8)-tanh-Linear(8,1), random start). Saved in arch.json.",
                       type=click.Choice(list(MLP_FORMS)), commands=SEARCH)
    head: Optional[str] = setting(None, "Bound on each op's output vector w (length k): box (|w_k| <= 1/sqrt(k), inside the unit "
                                  "ball) or ball (the authors' unit L2 ball) [default: box].", type=click.Choice(list(OUTPUT_BOUNDS)))
    biases: Optional[bool] = setting(None, "Global, user and item bias terms (default on; off for gmf and neumf).")
    implicit: Optional[bool] = setting(None, "SVD++ implicit feedback: add the user's training items' factors to the user vector "
                                       "(default on; off for gmf and neumf).")
    history_refreshes: Optional[int] = setting(
        None, "With --implicit: times per epoch the cached history sums hand their gradient to the item factors; 0: exact "
        f"sums at every step (slower; always so with --strategy darts2) [default: {HISTORY_REFRESHES}].",
        type=click.IntRange(min=0))
    gcn_layers: Optional[int] = setting(None, "lightgcn: propagation layers over the user-item graph (1 to 10) "
                                        f"[default: {DEFAULT_LAYERS}, RecBole's].", type=click.INT, metavar="K")
    ease_lambda: Optional[Union[str, float, Sequence[float]]] = setting(
        None, "ease: L2 weight of EASE^R's closed form; several: chosen on validation "
        f"[default: {','.join(f'{v:g}' for v in DEFAULT_LAMBDAS)}].", type=click.STRING, metavar="L[,L...]")
    knn_neighbours: Optional[Union[str, int, Sequence[int]]] = setting(
        None, "itemknn: most similar items each item keeps; several: chosen on validation "
        f"[default: {','.join(map(str, DEFAULT_NEIGHBOURS))}].", type=click.STRING, metavar="K[,K...]")
    knn_shrink: Optional[float] = setting(None, "itemknn: shrinkage added to the cosine similarity's denominator "
                                          f"[default: {DEFAULT_SHRINK:g}].", type=click.FloatRange(min=0))
    # optimisation --------------------------------------------------------------------------------
    # Defaults tuned on MovieLens-100K validation data (docs/results/sif.md). Ranking: lr 0.1, reg
    # 1e-3, 4 negatives (fixed multiply); for its search arch lr 1e-3 and a 2-epoch warm-up (with
    # "auto" validation NDCG kept rising for 7 of 10 epochs, leaving the alphas too few steps).
    # Baselines: SVD++'s multiply, plus the larger space's best fixed model for ratings (the item
    # side's history) and EASE^R for ranking, so that --keep best never hands back less (EASE^R is
    # left out, with a warning, where its item x item matrices do not fit in memory).
    epochs: Optional[int] = setting(None, f"Search epochs, warm-up included [default: {DEFAULT_EPOCHS}; local: "
                                    f"{STRATEGIES.get('local').default_epochs}, with --ways 3 {tensor.LOCAL_DEFAULTS['rating'].epochs} "
                                    f"(ranking: {tensor.LOCAL_DEFAULTS['ranking'].epochs}): the "
                                    f"warm-up of each start and a trial for each of the {len(tensor.SPACE)} candidates].",
                                    type=click.IntRange(min=1), commands=SEARCH, derived=search_epochs)
    batch_size: Optional[int] = setting(None, f"Rows per step; lightgcn: {LIGHTGCN['batch_size']}; --ways 3 --task ranking: "
                                        f"{tensor.TensorSettings.batch_size} queries.", type=click.IntRange(min=1),
                                        by_task={"rating": 512, "ranking": 512})
    lr: Optional[float] = setting(None, "Adagrad learning rate of embeddings, biases, heads; lightgcn: Adam's "
                                  f"(default {LIGHTGCN['lr']:g}); --ways 3 --task ranking: Adam's (default "
                                  f"{tensor.TensorSettings.lr:g}).", type=LEARNING_RATE, by_task={"rating": 0.1, "ranking": 0.1})
    reg: Optional[float] = setting(None, f"L2 weight on each row's embeddings and biases; lightgcn: {LIGHTGCN['reg']:g}, on the "
                                   "rows' layer-0 embeddings; --ways 3 --task ranking: Adam's weight decay (default "
                                   f"{tensor.TensorSettings.reg:g}).", type=WEIGHT, by_task={"rating": 0.0125, "ranking": 1e-3})
    implicit_reg: Optional[float] = setting(None, "L2 weight on each row's implicit item factor (with --implicit).", type=WEIGHT,
                                            by_task={"rating": 0.1, "ranking": 1e-4})
    arch_lr: Optional[float] = setting(None, "Adam learning rate of alpha (and, with --mlp-on-valid, the element-wise MLPs); "
                                       f"--ways 3: default {tensor.TensorSettings.arch_lr:g}.",
                                       type=LEARNING_RATE, commands=SEARCH, by_task={"rating": 3e-4, "ranking": 1e-3})
    mlp_on_valid: bool = setting(False, "Train the element-wise MLPs with the architecture on validation batches, as the paper "
                                 "does (validation data then enter these weights and the searched model's validation score "
                                 "flatters it). Default: they are weights, trained on training data only.", commands=SEARCH)
    warmup_epochs: Union[int, str, None] = setting(
        None, "nasp/no-auto: epochs that train the weights on randomly sampled ops before alpha moves; local: epochs that "
        "train the default model before the first change is tried (default 3; --ways 3: each start, "
        f"{tensor.LOCAL_DEFAULTS['rating'].warmup} for rating, {tensor.LOCAL_DEFAULTS['ranking'].warmup} for ranking); 'auto': until the validation metric stops "
        "improving.", type=WARMUP_EPOCHS, commands=SEARCH, by_task={"rating": "auto", "ranking": 2})
    warmup_path: Optional[str] = setting(
        None, "nasp/no-auto: what the warm-up trains: sampled (a uniformly random architecture per step, the paper's) or "
        "default (the space's default model; then every candidate starts from its weights where the space allows, and "
        "the architecture values start at it) [default: sampled].", type=click.Choice(WARMUP_PATHS), commands=SEARCH)
    arch_batch_size: Optional[int] = setting(
        None, "Validation rows per architecture step of the strategies that step on validation batches (nasp, darts, "
        "gdas, ...) [default: --batch-size].", type=click.IntRange(min=1), commands=SEARCH)
    candidates: Optional[int] = setting(None, "Architectures tried by --strategy random (default: 10).",
                                        type=click.IntRange(min=1), commands=SEARCH)
    margin: Optional[float] = setting(None, "local: a one-row change replaces the incumbent when its validation metric beats the "
                                      "incumbent's, trained as long, by this fraction of it (ranking: about two standard errors of the "
                                      "paired per-user NDCG@10 difference of neighbouring models on MovieLens-100K; --ways 3: 0.001).",
                                      type=click.FloatRange(min=0), commands=SEARCH, by_task={"rating": 0.001, "ranking": 0.01})
    trial_fraction: Optional[float] = setting(None, "local: the part of an epoch each trial trains (the incumbent's "
                                              "own trial too), from its first batches (--ways 3: "
                                              f"{tensor.LOCAL_DEFAULTS['rating'].trial_fraction:g} for rating, "
                                              f"{tensor.LOCAL_DEFAULTS['ranking'].trial_fraction:g} for ranking).",
                                              type=click.FloatRange(min=0, max=1, min_open=True), commands=SEARCH,
                                              by_task={"rating": 0.5, "ranking": 1.0})
    confirm: Optional[int] = setting(None, "local: trials more that a row step's winning change and the incumbent each train, "
                                     "from where their trials ended, before the change replaces the incumbent; it must "
                                     f"still win as in its row step (default: {DEFAULT_CONFIRM}, none).",
                                     type=click.IntRange(min=0), commands=SEARCH)
    retrain: bool = setting(True, "Retrain the found IFC to convergence and report test metrics.", secondary="--no-retrain",
                            commands=SEARCH)
    baselines: Optional[Union[str, Sequence[str]]] = setting(
        None, "Fixed models trained beside the searched one (plain embeddings, same settings) and compared on validation: "
        "--ifc names (ranking: also ease, itemknn, lightgcn, the last with its own defaults of --lr, --reg and --batch-size "
        "where not given), or fixed models of the autocf space as ROW=NAME[+ROW=NAME] changes of its default SVD++ model "
        "(e.g. item_input=both); 'all': every op of the paper's space; 'none'. --ways 3: cp, distmult (ranking), complex, "
        "tucker, mlp, or all (default none).", type=click.STRING,
        metavar="none|all|IFC[,IFC...]", commands=SEARCH, by_task={"rating": "multiply,item_input=both", "ranking": "multiply,ease"})
    keep: str = setting("best", "The model kept (model.pt, test metrics): whichever validates best, or always the searched one. "
                        "The summary says which won and by how much (searched_margin).",
                        type=click.Choice(["best", "searched"]), commands=SEARCH)
    warm_start: Optional[bool] = setting(None, "Retrain from the searched weights of the chosen model, or from fresh "
                                         "embeddings as in the paper [default: warm after --strategy local, whose "
                                         "incumbent is a model trained on training data alone; else fresh: "
                                         "docs/results/sif.md].", secondary="--fresh", commands=SEARCH,
                                         derived=lambda o: o.get("strategy") == "local")
    max_epochs: int = setting(100, "Training epochs at most (after a search: of the retraining); early stopping on validation.",
                              type=click.IntRange(min=1))
    patience: int = setting(3, "Training stops after this many epochs without a better validation score.",
                            type=click.IntRange(min=1))
    refit: Optional[bool] = setting(None, "After early stopping, train again on train+valid for the chosen epoch count; test "
                                    "metrics come from the refit.", by_task={"rating": True, "ranking": False})
    folds: Optional[int] = setting(None, "K-fold cross-validation instead of one split: every row tested once, each fold trained "
                                   "on the others (validation split off them), folds fixed by --seed; the summary gives every "
                                   "metric's mean, _std and per-fold values (fold-K/ holds each fold's run; no model.pt).",
                                   type=click.INT, metavar="K", commands=TRAIN)
    #: one log line per epoch on stderr during ``fit`` (the commands' default; ``-q`` there)
    verbose: bool = setting(True, cli=False)

    # resolved values -----------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of setting ``name``: as given, else its default (derived from the other
        settings, or this task's; ``nasp.config.resolved``)."""
        return resolved(self, name, self.task)

    def train_settings(self, search: bool = True, model_defaults: Optional[dict] = None) -> TrainSettings:
        """The optimisation settings: as given, else the model's own defaults where it has them
        (LightGCN's), else the task's; ``search=False``: the architecture rate is the default."""
        own = model_defaults or {}
        pick = lambda name: own[name] if getattr(self, name) is None and name in own else self.get(name)  # noqa: E731
        return TrainSettings(lr=pick("lr"), reg=pick("reg"), implicit_reg=pick("implicit_reg"), batch_size=pick("batch_size"),
                             arch_lr=self.get("arch_lr") if search else task_default(type(self), "arch_lr", self.task),
                             max_epochs=self.max_epochs, patience=self.patience, seed=self.seed, amp=bool(self.amp))

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
        """Types and ranges (the command line's Click types), then what needs several options."""
        self.check_types()
        check_settings(self)
        self.line_format()
        tensor.check_options(self)
        check_domain(self.get("strategy"), "sif")  # pcdarts: a CNN cell's channels and edges only
        if self.margin is not None:
            check_margin(self.margin)
        if self.trial_fraction is not None:
            check_trial_fraction(self.trial_fraction)
        if self.batch_size is not None:
            from nasp.distributed import check_shards

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
        searches = self.ifc is None and self.arch is None and self.choices is None
        if self.space is not None and self.space != "sif" and not searches:
            raise NaspError("--space applies to a search; --ifc, --arch and --choices name the model to train")
        if searches and self.ways == 2 and self.get("space") != "sif":
            given = [f"--{name}" for name in ("implicit", "head") if getattr(self, name) is not None]
            if given:
                raise NaspError(f"{' and '.join(given)}: the {self.get('space')} space searches the input encodings and heads; "
                                "leave them out (or use --space sif)")
        if self.folds is not None:
            check_folds(self.folds)
            if self.test_ratio is not None:
                raise NaspError("--test-ratio with --folds: the folds make the test parts; leave it out")


def _plain(value: Any) -> Any:
    """A NumPy scalar (or array, or list of them) as Python numbers; anything else as it is."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.generic) for v in value):
        return type(value)(v.item() if isinstance(v, np.generic) else v for v in value)
    return value

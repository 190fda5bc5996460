"""What the ``nasp sif`` commands do, as plain functions: search, train (retrain), recommend."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nasp.data import read_small_file
from nasp.devices import check_memory
from nasp.errors import NaspError
from nasp.network import check_state
from nasp.plots import plot_alphas, plot_curves
from nasp.registry import Registry
from nasp.loop import EarlyStopping, run_search
from nasp.runs import RunDir, _short, read_json, save_torch
from nasp.strategies import STRATEGIES, build_strategy

from .data import IdMap, Interactions, RatingTable, Splits
from .engine import TrainSettings, make_problem
from .joint import config_from_dict, network_for
from .model import DATA_BUFFERS, MAX_DIM, ModelConfig, SIFNetwork, dense_gradients_off_cpu, group_rows
from .readers import LineFormat, read_ratings, read_titles, resolve_ratings_path, table_from_frame, titles_missing
from .space import INTERACTION_FUNCTIONS, check_head, check_mlp
from .splits import SplitSpec, split
from .tasks import RatingTask, Task, task_from_dict

log = logging.getLogger("nasp.sif")

ARCH_FORMAT = "nasp-sif-arch/1"
TABLE_COPIES = 3
"""Float32 copies of every embedding table a training holds: weights, gradients, optimizer state."""
MODEL_FILE = "model.pt"


@dataclass
class DataOptions:
    """Where the interactions come from and how they are split (the defaults: the SIF paper's
    random 7:1:2 split of all ratings; ``SIFOptions`` gives each task's)."""

    data: str
    test_data: Optional[str] = None
    data_dir: Optional[str] = None
    test_ratio: float = 0.2
    valid_ratio: float = 0.1
    seed: int = 0
    valid_data: Optional[str] = None
    split: str = "global"
    #: how the files' lines are read (``--sep``, ``--columns``); None: sniffed
    line_format: Optional[LineFormat] = None

    def spec(self, task: Task, read: callable) -> SplitSpec:
        """The split to make, the given files read with ``read``."""
        return SplitSpec(
            self.split,
            self.test_ratio,
            self.valid_ratio,
            self.seed,
            read(self.test_data) if self.test_data is not None else None,
            read(self.valid_data) if self.valid_data is not None else None,
        )


def read_table(source: Union[str, Path, pd.DataFrame, RatingTable], data_dir: Optional[Union[str, Path]] = None,
               line_format: Optional[LineFormat] = None) -> RatingTable:
    """Interactions from a file (its lines read as ``line_format`` says), a known name (under
    ``data_dir``), a DataFrame (by its column names) or a table as it is."""
    if isinstance(source, RatingTable):
        return source
    if isinstance(source, pd.DataFrame):
        return table_from_frame(source)
    return read_ratings(resolve_ratings_path(str(source), data_dir), fmt=line_format)


def load_splits(opts: DataOptions, task: Optional[Task] = None) -> tuple[Splits, Path]:
    """Read ``--data`` (and ``--valid-data``/``--test-data``) as ``task`` reads them and split;
    returns the splits and the ratings path. Every check of the data happens here."""
    task = task or RatingTask()

    def read(source) -> RatingTable:
        return task.read(read_table(source, opts.data_dir, opts.line_format))

    path = None if isinstance(opts.data, (pd.DataFrame, RatingTable)) else resolve_ratings_path(opts.data, opts.data_dir)
    table = read(opts.data if path is None else str(path))
    spec = opts.spec(task, read)
    for option, given in (("--valid-data", spec.valid_table), ("--test-data", spec.test_table)):
        if given is not None and _same_rows(given, table):
            log.warning("%s holds the same interactions as --data: its metrics measure what the model trained on; "
                        "hold out other rows", option)
    splits = split(table, spec)
    task.check(splits)
    return splits, path


def _same_rows(a: RatingTable, b: RatingTable) -> bool:
    """Whether two tables hold the same (user, item, rating) rows in the same order (the same
    file given twice, or a copy)."""
    return (len(a) == len(b) and np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
            and np.array_equal(a.ratings, b.ratings))


def data_summary(splits: Splits, task: Optional[Task] = None) -> dict:
    """Sizes of the splits and how many valid/test rows involve users/items unseen in training."""
    word = "ratings" if (task or RatingTask()).name == "rating" else "interactions"
    out = {
        "num_users": splits.ids.num_users,
        "num_items": splits.ids.num_items,
        f"train_{word}": len(splits.train),
        f"valid_{word}": len(splits.valid),
        f"test_{word}": len(splits.test),
        "train_only_users": splits.train_only_users,
    }
    seen_u = torch.zeros(splits.ids.num_users, dtype=torch.bool)
    seen_i = torch.zeros(splits.ids.num_items, dtype=torch.bool)
    seen_u[splits.train.users] = True
    seen_i[splits.train.items] = True
    for name, part in (("valid", splits.valid), ("test", splits.test)):
        known_u = (part.users >= 0) & seen_u[part.users.clamp_min(0)]
        known_i = (part.items >= 0) & seen_i[part.items.clamp_min(0)]
        # users unknown to the id map are all -1 after encoding: count their raw ids instead (the
        # items of given files are in the map, unseen in training, and counted above)
        extra = {"users": splits.unknown_ids.get(name, {}).get("users", 0), "items": 0}
        out[f"{name}_unseen_users"] = int(torch.unique(part.users[~known_u & (part.users >= 0)]).numel()) + extra["users"]
        out[f"{name}_unseen_items"] = int(torch.unique(part.items[~known_i & (part.items >= 0)]).numel()) + extra["items"]
        out[f"{name}_cold_{word}"] = int((~(known_u & known_i)).sum())
    return out


def build_network(splits: Splits, config: ModelConfig, device: torch.device, task: Optional[Task] = None) -> SIFNetwork:
    """A network sized for ``splits``, knowing which users/items training has seen; a rating
    model clips to the training rating range, a ranking model's scores are left as they are.
    Tables larger than the device's available memory are refused before they are allocated."""
    tables = (config.num_users + config.num_items) * config.dim * (2 if getattr(config, "implicit", True) else 1)
    check_memory(tables * 4 * TABLE_COPIES, f"--dim {config.dim}: the embedding tables of {config.num_users} users and "
                 f"{config.num_items} items", device)
    net = network_for(config)
    with torch.no_grad():
        net.known_users.zero_()
        net.known_items.zero_()
        net.known_users[splits.train.users] = True
        net.known_items[splits.train.items] = True
        if (task or RatingTask()).name == "rating":
            net.rating_range.copy_(torch.tensor(splits.rating_range))
        if not trains(config):  # popularity: item scores are training counts
            net.item_bias.weight.copy_(torch.bincount(splits.train.items, minlength=config.num_items).float().unsqueeze(1))
    net.set_history(splits.train.users, splits.train.items)  # of the history encoders it has
    dense_gradients_off_cpu(net, device)
    return net.to(device)


def trains(config: ModelConfig) -> bool:
    """Whether the model of ``config`` has weights to train (not ``pop``, whose scores are counts);
    a model outside the interaction functions (LightGCN) trains."""
    name = config.ops[0]
    return name not in INTERACTION_FUNCTIONS or getattr(INTERACTION_FUNCTIONS.get(name), "trains", True)


def train_ratings_per_second(rows: list[dict], per_epoch: int) -> Optional[float]:
    """Training ratings (rows of the training split: ratings, or positives when ranking) per
    second of the run loop's training time (each epoch row's ``train_seconds``: the steps, not
    the evaluation); None without a timed epoch (rows of runs from before the timing was kept
    are left out)."""
    timed = [r["train_seconds"] for r in rows if r.get("train_seconds")]
    return round(per_epoch * len(timed) / sum(timed), 1) if timed else None


# search -----------------------------------------------------------------------------------------
#: the smallest batch size ``warn_few_steps`` suggests: on data too small for enough steps with
#: it (a few thousand rows), smaller batches only make noisier steps, and it says nothing
SMALLEST_SUGGESTED_BATCH = 32


def warn_few_steps(strategy: str, rows: int, batch_size: int) -> None:
    """One warning when ``rows`` training rows in batches of ``batch_size`` make an epoch of fewer
    steps than ``strategy`` needs (``Strategy.min_epoch_steps``), with a batch size that gives it
    (if that is at least ``SMALLEST_SUGGESTED_BATCH``)."""
    need, steps = STRATEGIES.get(strategy).min_epoch_steps, math.ceil(rows / batch_size)
    if steps < need and rows // need >= SMALLEST_SUGGESTED_BATCH:
        log.warning("Warning: an epoch is %d steps (%d training rows, --batch-size %d); strategy %r decides on parts of "
                    "epochs and needs about %d: try --batch-size %d", steps, rows, batch_size, strategy, need, rows // need)


def search(run: RunDir, splits: Splits, config: ModelConfig, settings: TrainSettings, device: torch.device, *,
           strategy: str, epochs: int, candidates: Optional[int] = None, warmup_epochs: Union[int, str, None] = None,
           margin: Optional[float] = None, warmup_path: Optional[str] = None, arch_batch_size: Optional[int] = None,
           task: Optional[Task] = None, plots: bool = True, trial_fraction: Optional[float] = None,
           confirm: Optional[int] = None) -> tuple[dict, dict]:
    """Search the interaction function with ``strategy`` for ``epochs`` (the strategy's own
    options: ``candidates``, ``warmup_epochs``, ``margin``, ``warmup_path``, ``trial_fraction``, ``confirm``;
    the architecture steps take validation batches of ``arch_batch_size`` rows, default
    ``settings.batch_size``); writes ``arch.json`` (and, with ``plots``, alphas.png and
    curves.png). Returns (arch, search summary)."""
    task, seed = task or RatingTask(), settings.seed
    if len(splits.valid) == 0:
        raise NaspError("the search needs validation data: use --valid-ratio > 0 or --valid-data")
    if STRATEGIES.get(strategy).unrolls_weights:  # darts2: no gradients gathered across steps
        config = dataclasses.replace(config, history_refreshes=None)
    if arch_batch_size is not None and not STRATEGIES.get(strategy).uses_valid_batch:
        log.warning("Warning: strategy %r ignores --arch-batch-size (it takes no validation batches)", strategy)
    warn_few_steps(strategy, len(splits.train), settings.batch_size)
    net = build_network(splits, config, device, task)
    options = {"candidates": candidates, "seed": seed, "warmup_epochs": warmup_epochs, "margin": margin,
               "warmup_path": warmup_path, "trial_fraction": trial_fraction, "confirm": confirm}
    problem = make_problem(net, settings, options, task)
    strat = build_strategy(strategy, problem, epochs)
    on_device = splits.to(device)
    t0 = time.perf_counter()
    rows = run_search(
        strat,
        task.train_batches(on_device, settings.batch_size, seed),
        task.valid_batches(on_device, arch_batch_size or settings.batch_size, seed),
        lambda model: task.evaluate(model, on_device, "valid"),
        epochs,
        run,
        stage="search",
    )
    seconds = time.perf_counter() - t0
    alphas = strat.derive_alphas()
    best = best_search_epoch(rows, task.metric, task.higher_is_better) if not strat.selects_on_validation else None
    if best is not None:
        alphas = [a.to(alphas[0]) for a in net.logged_alphas(best["architecture"])]
    derived = net.derive(alphas)
    net.set_architecture(alphas)
    arch = {
        "format": ARCH_FORMAT,
        "interaction": derived["interaction"],
        **({"choices": derived["choices"]} if "choices" in derived else {}),
        "alpha": derived["alpha"],
        "probabilities": derived["probabilities"],
        "strategy": strategy,
        **task.to_dict(),
        "model": config.to_dict(),
        "elementwise_mlp": _mlp_state(net),
    }
    if strategy == "random":
        arch["candidates"] = strat.history
    run.write_json("arch.json", arch)
    if plots:
        plot_alphas(rows, run.file("alphas.png"), f"SIF {strategy}: chose {arch['interaction']}")
        plot_curves(rows, run.file("curves.png"), ("train_loss", "arch_loss", task.metric), f"SIF search ({strategy})")
    with strat.evaluation():
        valid_metrics = task.evaluate(net, on_device, "valid")
    summary = {
        "interaction": arch["interaction"],
        **({"choices": arch["choices"]} if "choices" in arch else {}),
        "chosen_at_epoch": best["epoch"] if best is not None else len(rows),  # rows count epochs from 1
        "search_seconds": round(sum(r["seconds"] for r in rows), 3),
        "search_train_ratings_per_second": train_ratings_per_second(rows, len(splits.train)),
        "search_epochs": len(rows),
        f"search_{task.metric}": valid_metrics.get(task.metric),
        "valid_score_of": validation_scores(strat),
        "wall_seconds_search": round(seconds, 3),
    }
    return arch, summary


def best_search_epoch(rows: list[dict], metric: str = "valid_rmse", higher_is_better: bool = False) -> Optional[dict]:
    """The search epoch (warm-up epochs excluded) whose architecture scored best on validation.

    The NASP step moves the alpha of an op in proportion to how well its output correlates
    with the validation residual; once the chosen op's weights start to overfit, that pulls
    alphas of ops that merely shrink the prediction upwards, and the final arg-max can flip in
    the last epoch to an op that validates much worse (seen on ml-100k: multiply's lead shrank
    to 5e-5 and max took over at valid RMSE 0.955 against 0.920). Each epoch's row holds the
    validation score of the architecture that was active, so the search keeps the best one.
    """
    candidates = [r for r in rows if not r.get("warmup") and r.get(metric) is not None]
    if not candidates:
        return None
    pick = max if higher_is_better else min
    return pick(candidates, key=lambda r: r[metric])


def validation_scores(strategy: object) -> str:
    """What a search's ``valid_rmse`` scores: "discrete architecture" (the exported IFC; NASP,
    no-auto, random) or "supernet" (DARTS: the softmax mixture of every op), as the strategy
    class declares in ``validates``."""
    return getattr(type(strategy), "validates", "discrete architecture")


def _mlp_state(net: SIFNetwork) -> Optional[dict]:
    """The searched element-wise MLPs, per side that has one (both in the paper's space)."""
    out = {side: {k: v.detach().cpu().tolist() for k, v in mlp.state_dict().items()}
           for side, mlp in (("user", net.mlp_u), ("item", net.mlp_v)) if mlp is not None}
    return out or None


# arch files -------------------------------------------------------------------------------------
def fixed_arch(choices: dict, task: Optional[Task] = None, dim: int = 64, mlp: str = ModelConfig.mlp) -> dict:
    """The arch.json of one fixed model of the larger space (``choices``: row -> candidate), for
    ``nasp sif train --arch FILE`` or ``SIF(arch=FILE)``; an ``mlp`` function is then trained
    with the weights (no searched state)."""
    space = config_from_dict({"space": "autocf", "dim": dim, "mlp": mlp, "num_users": 1, "num_items": 1})
    space.fixed(choices)  # unknown or missing choices: a clear error
    model = space.to_dict()  # every key, as a search's arch.json records it
    return {"format": ARCH_FORMAT, "interaction": choices["op"], "choices": dict(choices), "strategy": "fixed",
            **(task or RatingTask()).to_dict(), "model": model}


def load_arch(path: Path) -> dict:
    """Read and validate an ``arch.json`` (a run directory is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "arch.json"
    arch = read_json(path, "architecture file")
    if not isinstance(arch, dict) or "interaction" not in arch:
        raise NaspError(f"{path}: not a SIF architecture file (no 'interaction' key)")
    name = arch["interaction"]
    if not isinstance(name, str) or name not in INTERACTION_FUNCTIONS:
        raise NaspError(f"{path}: unknown interaction op {name!r}; known: {', '.join(INTERACTION_FUNCTIONS.names())}")
    if arch.get("format", ARCH_FORMAT) != ARCH_FORMAT:  # files of the first rounds have none
        raise NaspError(f"{path}: unknown format {arch['format']!r}; this version reads {ARCH_FORMAT!r}")
    model = arch.get("model")
    if not isinstance(model, dict):
        raise NaspError(f"{path}: {'no' if model is None else 'malformed'} 'model' (an object with the model's shape)")
    try:
        if "head" in model:
            check_head(model["head"])
        if "mlp" in model:
            check_mlp(model["mlp"])
    except NaspError as exc:
        raise NaspError(f"{path}: {exc}") from None
    if model.get("space", "sif") != "sif" or "choices" in arch:
        try:
            if model.get("space") != "autocf":
                raise NaspError("'choices' belong to an architecture of the autocf space ('model.space': 'autocf')")
            if not isinstance(arch.get("choices"), dict):
                raise NaspError("no 'choices' (one candidate per row of the space)")
            config = config_from_dict({**model, "num_users": 1, "num_items": 1}).fixed(arch["choices"])
            if not isinstance(config.dim, int) or isinstance(config.dim, bool) or config.dim < 1:
                raise ValueError(f"dim {config.dim!r}")
        except NaspError as exc:
            raise NaspError(f"{path}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise NaspError(f"{path}: malformed 'model' ({exc})") from None
    missing = [key for key in ("head", "mlp", "biases", "implicit") if key not in model]
    if missing:
        raise NaspError(f"{path}: 'model' has no {missing[0]!r} (an arch.json of nasp sif search has every key)")
    dim = model.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIM:
        raise NaspError(f"{path}: 'model.dim' is {'missing' if dim is None else json.dumps(dim)}, "
                        f"not an embedding dimension (1..{MAX_DIM})")
    mlp = arch.get("elementwise_mlp")
    if mlp is not None:
        try:
            # the paper's space has an MLP on both sides; the larger one on the sides that chose one
            sides = {"user", "item"} if model.get("space", "sif") == "sif" else set(mlp)
            if not isinstance(mlp, dict) or not sides or sides - {"user", "item"}:
                raise ValueError("sides")
            for side in sides:
                hidden = len(mlp[side]["inner.weight"])
                shapes = {"inner.weight": [hidden, 1], "inner.bias": [hidden], "outer.weight": [1, hidden], "outer.bias": [1]}
                for key, shape in shapes.items():
                    values = torch.tensor(mlp[side][key], dtype=torch.float32)
                    if list(values.shape) != shape or not bool(torch.isfinite(values).all()):
                        raise ValueError(f"{side}.{key}")
        except (KeyError, TypeError, ValueError) as exc:
            raise NaspError(f"{path}: malformed 'elementwise_mlp' ({exc})") from None
    arch["_path"] = str(path)
    return arch


# train ------------------------------------------------------------------------------------------
def chosen_op_state(search_state: dict, ops: Sequence[str], chosen: str) -> dict:
    """The part of a search network's state that a one-op network of ``chosen`` can load:
    embeddings, biases, element-wise MLPs and the chosen op's head (not alpha, not other ops,
    not the buffers that describe the training data)."""
    k = list(ops).index(chosen)
    out = {}
    for key, value in search_state.items():
        if key == "alpha" or key in DATA_BUFFERS:
            continue
        if key.startswith("ops."):
            if key.startswith(f"ops.{k}."):
                out["ops.0." + key[len(f"ops.{k}."):]] = value
            continue
        out[key] = value
    return out


def train(run: RunDir, splits: Splits, config: ModelConfig, settings: TrainSettings, device: torch.device, *,
          mlp_state: Optional[dict] = None, tune_mlp: bool = False, init_state: Optional[dict] = None,
          task: Optional[Task] = None, test: bool = True, stage: str = "train", plots: bool = True) -> tuple[SIFNetwork, dict]:
    """Train one fixed IFC to convergence (``settings.max_epochs`` at most, early stopping on the
    task's validation metric after ``settings.patience`` epochs without progress); restores the best epoch. ``mlp_state`` loads searched element-wise MLPs (frozen unless
    ``tune_mlp``); ``init_state`` (see ``chosen_op_state``) starts from searched weights instead
    of fresh ones. A baseline that does not train (``pop``) is only evaluated. ``test=False``
    leaves the test split untouched (a candidate that may not be kept). ``stage`` names the
    stage in the progress bar and the epoch log lines (``retrain``, ``baseline multiply``, ...)."""
    task, seed, max_epochs = task or RatingTask(), settings.seed, settings.max_epochs
    net = build_network(splits, config, device, task)
    if init_state is not None:
        missing, unexpected = net.load_state_dict(init_state, strict=False)
        architecture = {name for name, p in net.named_parameters() if any(p is a for a in net.arch_parameters())}
        if unexpected or set(missing) - {*architecture, *DATA_BUFFERS}:
            raise NaspError(f"searched weights do not fit the retrained network (missing {missing}, unexpected {unexpected})")
    for side, mlp in (("user", net.mlp_u), ("item", net.mlp_v)):
        if mlp_state is not None and mlp is not None and side in mlp_state:
            mlp.load_state_dict({k: torch.tensor(v) for k, v in mlp_state[side].items()})
            mlp.requires_grad_(tune_mlp)
    on_device = splits.to(device)
    steps = trains(config)
    stopper = EarlyStopping(task.metric, task.higher_is_better, settings.patience) if len(splits.valid) and steps else None
    t0 = time.perf_counter()
    rows = []
    if steps:
        strat = build_strategy("fixed", make_problem(net, settings, task=task), max_epochs)
        rows = run_search(
            strat,
            task.train_batches(on_device, settings.batch_size, seed),
            task.valid_batches(on_device, settings.batch_size, seed),
            lambda model: task.evaluate(model, on_device, "valid"),  # {} without validation data (the refit)
            max_epochs,
            run,
            early_stopping=stopper,
            stage=stage,
        )
        curves = ("train_loss", task.metric) if len(splits.valid) else ("train_loss",)
        if plots:
            plot_curves(rows, run.file("curves.png"), curves, f"training {config.ops[0]}")
    seconds = time.perf_counter() - t0
    net.eval()
    metrics = {**task.evaluate(net, on_device, "valid"), **(task.evaluate(net, on_device, "test") if test else {})}
    best_epoch = stopper.best_epoch if stopper is not None else len(rows) - 1
    summary = {
        "interaction": config.ops[0],
        **metrics,
        "train_seconds": round(sum(r["seconds"] for r in rows), 3),
        "train_ratings_per_second": train_ratings_per_second(rows, len(splits.train)),
        "epochs_trained": len(rows),
        "best_epoch": best_epoch + 1,
        "params": sum(p.numel() for p in net.parameters() if all(p is not a for a in net.arch_parameters())),
        "wall_seconds_train": round(seconds, 3),
    }
    return net, summary


def refit(run: RunDir, splits: Splits, config: ModelConfig, settings: TrainSettings, epochs: int, device: torch.device, *,
          mlp_state: Optional[dict] = None, init_state: Optional[dict] = None, task: Optional[Task] = None,
          plots: bool = True) -> tuple[SIFNetwork, dict]:
    """Train again from the same start on train + validation data for ``epochs`` (the count
    early stopping chose on validation), as is usual once model selection is done. Returns the
    refitted network and its summary (test metrics, epochs, seconds)."""
    task = task or RatingTask()
    net, trained = train(run, splits.with_valid_in_train(), config, dataclasses.replace(settings, max_epochs=epochs, patience=epochs),
                         device, mlp_state=mlp_state, init_state=init_state, task=task, stage="refit", plots=plots)
    tested = {k: trained[k] for k in task.test_keys() if k in trained}  # none without a test split
    return net, {**tested, "refit_epochs": epochs, "refit_seconds": trained["train_seconds"],
                 "refit_train_ratings_per_second": trained["train_ratings_per_second"]}


def save_model(path: Path, net: SIFNetwork, splits: Splits, ratings_path: Optional[Path], task: Optional[Task] = None) -> None:
    """Everything ``recommend`` needs: weights, shape, task, id maps, and every (user, item) pair
    seen anywhere in the data the model was given, with the split it came from (0 train,
    1 validation, 2 test)."""
    rated = (splits.train, splits.valid, splits.test)
    users = torch.cat([part.users for part in rated]).cpu()
    items = torch.cat([part.items for part in rated]).cpu()
    codes = torch.cat([torch.full((len(part),), k, dtype=torch.int8) for k, part in enumerate(rated)])
    known = (users >= 0) & (items >= 0)  # a separate --test-data may hold ids the model never saw
    # rated pairs as int32 where the ids fit (half the file: 160 MB at 20M ratings); read back as int64
    ids = torch.int32 if max(splits.ids.num_users, splits.ids.num_items) < 2 ** 31 else torch.int64
    titles = read_titles(ratings_path or "")  # kept in the model: the data file may move or go
    save_torch(  # atomic; a full disk or read-only folder is one line naming the file
        path,
        {
            "format": "nasp-sif-model/1",
            "config": net.config.to_dict(),
            "task": (task or RatingTask()).to_dict(),
            "state": {k: v.cpu() for k, v in net.state_dict().items()},
            "user_ids": splits.ids.user_ids,
            "item_ids": splits.ids.item_ids,
            "seen_users": users[known].to(ids),
            "seen_items": items[known].to(ids),
            "seen_split": codes[known],
            "seen_splits": ["train", "valid", "test"],
            "ratings_path": str(Path(ratings_path).resolve()) if ratings_path is not None else "",
            "titles": [titles.get(item, "") for item in splits.ids.item_ids],
            "titles_note": titles_missing(ratings_path or "", titles) or "",
        },
    )


# recommend --------------------------------------------------------------------------------------
def _check_ids(net: SIFNetwork, user_ids: list, item_ids: list, seen_users: Tensor, seen_items: Tensor) -> None:
    """A ValueError unless a saved model's id lists match its tables and its rated pairs index them."""
    for what, ids, rows, seen in (("user", user_ids, net.config.num_users, seen_users),
                                  ("item", item_ids, net.config.num_items, seen_items)):
        if len(ids) != rows:
            raise ValueError(f"{len(ids)} {what} ids for a table of {rows} {what}s")
        if seen.numel() and (int(seen.min()) < 0 or int(seen.max()) >= rows):
            raise ValueError(f"seen_{what}s out of range (0..{rows - 1})")
    if len(seen_users) != len(seen_items):
        raise ValueError("seen_users and seen_items differ in length")


class Recommender:
    """A saved SIF model, loaded once, that ranks for any number of users the items they have
    not interacted with anywhere in the data the model was given (train, validation and test)."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        model_dir = Path(model_dir)
        path = model_dir / MODEL_FILE if model_dir.is_dir() else model_dir
        if not path.exists():
            raise NaspError(f"{model_dir}: no trained model ({MODEL_FILE}); run 'nasp sif search' or 'nasp sif train' first")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net = network_for(config_from_dict(saved["config"]))
            check_state(net, saved["state"], finite=True)
            net.load_model_state(saved["state"])
            self.task = task_from_dict(saved.get("task"))
            self.user_ids, self.item_ids = list(saved["user_ids"]), list(saved["item_ids"])
            seen_users, seen_items = saved["seen_users"].long(), saved["seen_items"].long()
            seen_split, titles = saved["seen_split"].long(), list(saved["titles"])
            _check_ids(net, self.user_ids, self.item_ids, seen_users, seen_items)
            if len(titles) != len(self.item_ids) or len(seen_split) != len(seen_users):
                raise ValueError("titles or seen_split do not match the ids")
        except NaspError:
            raise
        except KeyError as exc:
            raise NaspError(f"{path}: not a SIF model of this version (no {exc.args[0]!r}); train it again") from None
        except (TypeError, ValueError) as exc:
            raise NaspError(f"{path}: not a valid SIF model ({_short(exc)})") from None
        except Exception as exc:
            raise NaspError(f"{path}: cannot be read as a SIF model ({exc.__class__.__name__})") from None
        self.device = device
        self.net = net.to(device).eval()
        self.titles = {item: title for item, title in zip(self.item_ids, titles) if title}
        self._untitled = saved.get("titles_note") or None  # said at the first recommendation
        self._index = {u: k for k, u in enumerate(self.user_ids)}
        self._user_pos, self._item_index = pd.Index(self.user_ids), pd.Index(self.item_ids)
        self._seen = (seen_users, seen_items, seen_split)
        self._seen_ptr, self._seen_items = group_rows(seen_users, seen_items, len(self.user_ids))
        self._candidates = self.net.known_items.cpu().clone()
        self._known_users = self.net.known_users.cpu().clone()
        self._popularity: Optional[Tensor] = None  # the pop fallback's counts, once needed

    def user_index(self, user: str) -> int:
        try:
            return self._index[str(user)]
        except KeyError:
            raise NaspError(f"unknown user {user!r}: not in the ratings this model was trained on") from None

    def rated(self, user: str) -> Tensor:
        """Indices of the items ``user`` rated in the data the model was given."""
        u = self.user_index(user)
        return self._seen_items[self._seen_ptr[u] : self._seen_ptr[u + 1]]

    def knows(self, user: str) -> bool:
        """Whether ``user`` has training interactions in the model's data (a user whose rows all
        went to validation or test is in the id map, but the model learned nothing of them)."""
        index = self._index.get(str(user))
        return index is not None and bool(self._known_users[index])

    def top(self, user: str, k: int, fallback: str = "none") -> list[dict]:
        """Top-``k`` items ``user`` has not rated, highest predicted rating first (fewer, or
        none, when fewer are left). A user the model does not know gets ``fallback``'s list
        (``FALLBACKS``; "none": a ``NaspError``)."""
        if k < 1:
            raise NaspError(f"-k must be at least 1, got {k}")
        if not self.knows(user):
            serve = FALLBACKS.get(fallback)
            if serve is None:
                raise NaspError(f"unknown user {user!r}: no training interactions of this user in the model's data "
                                "(--fallback pop serves the most popular items)")
            return serve(self, k)
        u = self.user_index(user)
        items = torch.arange(len(self.item_ids), device=self.device)
        scores = self.net.predict(torch.full_like(items, u), items).cpu()
        scores[self.rated(user)] = -float("inf")
        return self._listed(scores, k)

    def _listed(self, scores: Tensor, k: int) -> list[dict]:
        """The ``k`` best finite scores among the items the model can recommend, as rows."""
        scores = scores.clone()
        scores[~self._candidates] = -float("inf")
        k = min(k, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k)
        return [
            {"rank": r + 1, "item": self.item_ids[i], "title": self.titles.get(self.item_ids[i]), "score": round(float(s), 4)}
            for r, (s, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()))
        ]

    def popular(self, k: int) -> list[dict]:
        """The ``k`` items with the most interactions in the data the model was fitted on
        (training and validation), each scored by that count: the ``pop`` fallback."""
        if self._popularity is None:
            _, items, split = self._seen
            self._popularity = torch.bincount(items[split <= 1], minlength=len(self.item_ids)).double()
            self._popularity[self._popularity == 0] = -float("inf")
        return self._listed(self._popularity, k)

    def serve(self, users: Sequence[str], k: int, fallback: str) -> list[tuple[str, list[dict]]]:
        """Each user's top-``k``, in order. Users the model does not know get ``fallback``'s list
        (with "none": no list, and an error when no user is known), reported in one warning."""
        if self._untitled:
            log.warning(self._untitled)
            self._untitled = None
        unknown = [u for u in dict.fromkeys(users) if not self.knows(u)]
        if unknown:
            served = FALLBACKS.get(fallback) is not None
            if not served and len(unknown) == len(set(users)):
                raise NaspError(f"unknown user{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))}"
                                f"{', ...' if len(unknown) > 5 else ''}: no training interactions in the model's data "
                                "(--fallback pop serves the most popular items)")
            log.warning("%d user(s) without training interactions in the model's data (%s%s): %s", len(unknown),
                        ", ".join(map(repr, unknown[:5])), ", ..." if len(unknown) > 5 else "",
                        "served the most popular items (--fallback pop)" if served else "left out (--fallback none)")
            users = users if served else [u for u in users if self.knows(u)]
        return [(u, self.top(u, k, fallback)) for u in users]

    def predict_pairs(self, users: Sequence[str], items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for raw (user, item) id pairs, and whether each pair's user and item are
        known to the model (unknown ids fall back to the biases: Surprise's ``was_impossible``)."""
        if len(users) != len(items):
            raise NaspError(f"predict: {len(users)} users but {len(items)} items; give one item per user")
        u = torch.as_tensor(self._user_pos.get_indexer(list(users)), dtype=torch.long, device=self.device)
        i = torch.as_tensor(self._item_index.get_indexer(list(items)), dtype=torch.long, device=self.device)
        known = (u >= 0) & (i >= 0)
        known &= self.net.known_users[u.clamp_min(0)] & self.net.known_items[i.clamp_min(0)]
        return self.net.predict(u, i).cpu().numpy(), known.cpu().numpy()

    def evaluate(self, table: RatingTable, task: Task) -> dict[str, float]:
        """``task``'s metrics (without a prefix) on held-out interactions ``table``, with
        ``rows`` (given) and ``rows_scored``; ranking excludes the pairs the model trained and was
        validated on, except those in ``table``, and scores the rows of users with training
        interactions and items the model knows (an item unseen in training counts but is never a
        hit, as in the test split); rating scores every row (unknown ids by the biases, as ``predict``)."""
        ids = IdMap(self.user_ids, self.item_ids)
        held = ids.encode(table)
        known = (held.users >= 0) & (held.items >= 0)
        known &= self._known_users[held.users.clamp_min(0)]  # items unseen in training stay: they count, never hit
        counts = {"rows": len(held), "rows_scored": len(held) if task.name == "rating" else int(known.sum())}
        self._warn_overlap(held.known())
        if counts["rows_scored"] == 0:
            raise NaspError(f"evaluate: none of the {len(held)} row(s) can be scored: their users or items are not in the "
                            "data this model was trained on")
        if counts["rows_scored"] < len(held):
            log.warning("evaluate: %d of %d row(s) left out: their user or item is not in the model's data",
                        len(held) - counts["rows_scored"], len(held))
        if task.name == "rating":
            out = task.evaluate(self.net, _single_part(held, ids), "test")
            return {**{k[len("test_"):]: v for k, v in out.items()}, **counts}
        held = held.subset(known.nonzero().squeeze(1).numpy())
        users, items, split_code = (t.to(self.device) for t in self._seen)
        fitted = split_code <= 1
        n = len(ids.item_ids)
        keys = users[fitted] * n + items[fitted]
        held_keys = held.users.to(self.device) * n + held.items.to(self.device)
        keep = ~torch.isin(keys, held_keys)
        exclude = Interactions(users[fitted][keep], items[fitted][keep], torch.ones(int(keep.sum()), device=self.device))
        splits = Splits(exclude, _empty(exclude), held.to(self.device), ids, (-float("inf"), float("inf")))
        out = task.evaluate(self.net, splits, "test")
        return {**{k[len("test_"):]: v for k, v in out.items()}, **counts}

    def _warn_overlap(self, held: Interactions) -> None:
        """A warning when held-out rows were training rows of the model (their scores flatter it)."""
        users, items, split_code = self._seen
        n = len(self.item_ids)
        trained = users[split_code == 0] * n + items[split_code == 0]
        overlap = int(torch.isin(held.users * n + held.items, trained).sum())
        if overlap:
            log.warning("evaluate: %d of the row(s) given were training rows of this model: the metrics are not held-out "
                        "estimates", overlap)


#: ``recommend``'s answer for a user the model does not know: ``pop`` (the most popular items,
#: as LensKit's fallback) or ``none`` (no list; an error for a single user)
FALLBACKS: Registry = Registry("fallback")
FALLBACKS.register("pop")(Recommender.popular)
FALLBACKS.register("none")(None)


def read_user_list(path: Path) -> list[str]:
    """Raw user ids, one a line (blank lines and ``#`` comments skipped), from a regular file
    of at most ``MAX_SMALL_FILE_BYTES``."""
    lines = read_small_file(path, "--users").decode("utf-8", errors="replace").splitlines()
    users = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not users:
        raise NaspError(f"--users {path}: no user ids in the file (one a line)")
    return users


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    """Raw (user, item) id pairs, one a line, separated by a tab, a comma or spaces (blank lines
    and ``#`` comments skipped), from a regular file of at most ``MAX_SMALL_FILE_BYTES``."""
    lines = read_small_file(path, "--pairs").decode("utf-8", errors="replace").splitlines()
    users, items = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in re.split(r"[\t,]|\s+", line.strip()) if f.strip()]
        if len(fields) != 2:
            raise NaspError(f"--pairs {path}:{number}: {len(fields)} field(s); need a user id and an item id")
        users.append(fields[0])
        items.append(fields[1])
    if not users:
        raise NaspError(f"--pairs {path}: no (user, item) pairs in the file")
    return users, items


def _empty(like: Interactions) -> Interactions:
    return Interactions(like.users[:0], like.items[:0], like.ratings[:0])


def _single_part(held: Interactions, ids: IdMap) -> Splits:
    """Splits whose test part is ``held`` (the others empty), to score it with a task."""
    return Splits(_empty(held), _empty(held), held, ids, (-float("inf"), float("inf")))

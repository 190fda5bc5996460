"""Training and searching three-way models: the optimisation settings of each task, the fixed
training, the search by any strategy of the core, and ``fit`` with the options of a ``SIF``."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from nasp.commands import release_with_command
from nasp.errors import NaspError
from nasp.loop import EarlyStopping, improves, run_search
from nasp.runs import RunDir
from nasp.strategies import SearchProblem, build_strategy
from nasp.strategies.proximal import check_warmup

from ..pipeline import best_search_epoch
from .data import TripleSplits, check_ways
from .space import SPACE
from .models import BASELINES, DISTMULT_NEEDS_SHARED, TensorConfig, TripleModel
from .tasks import evaluate, loss_fn, make_rating_loss, query_batches, row_batches
from .saved import ARCH_FORMAT, MODEL_FILE, save


@dataclass(frozen=True)
class LocalDefaults:
    """The defaults of a three-way ``--strategy local`` for one task: the warm-up epochs of each
    start (``warmup``), the part of an epoch each trial trains (``trial_fraction``) and the
    search epochs (``epochs``: every start's warm-up, the incumbent's own trial and a trial for
    each of the other 53 candidates, with a few to spare)."""

    warmup: int
    trial_fraction: float
    epochs: int


#: ``LocalDefaults`` per task. Ranking (two starts, CP and the Hermitian product): a start needs
#: about 6 epochs at the default learning rate before its validation MRR leaves chance (Kinships:
#: 0.05 after 5 epochs, 0.26 and 0.67 after 10 for CP and the Hermitian product), and every step
#: scores each query against every entity, which the max and min compositions of a product with
#: the ranked entity cannot do as one matrix product, so that a trial trains a quarter of an
#: epoch (on Kinships each trial then loses by far: docs/results/sif.md). Rating (one start):
#: the two-way local search's warm-up, whole-epoch trials.
LOCAL_DEFAULTS = {"rating": LocalDefaults(warmup=3, trial_fraction=1.0, epochs=60),
                  "ranking": LocalDefaults(warmup=10, trial_fraction=0.25, epochs=80)}


@dataclass
class TensorSettings:
    """Optimisation of a 3-way run: ``optimizer`` (adam or adagrad) with ``lr``, L2 ``reg``
    (ranking: Adam's weight decay; rating: on each row's embeddings and biases), ``batch_size``
    queries (ranking) or rows (rating) per step, early stopping after ``patience`` epochs
    without a better validation score; ``dim`` the embedding dimension where neither ``--dim``
    nor an ``--arch`` gives one. ``for_task`` gives each task's defaults: ranking's were chosen
    on Kinships' validation triples (ComplEx, seeds 0-2, docs/results/sif.md)."""

    lr: float = 0.002
    reg: float = 1e-5
    batch_size: int = 128
    dim: int = 256
    arch_lr: float = 3e-3
    max_epochs: int = 200
    patience: int = 10
    optimizer: str = "adam"

    @classmethod
    def for_task(cls, task: str) -> "TensorSettings":
        return cls(**RATING_DEFAULTS) if task == "rating" else cls()


#: the rating task's defaults (chosen on ml-100k-dow's validation rows, docs/results/sif.md)
RATING_DEFAULTS = {"lr": 0.1, "reg": 0.0125, "batch_size": 512, "dim": 64, "arch_lr": 3e-3, "optimizer": "adagrad"}


class Protocol:
    """What a task trains and scores by: the metric, the loss, the batches, the evaluation."""

    def __init__(self, splits: TripleSplits, s: TensorSettings) -> None:
        self.splits, self.s = splits, s
        self.rating = splits.task == "rating"
        self.metric = "valid_rmse" if self.rating else "valid_mrr"
        self.higher = not self.rating

    def problem(self, net: nn.Module, options: Optional[dict] = None) -> SearchProblem:
        s = self.s
        if s.optimizer == "adagrad":
            make = lambda params: torch.optim.Adagrad(params, lr=s.lr)  # noqa: E731
        else:
            make = lambda params: torch.optim.Adam(params, lr=s.lr, weight_decay=0.0 if self.rating else s.reg)  # noqa: E731
        return SearchProblem(network=net, loss=make_rating_loss(s.reg) if self.rating else loss_fn, metric=self.metric,
                             higher_is_better=self.higher, weight_optimizer=make, arch_lr=s.arch_lr, options=options or {})

    def train_batches(self, seed: int) -> Callable[[int], list]:
        sp = self.splits
        if self.rating:
            return row_batches(sp.train, sp.values["train"], self.s.batch_size, seed)
        return query_batches(sp.train, sp.train, sp.num_entities, self.s.batch_size, seed)

    def valid_batches(self, seed: int) -> Callable[[int], list]:
        """Batches of the validation part for an architecture step (seeded apart from training's)."""
        sp = self.splits
        if self.rating:
            return row_batches(sp.valid, sp.values["valid"], self.s.batch_size, seed + 1)
        return query_batches(sp.valid, torch.cat([sp.train, sp.valid]), sp.num_entities, self.s.batch_size, seed + 1)

    def evaluate(self, part: str) -> Callable[[TripleModel], dict]:
        return lambda model: evaluate(model, self.splits, part)


def _problem(net: nn.Module, s: TensorSettings, options: Optional[dict] = None) -> SearchProblem:
    """The ranking task's ``SearchProblem`` (kept for callers of the ranking-only version)."""
    return SearchProblem(network=net, loss=loss_fn, metric="valid_mrr", higher_is_better=True,
                         weight_optimizer=lambda params: torch.optim.Adam(params, lr=s.lr, weight_decay=s.reg),
                         arch_lr=s.arch_lr, options=options or {})


def train(run: RunDir, splits: TripleSplits, config: TensorConfig, s: TensorSettings, seed: int,
          stage: str = "train", device: Optional[torch.device] = None,
          init: Optional[dict] = None, test: bool = True) -> tuple[TripleModel, dict]:
    """Train one fixed model with early stopping on the validation metric (MRR, or RMSE for
    ratings; the best epoch restored); ``init``: its starting weights (``chosen_state``), else
    fresh ones; ``test``: also score the test split (off for a model that may not be kept)."""
    if config.model == "search":
        raise NaspError("train a fixed model: a baseline or one composition")
    task = Protocol(splits, s)
    net = config.build()
    if init is not None:
        net.load_state_dict({**net.state_dict(), **init})
    net = net.to(device or "cpu")
    stopper = EarlyStopping(task.metric, task.higher, s.patience) if len(splits.valid) else None
    strat = build_strategy("fixed", task.problem(net), s.max_epochs)
    t0 = time.perf_counter()
    rows = run_search(strat, task.train_batches(seed), None, task.evaluate("valid"), s.max_epochs, run,
                      early_stopping=stopper, stage=stage)
    summary = {"interaction": config.model, **evaluate(net, splits, "valid"), **(evaluate(net, splits, "test") if test else {}),
               "epochs_trained": len(rows), "best_epoch": (stopper.best_epoch if stopper else len(rows) - 1) + 1,
               "params": sum(p.numel() for p in net.parameters()), "train_seconds": round(time.perf_counter() - t0, 3)}
    return net, summary


def chosen_state(search_state: dict, candidates: Sequence[str], net: TripleModel) -> dict:
    """The weights of ``net`` (a ``CompositionNetwork`` of one candidate of ``candidates``) in a
    search network's state: its tables and its candidate's output vector (not alpha); a network
    of the Hermitian product alone, which reads tails from the entity table, gets that table."""
    chosen = candidates.index(net.candidates[0])
    out = {}
    for key in net.state_dict():
        if key == "alpha":
            continue
        source = f"outputs.{chosen}" if key == "outputs.0" else key
        if net.tail is net.entity and key == "tail.weight":
            source = "entity.weight"
        out[key] = search_state[source]
    return out


def search(run: RunDir, splits: TripleSplits, config: TensorConfig, s: TensorSettings, strategy: str, epochs: int,
           seed: int, options: Optional[dict] = None, device: Optional[torch.device] = None) -> dict:
    """Search the composition by ``strategy`` (the core's); returns the arch (written to arch.json)."""
    if not len(splits.valid):
        raise NaspError("the search needs validation data: use --valid-ratio > 0 or --valid-data")
    task = Protocol(splits, s)
    net = config.build().to(device or "cpu")
    strat = build_strategy(strategy, task.problem(net, {"seed": seed, **(options or {})}), epochs)
    t0 = time.perf_counter()
    rows = run_search(strat, task.train_batches(seed), task.valid_batches(seed), task.evaluate("valid"), epochs, run,
                      stage="search")
    derived = net.derive(strat.derive_alphas())
    # as the 2-way search: the architecture of the best validated search epoch (warm-up excluded)
    best = best_search_epoch(rows, task.metric, task.higher) if not strat.selects_on_validation else None
    if best is not None:
        derived["interaction"] = best["architecture"]["interaction"]
    arch = {"format": ARCH_FORMAT, "ways": 3, "task": splits.task, "strategy": strategy, **derived,
            "chosen_at_epoch": best["epoch"] if best is not None else len(rows),
            "model": {**config.to_dict(), "model": derived["interaction"]},
            "search_seconds": round(time.perf_counter() - t0, 3), "search_epochs": len(rows)}
    if strategy == "random":
        arch["candidates"] = strat.history
    run.write_json("arch.json", arch)
    return arch


def data_summary(splits: TripleSplits) -> dict:
    """The sizes of the data, for the summary."""
    if splits.task == "ranking":
        return {"task": "ranking", "ways": 3, "entities": splits.num_entities, "relations": splits.num_relations,
                "train_triples": len(splits.train), "valid_triples": len(splits.valid), "test_triples": len(splits.test)}
    return {"task": "rating", "ways": 3, "first_ids": splits.num_entities, "second_ids": splits.num_relations,
            "third_ids": splits.num_tails, "train_rows": len(splits.train), "valid_rows": len(splits.valid),
            "test_rows": len(splits.test)}


def fit(run: RunDir, splits: TripleSplits, model: Optional[str], arch: Optional[dict], s: TensorSettings, dim: int,
        strategy: str, epochs: int, seed: int, options: Optional[dict] = None, device: Optional[torch.device] = None,
        retrain: bool = True, biases: bool = True, warm_start: bool = False, baselines: Sequence[str] = (),
        keep: str = "best") -> dict:
    """A whole 3-way job in ``run``: search (``model`` and ``arch`` None) then retrain (unless
    ``retrain`` is off), or train ``model`` / the composition of ``arch``; writes model.pt
    (when it trains); returns the summary. ``biases``: a rating model's per-column biases.
    ``warm_start``: the retraining starts from the searched weights of the chosen composition
    (``chosen_state``), else from fresh ones. ``baselines``: ``BASELINES`` trained beside a
    search's retrained model (RUN/baseline-NAME/) and compared on validation; with ``keep``
    "best" the better is kept (model.pt, test metrics: the test split is scored once, for it)."""
    t0 = time.perf_counter()
    summary = data_summary(splits)
    mean = float(splits.values["train"].mean()) if splits.task == "rating" else 0.0
    sizes = {"num_tails": splits.num_tails, "task": splits.task, "global_mean": mean, "biases": biases}
    if model == "distmult" and splits.num_tails is not None:
        raise NaspError(DISTMULT_NEEDS_SHARED)
    base = TensorConfig("search", splits.num_entities, splits.num_relations, dim, **sizes)
    if model is None and arch is None:
        arch = search(run, splits, base, s, strategy, epochs, seed, options, device)
        summary.update({"searched_interaction": arch["interaction"], "search_seconds": arch["search_seconds"]})
        if not retrain:
            return {**summary, "seconds": round(time.perf_counter() - t0, 3)}
    name = model if model is not None else arch["interaction"]
    config = TensorConfig(name, splits.num_entities, splits.num_relations, dim, **sizes)
    searched = model is None and "searched_interaction" in summary
    sub = _subrun(run, "retrain") if searched else run
    init = None
    if searched and warm_start:
        init = chosen_state(run.load_checkpoint()["network"], list(SPACE), config.build())
    compare = searched and bool(baselines) and len(splits.valid) > 0
    net, trained = train(sub, splits, config, s, seed, device=device, init=init, test=not compare)
    if searched:
        trained["warm_start"] = bool(warm_start)
    if compare:
        net, trained, config, comparison = _against_baselines(run, splits, net, trained, config, s, seed, device, baselines,
                                                              keep, sizes)
        trained = {**trained, **evaluate(net, splits, "test"), **comparison}
    save(run.file(MODEL_FILE), net.cpu(), config, splits)
    return {**summary, **trained, "seconds": round(time.perf_counter() - t0, 3)}


def _against_baselines(run: RunDir, splits: TripleSplits, net: TripleModel, trained: dict, config: TensorConfig,
                       s: TensorSettings, seed: int, device: Optional[torch.device], baselines: Sequence[str], keep: str,
                       sizes: dict) -> tuple[TripleModel, dict, TensorConfig, dict]:
    """Train each baseline (RUN/baseline-NAME/, the same settings, no test) and compare it with
    the searched model on validation; returns the kept (net, summary, config) and the
    comparison for the summary (as the two-way search's: scores, best, margin, kept)."""
    task = Protocol(splits, s)
    metric, higher = task.metric, task.higher
    searched = trained[metric]
    scores, best = {}, None
    for name in baselines:
        fixed = TensorConfig(name, splits.num_entities, splits.num_relations, config.dim, **sizes)
        b_net, b_summary = train(_subrun(run, f"baseline-{name}"), splits, fixed, s, seed, stage=f"baseline {name}",
                                 device=device, test=False)
        scores[name] = b_summary[metric]
        if improves(scores[name], best[1] if best else None, higher):
            best = (name, scores[name], b_net, b_summary, fixed)
    keep_baseline = keep == "best" and improves(best[1], searched, higher)
    comparison = {f"baseline_{metric}": scores, "best_baseline": best[0],
                  # positive: the searched model validates better than the best baseline
                  "searched_margin": (searched - best[1]) if higher else (best[1] - searched),
                  "kept": f"{best[0]} (baseline)" if keep_baseline else f"{config.model} (searched)"}
    if keep_baseline:
        return best[2], {**best[3], "searched_" + metric: searched}, best[4], comparison
    return net, trained, config, comparison


def _subrun(run: RunDir, name: str) -> RunDir:
    """RUN/<name>/, resumed when it was started before (its lock released with the command)."""
    out = run.file(name)
    rdir = release_with_command(RunDir(out, resume=(out / "config.json").exists(), clock=run.clock))
    if not rdir.resume:
        rdir.write_config({"command": name})
    return rdir


#: ``SIFOptions`` of the two-way models that a three-way run has no use for (given: an error)
UNUSED = ("choices", "folds", "loss", "negatives", "topk", "min_rating", "split", "columns", "implicit", "head",
          "history_refreshes", "implicit_reg", "mlp_on_valid", "amp", "gcn_layers", "ease_lambda",
          "knn_neighbours", "knn_shrink", "refit", "arch_batch_size")


#: of those, what only the ranking task refuses (a three-way rating model has per-column biases)
RANKING_UNUSED = ("biases",)


def check_options(o: Any) -> None:
    """What ``--ways`` allows of the other ``SIFOptions``: one clear error otherwise."""
    ways = check_ways(o.ways)
    if ways == 2:
        if o.ifc in BASELINES and o.ifc != "mlp":
            raise NaspError(f"--ifc {o.ifc} is a 3-way model: use --ways 3")
        return
    if o.ifc is not None and o.ifc not in BASELINES:
        raise NaspError(f"--ifc {o.ifc} is a 2-way model; with --ways 3 use one of {', '.join(BASELINES)} (or --arch)")
    if o.ifc == "distmult" and o.task == "rating":
        raise NaspError(DISTMULT_NEEDS_SHARED)
    defaults = {f.name: f.default for f in fields(o)}
    unused = (*UNUSED, "space", *(RANKING_UNUSED if o.task == "ranking" else ()))
    given = [name for name in unused if getattr(o, name) != defaults[name]]
    if given:
        raise NaspError(f"--{given[0].replace('_', '-')} does not apply to --ways 3" +
                        (" --task ranking" if given[0] in RANKING_UNUSED else ""))


def settings_of(o: Any) -> TensorSettings:
    """The optimisation settings of ``SIFOptions`` (``None``: the task's ``TensorSettings``)."""
    d = TensorSettings.for_task(o.task)
    pick = lambda name: getattr(d, name) if getattr(o, name) is None else getattr(o, name)  # noqa: E731
    return TensorSettings(lr=float(pick("lr")), reg=float(pick("reg")), batch_size=int(pick("batch_size")),
                          dim=int(pick("dim")), arch_lr=float(pick("arch_lr")), max_epochs=o.max_epochs,
                          patience=o.patience, optimizer=d.optimizer)


def fit_options(run: RunDir, splits: TripleSplits, o: Any, arch: Optional[dict], warmup: Any,
                device: Optional[torch.device] = None) -> dict:
    """``fit`` with the options of a ``SIF`` (``SIFOptions``)."""
    local = LOCAL_DEFAULTS[o.task] if o.get("strategy") == "local" else None
    if local is not None and o.warmup_epochs is None:
        warmup = check_warmup(min(local.warmup, o.get("epochs") - 1), o.get("epochs"))
    options = {"warmup_epochs": warmup, **({"candidates": o.candidates} if o.candidates is not None else {}),
               **({"warmup_path": o.warmup_path} if o.warmup_path is not None else {}),
               **({"margin": o.margin} if o.margin is not None else {}),
               **({"confirm": o.confirm} if o.confirm is not None else {}),
               **({"trial_fraction": o.trial_fraction} if o.trial_fraction is not None
                  else {"trial_fraction": local.trial_fraction} if local is not None else {})}
    settings = settings_of(o)
    dim = o.dim or (arch["model"].get("dim", settings.dim) if arch else settings.dim)
    return fit(run, splits, o.ifc, arch, settings, dim, o.get("strategy"), o.get("epochs"), o.seed, options, device,
               o.retrain, biases=o.biases is not False, warm_start=bool(o.get("warm_start")),
               baselines=baseline_names(o.baselines, o.task), keep=o.keep)


def baseline_names(given: Any, task: str) -> tuple[str, ...]:
    """``--baselines`` of a 3-way search: none by default, ``all`` (every baseline the task
    allows) or names of ``BASELINES``; an unknown name, or distmult with --task rating, is one
    clear error."""
    if given is None or given in ("", "none"):
        return ()
    allowed = [name for name in BASELINES if not (name == "distmult" and task == "rating")]
    if given == "all":
        return tuple(allowed)
    names = tuple(dict.fromkeys(n.strip() for n in (given.split(",") if isinstance(given, str) else given) if n.strip()))
    for name in names:
        if name == "distmult" and task == "rating":
            raise NaspError(f"--baselines distmult: {DISTMULT_NEEDS_SHARED}")
        if name not in BASELINES:
            raise NaspError(f"--baselines {name}: not a 3-way model; choose from {', '.join(allowed)}, all or none")
    return names

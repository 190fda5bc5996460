"""One SIF job, start to end: search (when asked), retrain, compare with the baselines on
validation, refit, test once, save the kept model.

``SIF.fit`` (the Python API and, through it, ``nasp sif search`` and ``nasp sif train``) runs a
``Job`` in a run directory; the checks a job needs before any file is written (``searches``,
``warmup``, ``baseline_names``) are plain functions of the options.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Union

import torch

from nasp.commands import release_with_command
from nasp.config import resolved, task_default
from nasp.loop import improves
from nasp.runs import CONFIG, RunDir, read_json
from nasp.seeding import set_rng_state
from nasp.strategies import STRATEGIES
from nasp.strategies.proximal import check_warmup

from . import itemitem, lightgcn, pipeline, tensor
from .data import Splits
from .engine import TrainSettings
from .groundtruth import arch_key
from .itemitem import ITEM_MODELS, ItemItemConfig
from .joint import JointConfig, check_choices, fixed_state, parse_choices
from .lightgcn import DEFAULT_LAYERS, LightGCNConfig
from .model import HISTORY_REFRESHES, ModelConfig
from .options import SIFOptions, check_model_name
from .space import JOINT_SPACES, SEARCH_SPACE
from .tasks import Task

log = logging.getLogger("nasp.sif")


def searches(options: SIFOptions) -> bool:
    """Whether the job searches (no fixed ``ifc``, ``arch`` or ``choices`` given)."""
    return options.ifc is None and options.arch is None and options.choices is None


def warmup(options: SIFOptions, task: Task) -> Union[int, str, None]:
    """--warmup-epochs, defaulting to the strategy's (``default_warmup``) or else the task's
    (none for a one-epoch search), checked against --epochs; as given for strategies without a
    warm-up (which warn that they ignore it)."""
    given, strategy, epochs = options.warmup_epochs, STRATEGIES.get(options.get("strategy")), options.get("epochs")
    if not (searches(options) and strategy.uses_warmup):
        return given
    if strategy.default_warmup is not None:
        default = min(strategy.default_warmup, epochs - 1)
    else:
        default = task_default(SIFOptions, "warmup_epochs", task.name)
        default = 0 if epochs < 2 else default if isinstance(default, str) else min(default, epochs - 1)
    return check_warmup(default if given is None else given, epochs)


def baseline_names(options: SIFOptions) -> tuple[str, ...]:
    """The fixed models a search is compared with (``--baselines``: none, all or a list)."""
    given = options.get("baselines")
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


class Job:
    """Runs one SIF job with ``options`` for ``task`` on ``device``; ``arch_in``: the searched
    architecture to retrain (``train --arch``); ``plots``: write curves.png and alphas.png. After
    ``run``: ``arch_``, the searched one."""

    def __init__(self, options: SIFOptions, task: Task, device: torch.device, arch_in: Optional[dict] = None,
                 plots: bool = True) -> None:
        self.options, self.task, self.device, self.arch_in, self.plots = options, task, device, arch_in, plots
        self.arch_: Optional[dict] = None

    def run(self, run: RunDir, splits: Splits, source: Any) -> dict:
        """Search (if asked), retrain, compare with the baselines, refit, test once and save the
        kept model in ``run`` (model.pt); returns the summary (``run.finish`` is the caller's)."""
        o, device = self.options, self.device
        if o.ways == 3:
            return tensor.fit_options(run, splits, o, self.arch_in, warmup(o, self.task), device)
        t0 = time.perf_counter()
        summary: dict = {"task": self.task.name}
        if searches(o):
            summary.update(self._search(run, splits, device))
            config = self._arch_config(splits, self.arch_)
            mlp_state = self.arch_.get("elementwise_mlp")
        else:
            mlp_state = self.arch_in.get("elementwise_mlp") if self.arch_in else None
            config = (self._arch_config(splits, self.arch_in) if self.arch_in
                      else self._baseline_config(splits, o.choices) if o.choices is not None
                      else self._config(splits, o.ifc, None, searched=False, elementwise=False))
            if o.choices is not None:
                summary["choices"] = parse_choices(o.choices)
                summary["fixed_model"] = arch_key(summary["choices"])
        summary.update(pipeline.data_summary(splits, self.task))
        if searches(o) and not o.retrain:
            return {**summary, "seconds": round(time.perf_counter() - t0, 3)}
        init = None
        if searches(o) and o.get("warm_start"):
            searched = run.load_checkpoint()["network"]
            init = (fixed_state(searched, self._search_config(splits), config) if isinstance(config, JointConfig)
                    else pipeline.chosen_op_state(searched, SEARCH_SPACE, config.ops[0]))
        net, trained = self._train_one(run, "retrain" if searches(o) else None, splits, config, device, mlp_state, init)
        if searches(o):
            net, trained, config, mlp_state, init, compared = self._against_baselines(run, splits, device, net, trained,
                                                                                     config, mlp_state, init)
            summary.update(compared)
        net, trained = self._test_one(run, net, trained, splits, config, device, mlp_state, init)
        pipeline.save_model(run.file(pipeline.MODEL_FILE), net, splits, source, self.task)
        return {**summary, **trained, "seconds": round(time.perf_counter() - t0, 3)}

    def settings(self, search: bool = True, config: Any = None) -> TrainSettings:
        """The optimisation settings of training ``config`` (``SIFOptions.train_settings``)."""
        return self.options.train_settings(search, getattr(config, "defaults", None))

    def _config(self, splits: Splits, name: str, saved: Optional[dict], searched: bool, elementwise: bool = True) -> ModelConfig:
        """The model of a run: the options given, else the searched architecture's, else the defaults
        (biases and the implicit term on, except for NCF's gmf and neumf; pop has only item biases)."""
        o = self.options

        def switch(key: str) -> bool:
            if getattr(o, key) is not None:
                return bool(getattr(o, key))
            if saved is not None:
                return bool(saved[key])
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
        head = o.head or (saved["head"] if saved else ModelConfig.head)
        mlp = saved["mlp"] if saved else o.mlp
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
        config = self._search_config(splits)
        # the task's defaults go to the strategies that read them (others warn only about what is given)
        reads = STRATEGIES.get(o.get("strategy")).reads
        margin, trial_fraction, confirm = (resolved(o, name, self.task.name) if name in reads else getattr(o, name)
                                           for name in ("margin", "trial_fraction", "confirm"))
        self.arch_, found = pipeline.search(run, splits, config, self.settings(), device, strategy=o.get("strategy"), epochs=o.get("epochs"),
                                            candidates=o.candidates, warmup_epochs=warmup(o, self.task), margin=margin,
                                            warmup_path=o.warmup_path, arch_batch_size=o.arch_batch_size,
                                            task=self.task, plots=self.plots, trial_fraction=trial_fraction,
                                            confirm=confirm)
        run.write_json("search.json", found)
        return found

    def _search_config(self, splits: Splits) -> ModelConfig:
        """The search network's config: the whole space of ``--space``."""
        o = self.options
        base = self._config(splits, SEARCH_SPACE[0], None, searched=True)
        if o.get("space") in JOINT_SPACES:
            return JointConfig.search_space(base, o.mlp, o.get("space"))
        return ModelConfig.from_dict({**base.to_dict(), "ops": list(SEARCH_SPACE), "mlp": o.mlp})

    def _train_one(self, run: RunDir, name: Optional[str], splits: Splits, config: ModelConfig, device: torch.device,
                   mlp_state: Optional[dict], init_state: Optional[dict], stage: str = "") -> tuple[Any, dict]:
        """Train with early stopping (in RUN/<name>/, or RUN itself), scored on validation only;
        ``stage`` names it in the log (default: ``name``, else ``train``)."""
        settings = self.settings(search=False, config=config)
        rdir = _subrun(run, name, config, settings) if name else run
        if isinstance(config, ItemItemConfig):
            return itemitem.fit(splits, config, self.task, device)
        return pipeline.train(rdir, splits, config, settings, device, mlp_state=mlp_state, init_state=init_state, task=self.task,
                              test=False, stage=stage or name or "train", plots=self.plots)

    def _against_baselines(self, run: RunDir, splits: Splits, device: torch.device, net: Any, trained: dict,
                           config: ModelConfig, mlp_state: Optional[dict], init: Optional[dict]) -> tuple:
        """Train each fixed baseline (plain embeddings, the same settings) and score it on
        validation beside the searched model; with ``--keep best`` the better one is kept (the
        test split is scored only for the kept model). Returns the kept (net, summary, config,
        mlp_state, init) and the comparison for the summary."""
        metric, higher = self.task.metric, self.task.higher_is_better
        searched = trained.get(metric)
        out: dict = {"searched_interaction": config.ops[0], f"searched_{metric}": searched}
        names = baseline_names(self.options)
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
        refit = o.get("refit")
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
                                               summary["best_epoch"], device, mlp_state=mlp_state, init_state=init_state,
                                               task=self.task, plots=self.plots)
            summary.update(refitted)
            source = "refit"
        else:
            summary.update(early)
        if test_keys[0] in summary:  # absent without a test split (--test-ratio 0)
            summary[f"{test_keys[0]}_source"] = source
        return net, summary

def _subrun(run: RunDir, name: str, config: ModelConfig, settings: TrainSettings) -> RunDir:
    """RUN/<name>/, resumed when it was started before (its lock released with the command)."""
    out = run.file(name)
    rdir = release_with_command(RunDir(out, resume=(out / CONFIG).exists(), clock=run.clock))
    if not rdir.resume:
        rdir.write_config({"command": name, "model": config.to_dict(), "settings": settings.to_dict()})
    return rdir

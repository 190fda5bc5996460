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
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from nasp.commands import configure_logging, release_with_command
from nasp.devices import check_amp, flush_denormals, resolve_device, set_deterministic
from nasp.errors import NaspError
from nasp.options import usable_threads
from nasp.runs import CONFIG, RunDir, io_error, read_json, write_bytes_atomic
from nasp.seeding import seed_everything

from . import pipeline, tensor
from .data import RatingTable, Splits
from .job import Job, baseline_names, warmup
from .options import RANKING_MODELS, SIFOptions
from .splits import kfold
from .tasks import Task, build_task

Data = Union[str, Path, pd.DataFrame]
SAVED = (pipeline.MODEL_FILE, "arch.json", "summary.json")
"""What ``save`` writes of a fit without a run directory: enough for ``load`` and ``nasp sif recommend``."""
log = logging.getLogger("nasp.sif")


class SIF:
    """Search (or train) an interaction function for collaborative filtering.

    ``task``: "rating" (explicit ratings, RMSE) or "ranking" (implicit feedback, top-K).
    ``strategy``: a search strategy (default: local, which searches ``space="autocf"``; the
    others search the paper's space "sif" unless ``space`` says otherwise, docs/sif.md). Give
    ``ifc="multiply"`` (or another fixed interaction) to train a baseline instead, or
    ``arch=PATH`` to retrain a searched architecture. Every other option is a ``SIFOptions``
    field. After ``fit``: ``summary_`` (the metrics), ``arch_`` (the searched architecture).
    """

    def __init__(self, task: str = "rating", strategy: Optional[str] = None, **options: Any) -> None:
        self.options = SIFOptions.of({"task": task, "strategy": strategy, **options})
        self.options.validate()
        self.task: Task = build_task(self.options.task, topk=self.options.topk, loss_name=self.options.loss,
                                     negatives=self.options.negatives, min_rating=self.options.min_rating)
        if self.options.ifc == "pop" and self.task.name != "ranking":
            raise NaspError("pop (popularity) is a ranking baseline: use it with --task ranking")
        ranking_only = [n for n in (self.options.ifc, *baseline_names(self.options)) if n in RANKING_MODELS]
        if ranking_only and self.task.name != "ranking":
            raise NaspError(f"{ranking_only[0]} is a ranking model ({RANKING_MODELS[ranking_only[0]]}, not ratings): "
                            "use it with --task ranking")
        warmup(self.options, self.task)
        self._arch: Optional[dict] = None  # the architecture of ``arch``, read by ``_arch_in``
        self.summary_: dict = {}
        self.arch_: Optional[dict] = None
        self._model: Optional[pipeline.Recommender] = None
        self._run_path: Optional[Path] = None  # the run directory of fit(run_dir=...), a command or load
        self._kept: dict[str, bytes] = {}  # the files save writes, after a fit without a run directory
        self._loaded: Optional[tuple[Splits, Path]] = None
        self._folds: Optional[tuple[RatingTable, np.ndarray, int]] = None  # load_folds

    # checks --------------------------------------------------------------------------------------
    def _arch_in(self) -> Optional[dict]:
        """The architecture file ``arch`` names, read and checked once (None without one)."""
        o = self.options
        if o.arch is None or self._arch is not None:
            return self._arch
        tensor.check_arch_ways(o.arch, o.ways)
        arch = (tensor.load_arch if o.ways == 3 else pipeline.load_arch)(o.arch)
        saved = arch.get("task", "rating")
        if saved != self.task.name:
            raise NaspError(f"{arch['_path']}: an architecture searched for the {saved} task; this is --task {self.task.name}")
        self._arch = arch
        return arch

    # data ----------------------------------------------------------------------------------------
    def load_data(self, data: Data, valid_data: Optional[Data] = None, test_data: Optional[Data] = None) -> tuple[Splits, Path]:
        """Read and split the data as the options say; every check of the input happens here,
        so the CLI calls it before any run directory exists."""
        self._arch_in()
        o = self.options
        if o.ways == 3:
            self._loaded = (tensor.load(data, valid_data, test_data, o.get("valid_ratio"), o.get("test_ratio"), o.seed, o.sep,
                                        self.task.name, o.data_dir), Path(str(data)))
            return self._loaded
        opts = pipeline.DataOptions(_source(data), _source(test_data), o.data_dir, o.get("test_ratio"), o.get("valid_ratio"),
                                    o.seed, _source(valid_data), o.get("split"), o.line_format())
        self._loaded = pipeline.load_splits(opts, self.task)
        return self._loaded

    # fit -----------------------------------------------------------------------------------------
    def fit(self, data: Optional[Data] = None, valid_data: Optional[Data] = None, test_data: Optional[Data] = None,
            run_dir: Optional[Union[str, Path]] = None, run: Optional[RunDir] = None) -> "SIF":
        """Search and retrain (or train the fixed ``ifc`` / the searched ``arch``) on ``data``: a
        ratings or interaction file, a known name (ml-100k, ...), or a DataFrame with user, item
        (and rating, timestamp) columns. Validation (selection, early stopping) comes out of
        ``data`` unless ``valid_data`` is given; test likewise. Returns self.

        Files are written only when asked: ``run_dir`` (a new folder) receives the run directory
        of the commands (config.json, metrics, checkpoints, plots, model.pt, summary.json); else
        the job works in a temporary folder that is gone when ``fit`` returns, and the model
        stays in memory (``save`` writes it). ``run``: an open ``RunDir`` (the commands')."""
        if self.options.folds is not None:
            raise NaspError(f"folds={self.options.folds}: call cross_validate(data), which fits one model per fold; fit trains one")
        if data is not None:
            self.load_data(data, valid_data, test_data)
        if self._loaded is None:
            raise NaspError("fit needs data: a file, a known name or a DataFrame")
        splits, source = self._loaded
        self._kept = {}
        if run is not None:  # a command: start_run has seeded and set the threads and the log level
            self._run_path = run.path
            return self._fit(run, splits, source, owned=False)
        with contextlib.ExitStack() as stack:
            if run_dir is None:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sif-"))) / "run"
            else:
                folder = Path(run_dir)
                if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
                    raise NaspError(f"run_dir={str(folder)!r}: exists and is not an empty folder; give a new one")
            run = RunDir(folder)
            stack.callback(run.close)  # also when the fit fails: the run's lock is not left open
            stack.enter_context(_as_the_command(self.options))
            run.write_config({"command": "SIF.fit", "options": {k: (str(v) if isinstance(v, Path) else v)
                                                                for k, v in dataclasses.asdict(self.options).items()}})
            self._fit(run, splits, source, owned=True, plots=run_dir is not None)
            if run_dir is None:  # the folder goes: keep what ``save`` writes
                self._kept = {name: run.file(name).read_bytes() for name in SAVED if run.file(name).exists()}
            self._run_path = None if run_dir is None else folder
        return self

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
        into ``folds`` test parts by the seed (``sif.splits.kfold``: every user with two or more rows
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

    def _fit(self, run: RunDir, splits: Splits, source: Any, owned: bool, plots: bool = True) -> "SIF":
        """``fit``'s work in ``run`` (``sif.job.Job``); ``owned``: the run is this estimator's, so
        it writes the summary too (the CLI writes its own, with the run directory's path)."""
        device = resolve_device(self.options.device)
        check_amp(self.options.amp, device)
        job = Job(self.options, self.task, device, self._arch_in(), plots=plots)
        self.summary_ = job.run(run, splits, source)
        self.arch_ = job.arch_
        if run.file(pipeline.MODEL_FILE).exists():
            self._model = (tensor.TripleRecommender(run.file(tensor.MODEL_FILE)) if self.options.ways == 3
                           else pipeline.Recommender(run.file(pipeline.MODEL_FILE), device))
        if owned:
            self.summary_ = run.finish(self.summary_)
        return self

    # using the model -----------------------------------------------------------------------------
    @property
    def model(self) -> Union[pipeline.Recommender, tensor.TripleRecommender]:
        if self._model is None:
            raise NaspError("this SIF has no trained model: call fit (with retrain on) or SIF.load first")
        return self._model

    def _pairs_only(self, what: str) -> None:
        """A two-way model's method on a three-way one: one clear error."""
        if isinstance(self.model, tensor.TripleRecommender):
            raise NaspError(f"{what} is for two-way models; a three-way model recommends the tails of a pair: "
                            "recommend((head, relation), k)")

    def predict(self, users: Sequence, items: Sequence) -> pd.DataFrame:
        """Predicted ratings (rating task, clipped to the training range) or scores (ranking) of
        the (user, item) pairs given as raw ids: a DataFrame with user, item, prediction and
        ``known`` (False where the user or item is not in the model's data: the prediction is then
        the biases' alone, as Surprise's ``was_impossible``)."""
        self._pairs_only("predict")
        users, items = _id_list(users, "users"), _id_list(items, "items")
        predictions, known = self.model.predict_pairs(users, items)
        return pd.DataFrame({"user": users, "item": items, "prediction": predictions, "known": known})

    def recommend(self, users: Any, k: int = 10, fallback: str = "pop") -> pd.DataFrame:
        """The top-``k`` items a user never interacted with in the data given to ``fit``: for one
        raw id, a DataFrame of rank, item, score, title; for a list of ids, the same with a user
        column first. A user the model does not know gets ``fallback``'s list ("pop": the most
        popular items, scored by their interaction count; "none": none, and an error for a single
        user), reported in one warning. A three-way model (``ways=3``) takes a (head, relation)
        pair and returns the rank, item and score of its top tails never seen with it."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise NaspError(f"-k {k!r}: must be an integer >= 1")
        k = int(k)
        if isinstance(self.model, tensor.TripleRecommender):
            if not isinstance(users, (tuple, list)) or len(users) != 2 or not all(isinstance(x, (str, int)) for x in users):
                raise NaspError(f"a three-way model recommends for a (head, relation) pair; got {users!r}")
            return pd.DataFrame(self.model.recommend(str(users[0]), str(users[1]), k), columns=["rank", "item", "score"])
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
        self._pairs_only("evaluate")
        table = self.task.read(pipeline.read_table(data, self.options.data_dir, self.options.line_format()))
        return self.model.evaluate(table, self.task)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the model (model.pt, arch.json, summary.json; after ``fit(run_dir=...)`` or
        ``load``: the whole run directory) to ``path``, a new or empty folder."""
        if self._run_path is None and not self._kept:
            raise NaspError("nothing to save: call fit first")
        path = Path(path)
        if self._run_path is not None and path.resolve() == self._run_path.resolve():
            return path
        if path.exists() and not path.is_dir():
            raise NaspError(f"{path}: exists and is not a folder; save into a new folder")
        if path.exists() and any(path.iterdir()):
            raise NaspError(f"{path}: exists and is not empty; save into a new folder")
        if self._run_path is not None:
            shutil.copytree(self._run_path, path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
            return path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(path, exc, "cannot create") from None
        for name, data in self._kept.items():
            write_bytes_atomic(path / name, data)
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: str = "cpu") -> "SIF":
        """A SIF read from a run directory (of ``nasp sif search``/``train`` or ``save``)."""
        path = Path(path)
        model_file = path / pipeline.MODEL_FILE if path.is_dir() else path
        folder = model_file.parent
        if tensor.is_triple_model(model_file):
            est = cls(task=tensor.saved_task(model_file), ways=3)
            est._model = tensor.TripleRecommender(model_file)
        else:
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
    threads (at most the CPUs this process may use), determinism, denormal floats flushed to zero
    (``devices.flush_denormals``), and one log line per epoch on stderr (``verbose``); the caller's
    threads, determinism and log set-up are restored after (denormals: torch's default)."""
    threads, logger = torch.get_num_threads(), logging.getLogger("nasp")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark)
    try:
        configure_logging(logging.INFO if options.verbose else logging.WARNING)
        torch.set_num_threads(usable_threads(options.threads))
        seed_everything(options.seed)
        set_deterministic(options.deterministic)
        with flush_denormals():
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic[1:]
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


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


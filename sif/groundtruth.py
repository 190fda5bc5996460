"""The measured ground truth of the ``autocf`` space: every architecture trained alone.

``benchmarks/sif_bench.py`` trains fixed models of the space one by one (the default, every
one- and two-change neighbour of it, and uniformly sampled architectures), each with the task's
defaults and early stopping, and appends one JSON line per (task, seed, architecture) to a
results file. This module enumerates those architectures and reads the file back:

>>> truth = GroundTruth.read("benchmarks/results/sif_bench.jsonl")
>>> truth.score("rating", {"item_input": "both"})      # mean valid/test, and paired to the default
>>> truth.rank("rating", {"item_input": "both"})       # its place among all measured, by validation
"""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import pandas as pd

from nasp.data import text_lines
from nasp.errors import NaspError

from .joint import DEFAULT_CHOICES, ROWS
from .space import SPACES

#: the metric each task is judged by, and whether larger is better
TASK_METRICS = {"rating": ("rmse", False), "ranking": ("ndcg@10", True)}


def arch_key(choices: dict) -> str:
    """A stable label of a fixed model: its choices that differ from the default, as the
    ``--baselines`` syntax writes them (``item_input=both+op=max``); ``default`` for none."""
    changed = [f"{row}={choices[row]}" for row in ROWS if choices[row] != DEFAULT_CHOICES[row]]
    return "+".join(changed) or "default"


def full_choices(changes: dict) -> dict:
    """The default model with ``changes`` applied; an unknown row or candidate is a clear error."""
    space = SPACES["autocf"]
    for row, name in changes.items():
        if row not in space:
            raise NaspError(f"unknown row {row!r} of the autocf space; rows: {', '.join(space)}")
        if name not in space[row]:
            raise NaspError(f"{row}={name!r} is not in the autocf space; candidates: {', '.join(space[row])}")
    return {**DEFAULT_CHOICES, **changes}


def neighbours(choices: dict) -> Iterator[dict]:
    """Every model one row away from ``choices``, in row order."""
    for row, names in SPACES["autocf"].items():
        for name in names:
            if name != choices[row]:
                yield {**choices, row: name}


def all_architectures() -> list[dict]:
    """Every fixed model of the ``autocf`` space (3,024), in a fixed order."""
    space = SPACES["autocf"]
    return [dict(zip(space, combo)) for combo in itertools.product(*space.values())]


def bench_architectures(samples: int = 300, seed: int = 0) -> list[tuple[str, dict]]:
    """The architectures of the benchmark as (group, choices), without repeats: the default, its
    one-change and two-change neighbours, then ``samples`` drawn uniformly from the whole space."""
    seen: set[str] = set()
    out: list[tuple[str, dict]] = []

    def add(group: str, choices: dict) -> None:
        key = arch_key(choices)
        if key not in seen:
            seen.add(key)
            out.append((group, choices))

    add("default", dict(DEFAULT_CHOICES))
    first = list(neighbours(DEFAULT_CHOICES))
    for choices in first:
        add("one-change", choices)
    for choices in first:
        for second in neighbours(choices):
            if sum(second[r] != DEFAULT_CHOICES[r] for r in ROWS) == 2:
                add("two-change", second)
    for choices in random.Random(seed).sample(all_architectures(), samples):
        add("random", choices)
    return out


class GroundTruth:
    """The results of ``benchmarks/sif_bench.py``: one row per (task, seed, architecture)."""

    COLUMNS = ("task", "seed", "arch", "group", "valid", "test", "epochs", "seconds")

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = rows
        self._tables: dict[str, pd.DataFrame] = {}

    @classmethod
    def read(cls, path: Union[str, Path]) -> "GroundTruth":
        """Read a results file (JSON lines); a missing or malformed file is a clear error."""
        path = Path(path)
        if not path.exists():
            raise NaspError(f"{path}: no such ground-truth file (benchmarks/sif_bench.py writes it)")
        records = []
        for number, line in text_lines(path, "ground truth"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise NaspError(f"{path}:{number}: not a JSON line") from None
            if not isinstance(record, dict) or any(key not in record for key in cls.COLUMNS):
                raise NaspError(f"{path}:{number}: a ground-truth record needs {', '.join(cls.COLUMNS)}")
            records.append(record)
        return cls.from_records(records)

    @classmethod
    def from_records(cls, records: list[dict]) -> "GroundTruth":
        """The ground truth of records already read (each holding ``COLUMNS``)."""
        return cls(pd.DataFrame([{key: r[key] for key in cls.COLUMNS} for r in records], columns=list(cls.COLUMNS)))

    def table(self, task: str) -> pd.DataFrame:
        """Per architecture: mean valid and test metric over the seeds measured, and the paired
        differences to the default model on the same seeds (``valid_vs_default``,
        ``test_vs_default``: seeds differ in their splits, so architectures measured on different
        seeds compare only through these); sorted best first by ``valid_vs_default``. Rows of a
        seed whose default is not measured yet are left out. Built once per task (a copy is returned)."""
        return self._table(task).copy()

    def _table(self, task: str) -> pd.DataFrame:
        """``table(task)`` itself, built on the first call (callers here only read it)."""
        if task not in TASK_METRICS:
            raise NaspError(f"unknown task {task!r}; choose one of: {', '.join(TASK_METRICS)}")
        if task not in self._tables:
            self._tables[task] = self._build_table(task)
        return self._tables[task]

    def _build_table(self, task: str) -> pd.DataFrame:
        rows = self.rows[self.rows.task == task]
        default = rows[rows.arch == "default"].groupby("seed")[["valid", "test"]].mean()
        rows = rows[rows.seed.isin(default.index)].copy()
        rows["valid_vs_default"] = rows.valid - default.valid.reindex(rows.seed).to_numpy()
        rows["test_vs_default"] = rows.test - default.test.reindex(rows.seed).to_numpy()
        table = rows.groupby("arch").agg(valid=("valid", "mean"), test=("test", "mean"), valid_vs_default=("valid_vs_default", "mean"),
                                         test_vs_default=("test_vs_default", "mean"), seeds=("seed", "nunique"),
                                         seconds=("seconds", "mean"), group=("group", "first"))
        return table.sort_values("valid_vs_default", ascending=not TASK_METRICS[task][1])

    def best(self, task: str, by: str = "valid") -> float:
        """The best paired difference to the default by ``by`` (valid or test) among all measured."""
        values = self._table(task)[f"{by}_vs_default"]
        return float(values.max() if TASK_METRICS[task][1] else values.min())

    def score(self, task: str, changes: Union[dict, str]) -> dict:
        """Mean valid and test metric of one architecture (choices, or changes to the default,
        or its ``arch_key``); an architecture not measured is a clear error."""
        key = changes if isinstance(changes, str) else arch_key(full_choices(changes))
        table = self.table(task)
        if key not in table.index:
            raise NaspError(f"{key!r} is not in the {task} ground truth ({len(table)} architectures measured)")
        row = table.loc[key]
        return {"arch": key, "valid": float(row.valid), "test": float(row.test), "seeds": int(row.seeds),
                "valid_vs_default": float(row.valid_vs_default), "test_vs_default": float(row.test_vs_default)}

    def rank(self, task: str, changes: Union[dict, str], by: str = "valid") -> dict:
        """The place of one architecture among all measured (1 = best) by ``by`` (valid or test,
        as the paired difference to the default), its percentile (0 = best) and its regret
        against the best."""
        found = self.score(task, changes)
        table = self.table(task)
        larger = TASK_METRICS[task][1]
        values = table[f"{by}_vs_default"]
        found_value = found[f"{by}_vs_default"]
        better = int((values > found_value).sum() if larger else (values < found_value).sum())
        return {**found, "rank": better + 1, "of": len(table), "percentile": 100.0 * better / len(table),
                "regret": abs(self.best(task, by) - found_value)}

    def place(self, task: str, choices: Union[dict, str]) -> dict:
        """An architecture's rank, percentile and regret by validation and by test, with
        ``measured: True``; ``{"arch": ..., "measured": False}`` where it is not in the table
        (yet), so that a search's result can be placed as the ground truth grows."""
        key = choices if isinstance(choices, str) else arch_key(full_choices(choices))
        out: dict = {"arch": key}
        for by in ("valid", "test"):
            try:
                ranked = self.rank(task, key, by=by)
            except NaspError:
                return {**out, "measured": False}
            out.update({f"{by}_rank": ranked["rank"], f"{by}_percentile": ranked["percentile"], f"{by}_regret": ranked["regret"],
                        "of": ranked["of"]})
        return {**out, "measured": True}

    def random_search(self, task: str, trainings: int, runs: int = 2000, seed: int = 0) -> dict:
        """Random search simulated on the ground truth, as NAS benchmarks do: draw ``trainings``
        architectures of the uniform sample (group ``random``) without replacement and keep the
        best by validation. Over ``runs`` simulations: the mean (and std) valid and test regret of
        what it keeps, measured as ``place`` measures a search's result. The budget is counted in
        trainings, not seconds: the recorded seconds move with the machine's load."""
        if trainings < 1:
            raise NaspError(f"random search needs at least one training, not {trainings}")
        table = self.table(task)
        sample = table[table.group == "random"]
        if sample.empty:
            raise NaspError(f"no uniformly sampled architectures in the {task} ground truth yet")
        larger = TASK_METRICS[task][1]
        best = {by: self.best(task, by) for by in ("valid", "test")}
        valid, test = (sample[f"{by}_vs_default"].to_numpy() for by in ("valid", "test"))
        n = min(trainings, len(sample))
        rng = np.random.default_rng(seed)
        regrets: dict[str, list[float]] = {"valid": [], "test": []}
        for _ in range(runs):
            drawn = rng.choice(len(sample), size=n, replace=False)
            pick = drawn[np.argmax(valid[drawn]) if larger else np.argmin(valid[drawn])]
            regrets["valid"].append(abs(best["valid"] - valid[pick]))
            regrets["test"].append(abs(best["test"] - test[pick]))
        return {"trainings": n, "runs": runs, "sample": len(sample),
                **{f"{by}_regret": float(np.mean(v)) for by, v in regrets.items()},
                **{f"{by}_regret_std": float(np.std(v)) for by, v in regrets.items()}}

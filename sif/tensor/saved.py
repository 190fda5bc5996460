"""Saved three-way runs: arch files, ``model.pt`` (loaded without pickle) and the recommender
that reads them."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from nasp.errors import NaspError
from nasp.runs import read_json, save_torch

from .data import TripleSplits
from .space import check_candidate
from .models import TensorConfig, TripleModel, predict
from .tasks import known_answers


ARCH_FORMAT = "nasp-sif-tensor-arch/1"


MODEL_FILE = "model.pt"


def arch_ways(path: Path | str) -> int:
    """How many ways the architecture file at ``path`` (or in a run directory) is of (2 without a ``ways`` key)."""
    path = Path(path)
    arch = read_json(path / "arch.json" if path.is_dir() else path, "architecture file")
    return arch.get("ways", 2) if isinstance(arch, dict) else 2


def check_arch_ways(path: Path | str, ways: int) -> None:
    """One clear error when the architecture file is of another space than a ``ways``-way run's."""
    found = arch_ways(path)
    if found != ways:
        raise NaspError(f"{path}: an architecture of the {found}-way space; this is a --ways {ways} run")


def load_arch(path: Path | str) -> dict:
    """A 3-way architecture file (or a run directory holding one), checked."""
    path = Path(path)
    file = path / "arch.json" if path.is_dir() else path
    arch = read_json(file, "architecture file")
    if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT or not isinstance(arch.get("interaction"), str):
        raise NaspError(f"{file}: not a 3-way SIF architecture file")
    check_candidate(arch["interaction"])
    arch["_path"] = str(file)
    return arch


def save(path: Path, net: TripleModel, config: TensorConfig, splits: TripleSplits) -> None:
    """model.pt: the config, the weights and the raw ids (and every known triple, never
    recommended; for ratings, the third column's ids and the training values' range)."""
    extra = {}
    if splits.task == "rating":
        train_values = splits.values["train"]
        extra = {"tails": splits.tails, "range": [float(train_values.min()), float(train_values.max())]}
    save_torch(path, {"ways": 3, "task": splits.task, "config": config.to_dict(),
                      "state": {k: v.cpu() for k, v in net.state_dict().items()}, "entities": splits.entities,
                      "relations": splits.relations, "known": splits.all_triples().cpu(), **extra})


def is_triple_model(path: Path | str) -> bool:
    """Whether ``path`` is a saved 3-way model (read memory-mapped: cheap for large files);
    False for anything else, including a file that cannot be read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(saved, dict) and saved.get("ways") == 3


def saved_task(path: Path | str) -> str:
    """The task of a saved 3-way model (``is_triple_model``): ranking or rating."""
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return "rating" if saved.get("task") == "rating" else "ranking"


class TripleRecommender:
    """A saved 3-way model: the top third-column ids of a (first, second) pair (a knowledge
    graph's tails of (head, relation) by score; a rating model's contexts of (user, item) by
    predicted rating), those known with the pair left out."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        file = path / MODEL_FILE if path.is_dir() else path
        if not file.is_file():
            raise NaspError(f"{file}: no such model file")
        try:  # tensors, lists and dicts only: nothing in the file can run code
            saved = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NaspError(f"{file}: cannot be read as a SIF model ({exc.__class__.__name__})") from None
        if not isinstance(saved, dict) or saved.get("ways") != 3:
            raise NaspError(f"{file}: not a 3-way model (use --ways 2)")
        try:
            self.task = "rating" if saved.get("task") == "rating" else "ranking"
            self.config = TensorConfig.from_dict(saved["config"])
            if self.config.task != self.task:
                raise ValueError(f"a {self.config.task} model in a {self.task} file")
            self.net = self.config.build()
            self.net.load_state_dict(saved["state"])
            self.entities, self.relations = list(saved["entities"]), list(saved["relations"])
            self.tails = list(saved["tails"]) if self.task == "rating" else self.entities
            self.range = tuple(float(x) for x in saved["range"]) if self.task == "rating" else None
            known = saved["known"].long()
            if known.numel() and (int(known.min()) < 0 or int(known[:, 0].max()) >= len(self.entities)
                                  or int(known[:, 1].max()) >= len(self.relations)
                                  or int(known[:, 2].max()) >= len(self.tails)):
                raise ValueError("known triples out of range")
            if (len(self.entities), len(self.relations), len(self.tails)) != self.config.sizes():
                raise ValueError("the ids do not match the model's tables")
        except NaspError:
            raise
        except Exception as exc:
            raise NaspError(f"{file}: not a valid 3-way SIF model ({exc.__class__.__name__}: {exc})") from None
        self.net.eval()
        self.known = known_answers(known, 0)
        self._first = {x: i for i, x in enumerate(self.entities)}
        self._second = {x: i for i, x in enumerate(self.relations)}

    def recommend(self, head: str, relation: str, k: int = 10) -> list[dict]:
        """The ``k`` best third-column ids of (head, relation) never seen with it (``item``:
        the id; ``score``: the model's score, or the predicted rating)."""
        h, r = self._first.get(head), self._second.get(relation)
        if h is None or r is None:
            if self.task == "rating":
                raise NaspError(f"unknown pair ({head}, {relation}): the model knows {len(self.entities)} first-column ids "
                                f"and {len(self.relations)} second-column ids")
            raise NaspError(f"unknown pair ({head}, {relation}): the model knows {len(self.entities)} heads and "
                            f"{len(self.relations)} relations")
        with torch.no_grad():
            if self.task == "rating":
                rows = torch.tensor([[h, r, t] for t in range(len(self.tails))], dtype=torch.long).reshape(-1, 3)
                scores = predict(self.net, rows).clamp(*self.range)
            else:
                scores = self.net.score_all(torch.tensor([[h, r]]), 0)[0]
        scores[self.known.get((h, r), [])] = -math.inf
        top = scores.topk(min(k, len(scores)))
        return [{"rank": i + 1, "item": self.tails[j], "score": float(s)}
                for i, (s, j) in enumerate(zip(top.values.tolist(), top.indices.tolist())) if s > -math.inf]

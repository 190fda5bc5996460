"""What SIF learns from the data: a task says how to read, batch, score and select.

``rating`` (explicit feedback): predict the rating, squared error, selection on validation
RMSE. ``ranking`` (implicit feedback): every interaction is a positive, each is trained against
``negatives`` items sampled among those the user has not interacted with (BPR or BCE loss),
and models are judged by full ranking over all items (NDCG@K, Recall@K, ...), selection on
validation NDCG at the first K. A new task is one class registered in ``TASKS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional, Sequence

import torch
from torch import Tensor

from nasp.distributed import world
from nasp.errors import NaspError
from nasp.registry import Registry

from . import ranking
from .data import Interactions, RatingTable, Splits
from .engine import Batch, TrainSettings, batches, evaluate, make_loss
from .model import SIFNetwork

MAX_NEGATIVES = 1_000
"""The most sampled negatives per positive (``--negatives``): a batch holds that many items per
positive, and the literature uses 1 to 100."""

TASKS: Registry = Registry("task")


class Task:
    """The part of SIF that depends on what is predicted. Subclasses set the class attributes."""

    name: ClassVar[str]
    #: the ``evaluate`` key that selects epochs, architectures and early stopping, and its direction
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    # the defaults of the settings per task (learning rates, warm-up, baselines, refit) are
    # declared with each setting: ``sif.options.SIFOptions``

    def read(self, table: RatingTable) -> RatingTable:
        """``table`` as this task uses it (or a clear error)."""
        return table

    def check(self, splits: Splits) -> None:
        """Refuse splits this task cannot use (before any run directory exists)."""

    def loss(self, settings: TrainSettings) -> Callable[[SIFNetwork, Batch], Tensor]:
        raise NotImplementedError

    def train_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        raise NotImplementedError

    def valid_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        raise NotImplementedError

    def evaluate(self, net: SIFNetwork, splits: Splits, part: str) -> dict[str, float]:
        """Metrics of ``net`` on ``part`` ("valid" or "test"), keys prefixed ``part_``; {} when
        the part is empty."""
        raise NotImplementedError

    def test_keys(self) -> tuple[str, ...]:
        """The keys of a test evaluation, headline first."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"task": self.name}


@TASKS.register("rating")
@dataclass
class RatingTask(Task):
    """Explicit feedback: squared error on ratings, RMSE/MAE in stars."""

    name: ClassVar[str] = "rating"
    metric: ClassVar[str] = "valid_rmse"
    higher_is_better: ClassVar[bool] = False

    def read(self, table: RatingTable) -> RatingTable:
        return table.need_ratings()

    def loss(self, settings: TrainSettings) -> Callable[[SIFNetwork, Batch], Tensor]:
        return make_loss(settings.reg, settings.implicit_reg)

    def train_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        return batches(splits.train, batch_size, seed, world=world())

    def valid_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        # the architecture steps learn from rows the model has embeddings for; every row is scored
        return batches(splits.valid.known(), batch_size, seed + 1, world=world())

    def evaluate(self, net: SIFNetwork, splits: Splits, part: str) -> dict[str, float]:
        return evaluate(net, getattr(splits, part), part, world=world())

    def test_keys(self) -> tuple[str, ...]:
        return ("test_rmse", "test_mae")


def parse_topk(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"10,20"`` -> (10, 20): positive, distinct, in the order given (the first selects)."""
    if isinstance(text, str):
        try:
            ks = tuple(int(t) for t in text.split(",") if t.strip())
        except ValueError:
            raise NaspError(f"--topk {text!r}: give cut-offs as integers, e.g. 10,20") from None
    else:
        ks = tuple(int(k) for k in text)
    if not ks or min(ks) < 1:
        raise NaspError(f"--topk {text if isinstance(text, str) else ','.join(map(str, ks))}: every cut-off must be at least 1")
    if len(set(ks)) != len(ks):
        raise NaspError(f"--topk {','.join(map(str, ks))}: a cut-off is repeated")
    return ks


@TASKS.register("ranking")
@dataclass
class RankingTask(Task):
    """Implicit feedback: every row is a positive, trained against sampled negatives and
    judged by full ranking over every item, excluding the user's training interactions (and
    validation ones when testing)."""

    topk: tuple[int, ...] = (10, 20)
    loss_name: str = "bpr"
    negatives: int = 4
    min_rating: Optional[float] = None
    #: users scored per chunk of the full ranking
    eval_chunk: int = 256

    name: ClassVar[str] = "ranking"
    higher_is_better: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.topk = parse_topk(self.topk)
        ranking.LOSSES.get(self.loss_name)  # unknown names raise a clear NaspError
        if self.negatives < 1:
            raise NaspError(f"--negatives {self.negatives}: must be at least 1 (each positive is trained against sampled negatives)")
        if self.negatives > MAX_NEGATIVES:
            raise NaspError(f"--negatives {self.negatives}: at most {MAX_NEGATIVES} (every batch holds that many items per positive)")

    @property
    def metric(self) -> str:  # type: ignore[override]
        return f"valid_ndcg@{self.topk[0]}"

    def read(self, table: RatingTable) -> RatingTable:
        return table.at_least(self.min_rating)

    def check(self, splits: Splits) -> None:
        num_items = splits.ids.num_items
        if max(self.topk) > num_items:
            raise NaspError(f"--topk {max(self.topk)}: more than the {num_items} items in the data")
        for part in ("valid", "test"):
            unknown = splits.unknown_ids.get(part, {}).get("users", 0)
            if unknown:
                raise NaspError(f"--{part}-data: {unknown} user(s) never seen in --data; a ranking model can only rank for "
                                "users it was trained on")
        every = _concat(_concat(splits.train, splits.valid), splits.test)
        known = (every.users >= 0) & (every.items >= 0)
        full = ranking.NegativeSampler(every.users[known], every.items[known], num_items).users_without_negatives()
        if full.numel():
            raise NaspError(f"{full.numel()} user(s) interacted with every item (first: "
                            f"{splits.ids.user_ids[int(full[0])]!r}): no negative to sample and nothing to recommend; "
                            "remove them from the data")

    def loss(self, settings: TrainSettings) -> Callable[[SIFNetwork, Batch], Tensor]:
        fn = ranking.LOSSES.get(self.loss_name)
        reg, implicit_reg = settings.reg, settings.implicit_reg

        def loss(net: SIFNetwork, batch: Batch) -> Tensor:
            users, items = batch  # items: [B, 1 + negatives], the positive first
            b, m = items.shape
            scores = net(users.repeat_interleave(m), items.reshape(-1)).view(b, m)
            out = fn(scores[:, 0], scores[:, 1:]) + reg * net.regularization(users, items.reshape(-1))
            if implicit_reg and net.config.implicit:
                out = out + implicit_reg * net.implicit_regularization(users, items[:, 0])
            return out

        return loss

    def _batches(self, positives: Interactions, exclude: Interactions, num_items: int, batch_size: int,
                 seed: int) -> Callable[[int], list]:
        sampler = ranking.NegativeSampler(exclude.users, exclude.items, num_items)
        ranks = world()  # a data-parallel rank trains on its slice of every global batch

        def make(i: int) -> list:
            g = torch.Generator().manual_seed(seed * 100_003 + i)
            order = torch.randperm(len(positives), generator=g).to(positives.users.device)
            users, items = positives.users.index_select(0, order), positives.items.index_select(0, order)
            neg = sampler.sample(users.cpu(), self.negatives, generator=g).to(users.device)
            both = torch.cat([items.unsqueeze(1), neg], dim=1)
            n = len(users)
            return [(ranks.shard(users[j : j + batch_size]), ranks.shard(both[j : j + batch_size]))
                    for j in range(0, n, batch_size) if min(batch_size, n - j) >= ranks.size]

        return make

    def train_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        return self._batches(splits.train, splits.train, splits.ids.num_items, batch_size, seed)

    def valid_batches(self, splits: Splits, batch_size: int, seed: int) -> Callable[[int], list]:
        seen = _concat(splits.train, splits.valid)  # validation negatives are neither
        return self._batches(splits.valid, seen, splits.ids.num_items, batch_size, seed + 1)

    def evaluate(self, net: SIFNetwork, splits: Splits, part: str) -> dict[str, float]:
        heldout = getattr(splits, part)
        if len(heldout) == 0:
            return {}
        exclude = splits.train if part == "valid" else _concat(splits.train, splits.valid)
        known = (heldout.users >= 0) & (heldout.items >= 0)
        ranks = world()  # in a data-parallel run each rank ranks its slice of the users
        users = ranks.shard(torch.unique(heldout.users[known]))
        result = ranking.full_ranking(net.score_all, users, (exclude.users, exclude.items),
                                      (heldout.users[known], heldout.items[known]), splits.ids.num_items, self.topk,
                                      chunk=self.eval_chunk)
        if not ranks.parallel:
            return {f"{part}_{k}": v for k, v in result.metrics.items()}
        names = sorted(result.metrics)
        count = result.num_users  # users with held-out pairs on this rank
        local = [result.metrics[k] * count if count else 0.0 for k in names] + [float(count)]
        *sums, total = ranks.sum(torch.tensor(local, dtype=torch.float64)).tolist()
        return {f"{part}_{k}": (s / total if total else math.nan) for k, s in zip(names, sums)}

    def test_keys(self) -> tuple[str, ...]:
        names = ("ndcg", "recall", "mrr", "hit", "precision")
        return tuple(f"test_{n}@{k}" for k in self.topk for n in names)

    def to_dict(self) -> dict:
        return {"task": self.name, "topk": list(self.topk), "loss": self.loss_name, "negatives": self.negatives,
                "min_rating": self.min_rating}


def _concat(a: Interactions, b: Interactions) -> Interactions:
    return Interactions(torch.cat([a.users, b.users]), torch.cat([a.items, b.items]), torch.cat([a.ratings, b.ratings]))


def build_task(name: str, **options) -> Task:
    """The task ``name`` with its options (ranking: topk, loss_name, negatives, min_rating)."""
    cls = TASKS.get(name)
    if cls is RatingTask:
        given = {k: v for k, v in options.items() if v is not None}
        if given:
            raise NaspError(f"{', '.join('--' + k.replace('_name', '').replace('_', '-') for k in given)}: "
                            "only for --task ranking")
        return RatingTask()
    return cls(**{k: v for k, v in options.items() if v is not None})


def task_from_dict(d: Optional[dict]) -> Task:
    """The task a saved ``to_dict`` describes (files from before tasks existed: rating)."""
    d = dict(d or {"task": "rating"})
    name = d.pop("task", "rating")
    if name == "ranking":
        return RankingTask(topk=tuple(d.get("topk", (10, 20))), loss_name=d.get("loss", "bpr"),
                           negatives=int(d.get("negatives", 4)), min_rating=d.get("min_rating"))
    return TASKS.get(name)()

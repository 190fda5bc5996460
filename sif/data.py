"""Ratings data for SIF: the tables the readers make (``RatingTable``, ``IdCodes``), the id
map to dense indices (``IdMap``, ``Interactions``), the ``Splits`` a run trains on, and the known
MovieLens names. Raw ids stay strings (a user types them); they map to dense indices in order of
first appearance. Reading files: ``sif.readers``; splitting: ``sif.splits``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nasp.data import DATASETS, KnownDataset, register_dataset
from nasp.errors import NaspError

_GL = "https://files.grouplens.org/datasets/movielens/"
# GroupLens publishes MD5 sums only; these are theirs.
for _name, _folder, _file, _md5, _desc in [
    ("ml-100k", "ml-100k", "u.data", "0e33842e24a9c977be4e0107933c0723", "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies"),
    ("ml-1m", "ml-1m", "ratings.dat", "c4d9eecfca2ab87c1945afe126590906", "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies"),
    ("ml-10m", "ml-10M100K", "ratings.dat", "ce571fd55effeba0271552578f2648bd", "MovieLens 10M: 10,000,054 ratings (half stars)"),
    ("ml-20m", "ml-20m", "ratings.csv", "cd245b17a1ae2cc31bb14903e1204af3", "MovieLens 20M: 20,000,263 ratings (half stars)"),
    ("ml-25m", "ml-25m", "ratings.csv", "6b51fb2759a8657d3bfcbfc42b592ada", "MovieLens 25M: 25,000,095 ratings (half stars)"),
    ("ml-latest-small", "ml-latest-small", "ratings.csv", None, "MovieLens latest small: ~100,000 ratings (changes over time)"),
]:
    if _name not in DATASETS:
        register_dataset(KnownDataset(_name, f"{_GL}{_name}.zip", None, _folder, (_file,), _desc, md5=_md5))

RATINGS_NAMES = ("u.data", "ratings.dat", "ratings.csv")
ITEM_NAMES = ("u.item", "movies.dat", "movies.csv")
#: the ratings files of MovieLens releases, which come with one of ``ITEM_NAMES`` beside them
MOVIELENS_RATINGS = ("u.data", "ratings.dat", "ratings.csv")


@dataclass(frozen=True)
class IdCodes:
    """A table's ids as integer codes into their distinct values: ``users`` equals
    ``user_labels[user_codes]`` (likewise items). The readers make them while they look for
    duplicates, so that mapping and splitting millions of rows hashes each distinct id once
    instead of every row's string."""

    user_codes: np.ndarray
    user_labels: np.ndarray
    item_codes: np.ndarray
    item_labels: np.ndarray

    @classmethod
    def of(cls, users: np.ndarray, items: np.ndarray) -> "IdCodes":
        """The codes of string id arrays (``pd.factorize``: labels in order of first appearance)."""
        user_codes, user_labels = pd.factorize(users)
        item_codes, item_labels = pd.factorize(items)
        return cls(user_codes, np.asarray(user_labels, dtype=object), item_codes, np.asarray(item_labels, dtype=object))

    def subset(self, keep: np.ndarray) -> "IdCodes":
        """The codes of the rows ``keep`` selects (the labels stay: some may no longer occur)."""
        return replace(self, user_codes=self.user_codes[keep], item_codes=self.item_codes[keep])


def _distinct(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The labels that occur in ``codes``, in order of first appearance (as ``pd.unique`` of the strings)."""
    return labels[pd.unique(codes)]


@dataclass
class RatingTable:
    """Raw interactions as read: string ids, float ratings (1.0 for every row of a file without a
    rating column: ``has_ratings`` False) and timestamps when the file has them. ``codes``: the
    ids factorised (the readers set them; a table built by hand may leave them None)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    source: str
    timestamps: Optional[np.ndarray] = None
    has_ratings: bool = True
    codes: Optional[IdCodes] = field(default=None, repr=False, compare=False)
    #: why a headerless file's fourth column is no timestamp column (its first non-number), for
    #: the error of ``--split temporal``
    timestamp_issue: Optional[str] = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, keep: np.ndarray) -> "RatingTable":
        """The rows where the boolean mask (or index array) ``keep`` selects."""
        ts = None if self.timestamps is None else self.timestamps[keep]
        codes = None if self.codes is None else self.codes.subset(keep)
        return replace(self, users=self.users[keep], items=self.items[keep], ratings=self.ratings[keep], timestamps=ts,
                       codes=codes)

    def distinct_users(self) -> np.ndarray:
        """The user ids, each once, in order of first appearance."""
        return pd.unique(self.users) if self.codes is None else _distinct(self.codes.user_codes, self.codes.user_labels)

    def distinct_items(self) -> np.ndarray:
        """The item ids, each once, in order of first appearance."""
        return pd.unique(self.items) if self.codes is None else _distinct(self.codes.item_codes, self.codes.item_labels)

    def need_ratings(self) -> "RatingTable":
        """``self``, or a clear error when the file has no rating column (the rating task)."""
        if not self.has_ratings:
            raise NaspError(f"{self.source}: no rating column; the rating task needs one (use --task ranking for "
                            "interaction logs without ratings)")
        return self

    def at_least(self, min_rating: Optional[float]) -> "RatingTable":
        """The rows rated ``min_rating`` or more (RecBole's ``threshold``); all rows when None."""
        if min_rating is None:
            return self
        self.need_ratings()
        kept = self.subset(self.ratings >= min_rating)
        if len(kept) == 0:
            raise NaspError(f"{self.source}: no interaction left after --min-rating {min_rating:g} "
                            f"(ratings range from {self.ratings.min():g} to {self.ratings.max():g})")
        return kept


# ids ------------------------------------------------------------------------------------------
@dataclass
class Interactions:
    """Dense-index ratings ready for training; ``-1`` marks ids unknown to the id map."""

    users: Tensor
    items: Tensor
    ratings: Tensor

    def __len__(self) -> int:
        return int(self.ratings.numel())

    def subset(self, index: np.ndarray) -> "Interactions":
        idx = torch.as_tensor(index, dtype=torch.long)
        return Interactions(self.users[idx], self.items[idx], self.ratings[idx])

    def to(self, device: torch.device) -> "Interactions":
        return Interactions(self.users.to(device), self.items.to(device), self.ratings.to(device))

    def known(self) -> "Interactions":
        """The rows whose user and item the id map knows (no ``-1``)."""
        keep = (self.users >= 0) & (self.items >= 0)
        if bool(keep.all()):
            return self
        return Interactions(self.users[keep], self.items[keep], self.ratings[keep])


@dataclass
class IdMap:
    """Raw id <-> dense index, for users and items."""

    user_ids: list[str]
    item_ids: list[str]

    @classmethod
    def build(cls, table: RatingTable, *more_items: Optional[RatingTable]) -> "IdMap":
        """Users of ``table``; items of ``table`` and then of ``more_items`` (the given
        validation/test files: their items are part of the catalogue, as in RecBole, though
        never trained; users stay those of ``table``)."""
        items = np.concatenate([table.distinct_items(), *(t.distinct_items() for t in more_items if t is not None)])
        return cls([str(u) for u in table.distinct_users()], [str(i) for i in pd.unique(items)])

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def encode(self, table: RatingTable) -> Interactions:
        """The table's rows as dense indices (-1 for ids not in the map); with the table's
        ``codes``, each distinct id is looked up once."""
        if table.codes is None:
            users = pd.Index(self.user_ids).get_indexer(table.users)
            items = pd.Index(self.item_ids).get_indexer(table.items)
        else:
            c = table.codes
            users = pd.Index(self.user_ids).get_indexer(c.user_labels)[c.user_codes]
            items = pd.Index(self.item_ids).get_indexer(c.item_labels)[c.item_codes]
        return Interactions(
            torch.as_tensor(users, dtype=torch.long),
            torch.as_tensor(items, dtype=torch.long),
            torch.tensor(np.array(table.ratings, dtype=np.float32)),
        )


@dataclass
class Splits:
    train: Interactions
    valid: Interactions
    test: Interactions
    ids: IdMap
    rating_range: tuple[float, float]
    #: distinct raw ids of ``--valid-data``/``--test-data`` absent from ``--data`` (encoded as -1)
    unknown_ids: dict = field(default_factory=dict)
    #: users whose interactions were too few for a per-user split: all of them went to training
    train_only_users: int = 0

    def to(self, device: torch.device) -> "Splits":
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))

    @property
    def test_unknown_ids(self) -> dict:
        return self.unknown_ids.get("test", {"users": 0, "items": 0})

    def with_valid_in_train(self) -> "Splits":
        """The same splits with the validation ratings moved into training (for a refit); rows of
        a ``--valid-data`` user or item absent from ``--data`` stay out (the model has no row for them)."""
        valid = self.valid.known()
        both = Interactions(*(torch.cat([getattr(self.train, k), getattr(valid, k)]) for k in ("users", "items", "ratings")))
        empty = Interactions(self.valid.users[:0], self.valid.items[:0], self.valid.ratings[:0])
        return replace(self, train=both, valid=empty)

"""Three-way data: readers of files with three id columns (and optionally a value), the
encoding of ids and the splits (given files or a random split)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from nasp.data import PREPARED, prepared_path, text_lines
from nasp.errors import NaspError

from .. import contexts  # noqa: F401  (registers the prepared (user, item, context) data sets)

log = logging.getLogger("nasp.sif")


WAYS = (2, 3)


def check_ways(ways: object) -> int:
    """``ways`` if it is 2 or 3; else one clear error."""
    if isinstance(ways, bool) or ways not in WAYS:
        raise NaspError(f"--ways {ways!r}: use 2 (user, item) or 3 (head, relation, tail)")
    return int(ways)


#: column names read as the value of a row (a RecBole typed header's ``rating:float``)
VALUE_NAMES = ("rating", "ratings", "score", "label", "value")


#: RecBole's field types (``user_id:token``), as ``sif.readers`` knows them
TYPED = ("token", "token_seq", "float", "float_seq")


@dataclass
class TripleRows:
    """The rows of a three-way file: three raw ids each, and the value of each row when the file
    has one (None otherwise)."""

    rows: list[tuple[str, str, str]]
    values: Optional[list[float]]


def _typed_header(fields: list[str]) -> bool:
    """Whether a first line is a RecBole typed header (every field ``name:type`` of its types)."""
    return all(":" in f and f.rsplit(":", 1)[1].lower() in TYPED for f in fields)


def _header_columns(path: Path, head: list[str]) -> tuple[list[int], Optional[int]]:
    """(the three token columns, the value column or None) of a typed header, else one error."""
    tokens = [i for i, f in enumerate(head) if f.rsplit(":", 1)[1].lower() == "token"]
    if len(tokens) != 3:
        names = ", ".join(head[i] for i in tokens) or "none"
        raise NaspError(f"{path}:1: the header names {len(tokens)} :token column(s) ({names}); --ways 3 reads three "
                        "id columns (e.g. user_id:token, item_id:token, context_id:token) and optionally rating:float")
    values = [i for i, f in enumerate(head) if f.rsplit(":", 1)[1].lower() == "float"
              and f.rsplit(":", 1)[0].lower() in VALUE_NAMES]
    return tokens, values[0] if values else None


def read_rows(path: Path | str, sep: Optional[str] = None) -> TripleRows:
    """The rows of a three-way file: three id columns and optionally a value; tab-separated, else
    ``sep``, else whitespace. A RecBole atomic file (a typed header such as ``user_id:token
    item_id:token context:token rating:float``) gives its three ``:token`` columns in order and
    its ``rating:float`` column as the value (other columns, a timestamp say, are skipped). Every
    line has as many columns as the first (the header's): another count, or a value that is not a
    finite number, is one clear error naming the line."""
    path = Path(path)
    rows: list[tuple[str, str, str]] = []
    values: list[float] = []
    width = ids = value = None
    where = ""
    for number, line in text_lines(path, "--data"):
        split_on = sep if sep is not None else ("\t" if "\t" in line else None)
        fields = [x.strip() for x in line.split(split_on)]
        if width is None:
            width = len(fields)
            if _typed_header(fields):
                ids, value = _header_columns(path, fields)
                where = "the header names"
                continue
            ids, value, where = [0, 1, 2], 3 if width == 4 else None, f"line {number} has"
        if len(fields) not in (3, 4) and where.startswith("line"):
            raise NaspError(f"{path}:{number}: {len(fields)} columns; --ways 3 reads head, relation, tail "
                            "(and optionally a value)")
        if len(fields) != width:
            raise NaspError(f"{path}:{number}: {len(fields)} columns where {where} {width}; --ways 3 reads three ids "
                            "(and optionally a value) on every line")
        if value is not None:
            what = "the fourth column" if where.startswith("line") else "the value column"
            try:
                v = float(fields[value])
            except ValueError:
                raise NaspError(f"{path}:{number}: {what} {fields[value]!r} is not a number") from None
            if not math.isfinite(v):
                raise NaspError(f"{path}:{number}: {what} {fields[value]!r} is not a finite number")
            values.append(v)
        rows.append((fields[ids[0]], fields[ids[1]], fields[ids[2]]))
    if not rows:
        raise NaspError(f"{path}: no triples")
    return TripleRows(rows, values if value is not None else None)


def read_triples(path: Path | str, sep: Optional[str] = None) -> list[tuple[str, str, str]]:
    """The ``(head, relation, tail)`` rows of a file (``read_rows``; the value, if any, left out)."""
    return read_rows(path, sep).rows


@dataclass
class TripleSplits:
    """Encoded rows (rows of (head, relation, tail) ids) and the raw ids of each id space.

    Ranking (``values`` None): heads and tails share the entity ids, as a knowledge graph's.
    Rating: each column has its own ids (``tails`` the third column's: a user, an item and a
    context are three kinds of thing) and ``values`` holds each row's value, per part."""

    train: Tensor
    valid: Tensor
    test: Tensor
    entities: list[str]
    relations: list[str]
    tails: Optional[list[str]] = None
    values: Optional[dict[str, Tensor]] = None
    #: ``ranking_filter`` of each part evaluated so far (ranking), kept for the next evaluation
    removed: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    @property
    def task(self) -> str:
        return "ranking" if self.values is None else "rating"

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def num_tails(self) -> Optional[int]:
        """Ids of the third column when it is its own kind (rating), else None (the entities)."""
        return None if self.tails is None else len(self.tails)

    def all_triples(self) -> Tensor:
        return torch.cat([self.train, self.valid, self.test])


def encode(parts: Sequence[list[tuple[str, str, str]]], shared: bool = True) -> tuple[list[Tensor], list[list[str]]]:
    """Ids of every part, in order of first appearance (the training part first, so an id below
    a column's count after training was seen in training); ``shared``: heads and tails share
    the entity ids. Returns the encoded parts and the raw ids of each space (two when shared)."""
    spaces: list[dict[str, int]] = [{}, {}] if shared else [{}, {}, {}]
    third = spaces[0] if shared else spaces[2]
    out = []
    for rows in parts:
        ids = [(spaces[0].setdefault(h, len(spaces[0])), spaces[1].setdefault(r, len(spaces[1])),
                third.setdefault(t, len(third))) for h, r, t in rows]
        out.append(torch.tensor(ids, dtype=torch.long).reshape(-1, 3))
    return out, [list(s) for s in spaces]


def load(data: Path | str, valid_data: Optional[Path | str] = None, test_data: Optional[Path | str] = None,
         valid_ratio: Optional[float] = None, test_ratio: Optional[float] = None, seed: int = 0,
         sep: Optional[str] = None, task: str = "ranking", data_dir: Optional[Path | str] = None) -> TripleSplits:
    """Read and split the rows: given validation/test files, else a random split of ``data``
    by ``seed`` (10% each by default). ``task`` rating: every file needs a value column, each
    column has its own ids, and a row repeated (the same three ids) keeps its last value, with
    one warning (a row in two parts would leak)."""
    data = resolve(data, data_dir)
    rating = task == "rating"
    read = {"data": read_rows(data, sep)}
    for name, ratio in (("--valid-ratio", valid_ratio), ("--test-ratio", test_ratio)):
        if ratio is not None and not 0 <= ratio < 1:
            raise NaspError(f"{name} {ratio!r}: must be in [0, 1)")
    given = {"valid": valid_data, "test": test_data}
    for name, path in given.items():
        if path is not None:
            read[name] = read_rows(path, sep)
    if rating:
        for name, part in read.items():
            if part.values is None:
                raise NaspError(f"{given.get(name, data)}: no value column; --ways 3 --task rating reads three ids and a "
                                "rating on each line (or a rating:float column)")
        read = {name: _last_of_each(part, given.get(name, data)) for name, part in read.items()}
    rows, values = read["data"].rows, read["data"].values
    ratios = {"valid": 0.1 if valid_ratio is None else valid_ratio, "test": 0.1 if test_ratio is None else test_ratio}
    order = np.random.default_rng(seed).permutation(len(rows))
    parts: dict[str, list[int]] = {}
    start = 0
    for name in ("test", "valid"):
        if given[name] is None:
            count = int(round(ratios[name] * len(rows)))
            parts[name] = [int(i) for i in order[start:start + count]]
            start += count
    parts["train"] = sorted(int(i) for i in order[start:]) if start else list(range(len(rows)))
    if not parts["train"]:
        raise NaspError(f"{data}: no training rows left after the split")
    names = ("train", "valid", "test")
    picked = {n: ([rows[i] for i in parts[n]], [values[i] for i in parts[n]] if rating else None) if n in parts
              else (read[n].rows, read[n].values) for n in names}
    encoded, spaces = encode([picked[n][0] for n in names], shared=not rating)
    vals = {n: torch.tensor(picked[n][1], dtype=torch.float32) for n in names} if rating else None
    return TripleSplits(*encoded, spaces[0], spaces[1], spaces[2] if rating else None, vals)


def _last_of_each(part: TripleRows, source: Path | str) -> TripleRows:
    """The rows with each (first, second, third) triple once, its last value kept; one warning."""
    last = {row: i for i, row in enumerate(part.rows)}
    if len(last) == len(part.rows):
        return part
    keep = sorted(last.values())
    first_dup = next(i for i, row in enumerate(part.rows) if last[row] != i)
    log.warning("%s: %d repeated row(s) (the same three ids), first at row %d; kept the last value of each",
                source, len(part.rows) - len(keep), first_dup + 1)
    return TripleRows([part.rows[i] for i in keep], [part.values[i] for i in keep])


def resolve(data: Path | str, data_dir: Optional[Path | str] = None) -> Path:
    """``data`` as a path, or a prepared data set's file (``nasp data prepare NAME``) under the data root."""
    path = Path(str(data)).expanduser()
    if path.exists() or str(data) not in PREPARED:
        return path
    return prepared_path(str(data), data_dir, must_exist=True)

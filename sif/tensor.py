"""Three-way (tensor) SIF: rows of three ids ``(a, b, c)``, a knowledge graph's ``(head,
relation, tail)`` or ``(user, item, context)`` with a rating.

* **Data** (``read_rows``, ``load``): files with three id columns and optionally a value
  (plain, or RecBole atomic files with three ``:token`` columns and ``rating:float``); given
  ``valid``/``test`` files or a random split. Ranking: head and tail share one entity id space
  (the first and third columns are the same kind of thing, as in a knowledge graph). Rating:
  each column has its own ids. ``nasp data prepare ml-100k-dow`` makes such a file from
  MovieLens-100K (``sif/contexts.py``).
* **Ranking task**: the knowledge-graph completion protocol. Training is 1-N scoring with binary
  cross-entropy (Dettmers et al., ConvE, AAAI 2018; TuckER): a query (head, relation) is scored
  against every entity as a tail, its targets the tails training knows for it; likewise
  (relation, tail) against every entity as a head. Evaluation ranks the true tail given
  (head, relation) and the true head given (relation, tail) among every entity, after removing
  every other entity that forms a known triple of train, valid or test ("filtered"); MRR and
  Hits@1/3/10 are averaged over both directions. A tie counts half (the mean of the optimistic
  and the pessimistic rank).
* **Rating task**: the value of each row predicted as the global mean, a bias per id of each
  column and the model's interaction score, trained by squared error with per-row L2 and
  Adagrad as the two-way rating models are; RMSE and MAE, predictions clipped to the training
  range.
* **Models**: the baselines CP (separate head and tail tables), DistMult (one entity table:
  ranking only), ComplEx, TuckER and an MLP over the three embeddings (``BASELINES``), and the
  searched space (``CompositionNetwork``): three embeddings composed as ``w . op2(op1(x, y), z)``
  over every pairing, one row of alphas mixed by the core's rules, so every strategy of the
  core searches it.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.commands import release_with_command
from nasp.data import PREPARED, prepared_path, text_lines
from nasp.errors import NaspError
from nasp.loop import EarlyStopping, run_search
from nasp.runs import RunDir, read_json, save_torch
from nasp.strategies import SearchProblem, build_strategy
from nasp.strategies.proximal import check_warmup

from . import contexts  # noqa: F401  (registers the prepared (user, item, context) data sets)
from .pipeline import best_search_epoch
from .space import inner_box

log = logging.getLogger("nasp.sif")

WAYS = (2, 3)
ARCH_FORMAT = "nasp-sif-tensor-arch/1"
MODEL_FILE = "model.pt"
HITS = (1, 3, 10)
#: a dense 1-N target matrix (queries x entities) larger than this is refused
MAX_TARGETS = 200_000_000
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


def check_ways(ways: object) -> int:
    """``ways`` if it is 2 or 3; else one clear error."""
    if isinstance(ways, bool) or ways not in WAYS:
        raise NaspError(f"--ways {ways!r}: use 2 (user, item) or 3 (head, relation, tail)")
    return int(ways)


# data -------------------------------------------------------------------------------------------
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


# ops and the searched space ---------------------------------------------------------------------
def concat(x: Tensor, y: Tensor) -> Tensor:
    """``[x, y]`` along the last dimension, the leading ones broadcast."""
    lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    return torch.cat([x.expand(*lead, x.shape[-1]), y.expand(*lead, y.shape[-1])], dim=-1)


OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "plus": torch.add,
    "multiply": torch.mul,
    "max": torch.maximum,
    "min": torch.minimum,
    "concat": lambda x, y: concat(x, y),
}
INNER_OPS = ("plus", "multiply", "max", "min")
#: (first, second, third): op2(op1(first, second), third); a head, b relation, c tail
PAIRINGS = (("a", "b", "c"), ("a", "c", "b"), ("b", "c", "a"))


@dataclass(frozen=True)
class Composition:
    """``op2(op1(x, y), z)`` over the pairing ``(x, y, z)`` of (a, b, c)."""

    op1: str
    op2: str
    pairing: tuple[str, str, str]
    #: whether c is read from the entity table where the first and third columns share ids
    shared = False
    #: whether it reads complex embeddings (the tables' rows as real parts, ``*_imag``'s as imaginary)
    complex = False

    @property
    def name(self) -> str:
        x, y, z = self.pairing
        if self.op1 == self.op2:
            return f"{self.op1}(a,b,c)"
        return f"{self.op2}({self.op1}({x},{y}),{z})"

    def width(self, dim: int) -> int:
        """Length of the composed vector."""
        return dim * (3 if self.op1 == "concat" else 2 if self.op2 == "concat" else 1)

    def __call__(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        """The composed vector of broadcastable embeddings (..., dim)."""
        v = {"a": a, "b": b, "c": c}
        x, y, z = (v[k] for k in self.pairing)
        return OPS[self.op2](OPS[self.op1](x, y), z)

    def scores_all(self, a: Tensor, b: Tensor, c: Tensor, d: int, w: Tensor) -> Tensor:
        """``(self(a, b, c) * w).sum(-1)`` of every entity on the ranked side (shapes as
        ``hermitian_all``), without a (B, N, dim) intermediate wherever ``parts`` writes the
        composed vector as affine terms of the ranked entity's vector and at most one hinge
        |r - centre| per part: a matrix product, and the hinge's weighted L1 distances
        (``weighted_l1``); otherwise (max or min of a product with r, max and min nested) the
        composed vectors of every entity contracted with ``w``."""
        ranked = "c" if d == 0 else "a"
        parts = self.parts({"a": a[0] if ranked == "a" else a[:, 0], "b": b[:, 0],
                            "c": c[0] if ranked == "c" else c[:, 0]}, ranked)
        if parts is None:
            return self(a, b, c) @ w
        table = (a if ranked == "a" else c)[0]
        score, start = None, 0
        for coef, offset, hinge in parts:  # each part: coef * r + offset [+ sign / 2 * |r - centre|], with its slice of w
            part_w = w[start:start + table.shape[-1]]
            start += table.shape[-1]
            term = (coef * part_w).expand(-1 if torch.is_tensor(coef) else 1, -1) @ table.t() if coef is not None else None
            if torch.is_tensor(offset):
                const = (offset * part_w).sum(-1, keepdim=True)
                term = const if term is None else term + const
            if hinge is not None:
                sign, centre = hinge
                term = term + sign * 0.5 * weighted_l1(centre, table, part_w)
            score = term if score is None else score + term
        return score.expand(len(b), table.shape[0])

    def parts(self, v: dict[str, Tensor], ranked: str) -> Optional[list[tuple[Any, Any, Any]]]:
        """The composed vector as parts (one, or one per concatenated piece) of the ranked
        entity's vector r: ``coef * r + offset`` plus, in a part where max or min takes r and
        a vector of the query, ``sign / 2 * |r - centre|`` (max(r + o, q) = (r + o + q) / 2 +
        |r - (q - o)| / 2; min with sign -1). Each part is ``(coef, offset, hinge)``: ``coef``
        (B, dim), a number or None (r absent), ``offset`` (B, dim) or 0, ``hinge`` None or
        (sign, centre (B, dim)). None where the composed vector has no such form: max or min of
        a product with r (r scaled per query), a product or another max or min of such a hinge.
        ``v``: the query side's vectors (B, dim) by name; ``ranked``: the ranked one's name."""
        def value(name: str) -> tuple[Any, Any, Any]:
            return (1, 0, None) if name == ranked else (None, v[name], None)

        def combine(op: str, x: tuple[Any, Any, Any], y: tuple[Any, Any, Any]) -> Optional[tuple[Any, Any, Any]]:
            (cx, ox, hx), (cy, oy, hy) = x, y
            if cx is None and cy is None:
                return None, OPS[op](ox, oy), None
            (cr, orr, hr), q = ((cx, ox, hx), oy) if cx is not None else ((cy, oy, hy), ox)  # r appears once
            if op == "plus":
                return cr, orr + q, hr
            if op == "multiply":
                return (cr * q, orr * q, None) if hr is None else None
            if hr is not None or torch.is_tensor(cr):  # max, min of a hinge, or of r scaled per query
                return None
            sign = 1.0 if op == "max" else -1.0  # max/min(r + o, q) = (r + o + q) / 2 +/- |r - (q - o)| / 2
            return 0.5, (orr + q) / 2, (sign, q - orr)

        x, y, z = self.pairing
        if self.op1 == "concat":  # concat(a,b,c)
            return [value(x), value(y), value(z)]
        if self.op1 == self.op2 and self.op1 in ("max", "min"):  # max(a,b,c) = max(r, max(the other two))
            others = [value(n) for n in (x, y, z) if n != ranked]
            return [combine(self.op1, value(ranked), combine(self.op1, *others))]
        inner = combine(self.op1, value(x), value(y))
        if inner is None:
            return None
        if self.op2 == "concat":
            return [inner, value(z)]
        outer = combine(self.op2, inner, value(z))
        return None if outer is None else [outer]


def weighted_l1(centre: Tensor, table: Tensor, w: Tensor) -> Tensor:
    """``sum_k w_k |centre[i, k] - table[j, k]|`` for every row i of ``centre`` (B, dim) and
    row j of ``table`` (N, dim): (B, N), by L1 distances (``torch.cdist``) of the rows scaled by
    the positive and by the negative part of ``w``, with no (B, N, dim) intermediate."""
    pos, neg = w.clamp(min=0), (-w).clamp(min=0)  # w = pos - neg
    return torch.cdist(centre * pos, table * pos, p=1) - torch.cdist(centre * neg, table * neg, p=1)


def hermitian(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Re(a * b * conj(c)) per complex coordinate of broadcastable complex vectors (..., 2 * k),
    the first half of each its real part and the second half its imaginary part: (..., k). Its
    sum is ComplEx's score (``ComplEx.score``)."""
    (ar, ai), (br, bi), (cr, ci) = (x.chunk(2, dim=-1) for x in (a, b, c))
    return ar * br * cr + ai * br * ci + ar * bi * ci - ai * bi * cr


def hermitian_all(a: Tensor, b: Tensor, c: Tensor, d: int, w: Optional[Tensor] = None) -> Tensor:
    """``(hermitian(a, b, c) * w).sum(-1)`` of every entity on the ranked side, as one matrix
    product (no (B, N, k) intermediate): ``d`` 0: ``a``, ``b`` (B, 1, 2k) and ``c`` (1, N, 2k),
    every tail; ``d`` 1: ``a`` (1, N, 2k), every head, and ``b``, ``c`` (B, 1, 2k). ``w`` (k,)
    None: ones (ComplEx's score). Returns (B, N)."""
    if d == 0:
        (ar, ai), (br, bi) = a[:, 0].chunk(2, dim=-1), b[:, 0].chunk(2, dim=-1)
        real, imag, ranked = ar * br - ai * bi, ar * bi + ai * br, c[0]
    else:
        (br, bi), (cr, ci) = b[:, 0].chunk(2, dim=-1), c[:, 0].chunk(2, dim=-1)
        real, imag, ranked = br * cr + bi * ci, br * ci - bi * cr, a[0]
    if w is not None:
        real, imag = real * w, imag * w
    return torch.cat([real, imag], dim=-1) @ ranked.t()


def product_all(a: Tensor, b: Tensor, c: Tensor, d: int, w: Optional[Tensor] = None) -> Tensor:
    """``(a * b * c * w).sum(-1)`` of every entity on the ranked side as one matrix product
    (shapes as ``hermitian_all``; ``w`` None: ones, CP's score)."""
    query, ranked = (a[:, 0] * b[:, 0], c[0]) if d == 0 else (b[:, 0] * c[:, 0], a[0])
    return (query if w is None else query * w) @ ranked.t()


@dataclass(frozen=True)
class HermitianProduct:
    """``hermitian(a,b,c)``: ComplEx's trilinear product Re(<a, b, conj(c)>) (``hermitian``) of
    complex embeddings, the relation (b) in the middle. Not a composition of element-wise ops of
    real vectors, so outside the SIF paper's space; ComplEx is the best model of this code on
    Kinships. Its embeddings are complex with ``dim`` coordinates, as the baseline's: the real
    parts are the network's tables (those every candidate reads), the imaginary parts tables of
    its own (``CompositionNetwork``), so that it is ComplEx at the same ``--dim``. As the
    baseline, it reads the first and third columns from one table where they share ids (a
    knowledge graph's heads and tails: conj relates an entity as a head to itself as a tail, so
    that one table models antisymmetric relations), from a table each otherwise.

    Unlike the compositions it has no output vector (``width`` 0): its score is the sum of the
    composed vector, ComplEx's score. A vector w would only repeat the relation's embedding
    (w_k Re(a_k b_k conj(c_k)) = Re(a_k (w_k b_k) conj(c_k))), and training it with Adam cost
    0.012 test MRR on Kinships (seeds 0-4, dim 64 and Adam at 0.02: 0.729 against 0.741 without)."""

    name = "hermitian(a,b,c)"
    shared = True
    complex = True

    def width(self, dim: int) -> int:
        """Length of its output vector: none (the composed vector has one entry per complex coordinate)."""
        return 0

    def __call__(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return hermitian(a, b, c)

    def scores_all(self, a: Tensor, b: Tensor, c: Tensor, d: int, w: Optional[Tensor] = None) -> Tensor:
        """``self(a, b, c).sum(-1)`` of every entity on the ranked side (``hermitian_all``)."""
        return hermitian_all(a, b, c, d)


HERMITIAN = HermitianProduct.name


def compositions() -> list[Composition]:
    """The SIF paper's space: for each pairing op1 in ``INNER_OPS``, op2 in those and concat,
    op1 != op2 (48), and the five same-op compositions (the 3-way product ``multiply(a,b,c)``
    among them): 53."""
    out = [Composition(op1, op2, p) for p in PAIRINGS for op1 in INNER_OPS for op2 in (*INNER_OPS, "concat") if op1 != op2]
    return out + [Composition(op, op, PAIRINGS[0]) for op in (*INNER_OPS, "concat")]


#: the searched space: the SIF paper's 53 compositions (``compositions``; its same-op multiply is
#: the true 3-way product, CP) and ComplEx's Hermitian product (``HermitianProduct``): 54
SPACE: dict[str, Any] = {**{c.name: c for c in compositions()}, HERMITIAN: HermitianProduct()}


# models -----------------------------------------------------------------------------------------
class TripleModel(nn.Module):
    """Scores queries against every entity: ``score_all(q, d)`` with ``q`` (B, 2) rows of
    (head, relation) when ``d`` is 0 (tails ranked) or (relation, tail) when ``d`` is 1 (heads
    ranked); ``d`` is one direction for the whole batch. ``score_rows(rows)``: the score of each
    (head, relation, tail) row, (B,). Every model has the tables ``entity`` (first column),
    ``relation`` (second) and ``tail`` (third: the entity table itself where they share it).
    A rating model also has ``rating``, a ``RatingHead`` (``predict``)."""

    def score_all(self, q: Tensor, d: int) -> Tensor:
        raise NotImplementedError

    def score_rows(self, rows: Tensor) -> Tensor:
        raise NotImplementedError

    def tables(self) -> tuple[nn.Embedding, nn.Embedding, nn.Embedding]:
        return self.entity, self.relation, self.tail


def _table(n: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(n, dim)
    nn.init.normal_(emb.weight, std=0.1)
    return emb


class RatingHead(nn.Module):
    """The global mean and a bias per id of each column (as the two-way rating models): the
    part of a predicted rating outside the interaction term. ``biases`` False: the mean only."""

    def __init__(self, sizes: Sequence[int], mean: float, biases: bool = True) -> None:
        super().__init__()
        self.start = float(mean)
        self.mean = nn.Parameter(torch.tensor(self.start)) if biases else None
        if not biases:
            self.register_buffer("fixed_mean", torch.tensor(self.start))
        self.biases = nn.ModuleList([nn.Embedding(n, 1) for n in sizes]) if biases else None
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        if self.biases is not None:
            self.mean.fill_(self.start)
            for b in self.biases:
                b.weight.zero_()

    def forward(self, rows: Tensor) -> Tensor:
        if self.biases is None:
            return self.fixed_mean.expand(len(rows))
        return self.mean + sum(b(rows[:, k]).squeeze(-1) for k, b in enumerate(self.biases))

    def rows_penalty(self, rows: Tensor) -> Tensor:
        """The squared biases of each row, (B,) (zeros without biases)."""
        if self.biases is None:
            return rows.new_zeros(len(rows), dtype=torch.float32)
        return sum(b(rows[:, k]).squeeze(-1).pow(2) for k, b in enumerate(self.biases))


def predict(model: TripleModel, rows: Tensor) -> Tensor:
    """The predicted value of each (first, second, third) row of a rating model, (B,)."""
    return model.score_rows(rows) + model.rating(rows)


class Broadcast(TripleModel):
    """Models whose score is a function of the (head, relation, tail) vectors, computed with
    the candidate side broadcast over every entity: ``score(a, b, c)`` of (B|1, N|1, dim).
    ``num_tails``: ids of the third column when it is its own kind (its own table); None:
    the entities (a table of their own unless ``shared``)."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, shared: bool = True,
                 num_tails: Optional[int] = None) -> None:
        super().__init__()
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, dim)
        shared = shared and num_tails is None
        self.tail = self.entity if shared else _table(num_entities if num_tails is None else num_tails, dim)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def score_all(self, q: Tensor, d: int) -> Tensor:
        return self.score(*vectors(self.entity, self.relation, self.tail, q, d))

    def score_rows(self, rows: Tensor) -> Tensor:
        return self.score(self.entity(rows[:, 0]), self.relation(rows[:, 1]), self.tail(rows[:, 2]))


class ComplexTable:
    """The rows of two tables side by side, ``[real, imag]``: complex embeddings for ``hermitian``
    (a view: nothing of its own to train or save). Called with ids, as an ``nn.Embedding``."""

    def __init__(self, real: nn.Embedding, imag: nn.Embedding) -> None:
        self.real, self.imag = real, imag

    def __call__(self, ids: Tensor) -> Tensor:
        return torch.cat([self.real(ids), self.imag(ids)], dim=-1)

    @property
    def weight(self) -> Tensor:
        return torch.cat([self.real.weight, self.imag.weight], dim=-1)


def vectors(entity: nn.Embedding, relation: nn.Embedding, tail: nn.Embedding, q: Tensor,
            d: int) -> tuple[Tensor, Tensor, Tensor]:
    """(a, b, c) of queries ``q`` in direction ``d``, the ranked side every entity: (1, N, dim)."""
    if d == 0:
        return entity(q[:, 0]).unsqueeze(1), relation(q[:, 1]).unsqueeze(1), tail.weight.unsqueeze(0)
    return entity.weight.unsqueeze(0), relation(q[:, 0]).unsqueeze(1), tail(q[:, 1]).unsqueeze(1)


class CP(Broadcast):
    """CP (Hitchcock 1927; Lacroix et al. 2018): sum_k a_k b_k c_k, separate head and tail tables."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, num_tails: Optional[int] = None) -> None:
        super().__init__(num_entities, num_relations, dim, shared=False, num_tails=num_tails)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (a * b * c).sum(-1)

    def score_all(self, q: Tensor, d: int) -> Tensor:
        return product_all(*vectors(self.entity, self.relation, self.tail, q, d), d)


class DistMult(CP):
    """DistMult (Yang et al., ICLR 2015): CP with one entity table for heads and tails, so only
    where the first and third columns are the same kind of thing (a knowledge graph's entities)."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, num_tails: Optional[int] = None) -> None:
        if num_tails is not None:
            raise NaspError(DISTMULT_NEEDS_SHARED)
        Broadcast.__init__(self, num_entities, num_relations, dim, shared=True)


DISTMULT_NEEDS_SHARED = ("distmult shares one table between the first and third columns (a knowledge graph's heads and "
                         "tails); with --task rating each column has its own ids (e.g. user, item, context): use cp")


class ComplEx(Broadcast):
    """ComplEx (Trouillon et al., ICML 2016): Re(<h, r, conj(t)>), ``dim`` complex coordinates;
    heads and tails share the entity table unless the third column is its own kind."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, num_tails: Optional[int] = None) -> None:
        super().__init__(num_entities, num_relations, 2 * dim, shared=True, num_tails=num_tails)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return hermitian(a, b, c).sum(-1)

    def score_all(self, q: Tensor, d: int) -> Tensor:
        return hermitian_all(*vectors(self.entity, self.relation, self.tail, q, d), d)


class TuckER(TripleModel):
    """TuckER (Balazevic et al., EMNLP 2019): W x1 r x2 h x3 t with a learned core W
    (relation size x dim x dim), without the paper's dropout and batch normalisation; heads and
    tails share the entity table unless the third column is its own kind. As in the paper, the
    relations have embeddings of their own size: ``dim``, at most ``RELATION_DIM`` (the paper's
    30-200; a core of dim^3 would cost 16.7M weights and most of a step at dim 256)."""

    RELATION_DIM = 32

    def __init__(self, num_entities: int, num_relations: int, dim: int, num_tails: Optional[int] = None) -> None:
        super().__init__()
        relation_dim = min(dim, self.RELATION_DIM)
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, relation_dim)
        self.tail = self.entity if num_tails is None else _table(num_tails, dim)
        self.core = nn.Parameter(torch.empty(relation_dim, dim, dim).uniform_(-1, 1) / dim)

    def score_all(self, q: Tensor, d: int) -> Tensor:
        if d == 0:
            v = torch.einsum("bi,ijk,bj->bk", self.relation(q[:, 1]), self.core, self.entity(q[:, 0]))
            return v @ self.tail.weight.t()
        v = torch.einsum("bi,ijk,bk->bj", self.relation(q[:, 0]), self.core, self.tail(q[:, 1]))
        return v @ self.entity.weight.t()

    def score_rows(self, rows: Tensor) -> Tensor:
        v = torch.einsum("bi,ijk,bj->bk", self.relation(rows[:, 1]), self.core, self.entity(rows[:, 0]))
        return (v * self.tail(rows[:, 2])).sum(-1)


class MLP(Broadcast):
    """An MLP over the concatenation [a, b, c] (NCF's tower on three embeddings; the issue's
    Deep&Wide-style baseline): ReLU(W [a, b, c] + bias) with ``dim`` hidden units, then a linear
    output. The first layer is applied per side and the parts broadcast-added, so that scoring
    every entity costs one (B, N, dim) sum. A table per column, as CP."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, num_tails: Optional[int] = None) -> None:
        super().__init__(num_entities, num_relations, dim, shared=False, num_tails=num_tails)
        self.parts = nn.ModuleList([nn.Linear(dim, dim, bias=k == 0) for k in range(3)])
        self.out = nn.Linear(dim, 1)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        hidden = torch.relu(self.parts[0](a) + self.parts[1](b) + self.parts[2](c))
        return self.out(hidden).squeeze(-1)


BASELINES: dict[str, type] = {"cp": CP, "distmult": DistMult, "complex": ComplEx, "tucker": TuckER, "mlp": MLP}


class CompositionNetwork(SearchNetwork, TripleModel):
    """The searched space: one row of alphas over ``candidates`` (names of ``SPACE``), each
    composition scored as ``w_m . m(a, b, c)`` with its own output vector ``w_m`` (ones at the start, so
    ``multiply(a,b,c)`` starts as CP); the core's rule mixes the row. Heads and tails share the
    entity ids but have a table each (a = head, c = tail roles), as CP. ``bounded`` (the rating
    task): each ``w_m`` starts at 1/sqrt(n) and is clipped into the box |w_k| <= 1/sqrt(n), as
    the two-way rating models' heads (unbounded ones overfit ratings within two epochs). The
    default architecture (where a local search starts) is ``multiply(a,b,c)``, CP.

    The Hermitian product (``HermitianProduct``: ComplEx's) reads complex embeddings: their real
    parts the tables above, their imaginary parts the tables ``entity_imag``, ``relation_imag``
    and ``tail_imag`` that the network has only when it is a candidate. It reads c from the
    entity tables where heads and tails share ids (``num_tails`` None); a network of it alone
    then has no tables of its own for tails (``tail`` is ``entity``, as in ComplEx)."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, candidates: Sequence[str],
                 num_tails: Optional[int] = None, bounded: bool = False) -> None:
        super().__init__()
        self.candidates = [check_candidate(name) for name in candidates]
        self.shares_ids = num_tails is None
        num_tails = num_entities if num_tails is None else num_tails
        one_table = self.shares_ids and all(SPACE[n].shared for n in self.candidates)
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, dim)
        self.tail = self.entity if one_table else _table(num_tails, dim)
        if any(SPACE[n].complex for n in self.candidates):
            self.entity_imag = _table(num_entities, dim)
            self.relation_imag = _table(num_relations, dim)
            self.tail_imag = self.entity_imag if self.shares_ids else _table(num_tails, dim)
        self.bounded = bounded
        self.alpha = nn.Parameter(torch.full((1, len(self.candidates)), 1.0 / len(self.candidates)))
        self.outputs = nn.ParameterList([nn.Parameter(torch.empty(SPACE[n].width(dim))) for n in self.candidates])
        self._reset_outputs()

    def _inputs(self, m: Any) -> tuple[Any, Any, Any]:
        """The tables candidate ``m`` reads its (a, b, c) from: the entity table for c where it
        shares it, complex views (``ComplexTable``) where it reads complex embeddings."""
        shared = m.shared and self.shares_ids
        if m.complex:
            return (ComplexTable(self.entity, self.entity_imag), ComplexTable(self.relation, self.relation_imag),
                    ComplexTable(self.entity, self.entity_imag) if shared else ComplexTable(self.tail, self.tail_imag))
        return self.entity, self.relation, self.entity if shared else self.tail

    def tables(self) -> tuple[Any, Any, Any]:
        """The tables of the three columns (rows penalised by the rating loss), with their
        imaginary parts where the last forward ran the Hermitian product (so that a search
        that does not run it leaves its imaginary tables alone: no gradient, no optimizer step)."""
        if not getattr(self, "_read_complex", False):
            return self.entity, self.relation, self.tail
        return (ComplexTable(self.entity, self.entity_imag), ComplexTable(self.relation, self.relation_imag),
                ComplexTable(self.tail, self.tail_imag))

    @torch.no_grad()
    def _reset_outputs(self) -> None:
        for w in self.outputs:
            if w.numel():  # the Hermitian product has none
                w.fill_(1.0 / w.numel() ** 0.5 if self.bounded else 1.0)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def default_architecture(self) -> list[Tensor]:
        """One-hot on ``multiply(a,b,c)`` (CP) where it is a candidate, else on the first."""
        start = self.candidates.index(PRODUCT) if PRODUCT in self.candidates else 0
        out = torch.zeros_like(self.alpha.detach())
        out[0, start] = 1.0
        return [out]

    def starting_architectures(self) -> list[list[Tensor]]:
        """Where a local search may start: the 3-way product (CP) and, where heads and tails
        share ids, the Hermitian product (ComplEx), each warmed up from the weights as built
        (the better on validation is the start). Neither can start computing the other's
        function, so a one-epoch trial of either from the other's trained weights is no test
        of it (on Kinships the Hermitian product needs about four epochs to overtake CP)."""
        starts = [self.default_architecture()]
        if self.shares_ids and HERMITIAN in self.candidates and starts[0][0][0, self.candidates.index(HERMITIAN)] == 0:
            out = torch.zeros_like(self.alpha.detach())
            out[0, self.candidates.index(HERMITIAN)] = 1.0
            starts.append([out])
        return starts

    @torch.no_grad()
    def reset_weights(self) -> None:
        """The weights as built (random search trains each candidate from this start)."""
        for table in (self.entity, self.relation, self.tail, *([self.entity_imag, self.relation_imag, self.tail_imag]
                                                               if hasattr(self, "entity_imag") else [])):
            nn.init.normal_(table.weight, std=0.1)
        self._reset_outputs()
        if getattr(self, "rating", None) is not None:
            self.rating.reset()

    def _mixed(self, fns: list) -> Tensor:
        p = plan(self.alpha, self.mixing)
        self._read_complex = hasattr(self, "entity_imag") and (p.active is None or any(
            SPACE[self.candidates[k]].complex for k in p.active[0]))
        out = mix(fns, p, 0)
        if out is None:
            raise NaspError("no candidate of the 3-way space is selected")
        return out

    def score_all(self, q: Tensor, d: int) -> Tensor:
        return self._mixed(self._terms(lambda tables: vectors(*tables, q, d), d))

    def score_rows(self, rows: Tensor) -> Tensor:
        return self._mixed(self._terms(lambda tables: tuple(t(rows[:, k]) for k, t in enumerate(tables))))

    def _terms(self, read: Callable[[tuple], tuple[Tensor, Tensor, Tensor]],
               d: Optional[int] = None) -> list[Callable[[], Tensor]]:
        """The score of each candidate, to compute: ``w . m(a, b, c)``, the vectors ``read`` from
        the candidate's tables (``_inputs``; read once per set of tables and call, apart with
        and without autograd: a candidate the core runs without it must not lend the others
        vectors that have none); ``d``: every entity of direction ``d`` (``scores_all``)."""
        read_once: dict[tuple[bool, bool, bool], tuple[Tensor, Tensor, Tensor]] = {}

        def term(m: Any, w: Tensor) -> Callable[[], Tensor]:
            def score() -> Tensor:
                key = (m.shared and self.shares_ids, m.complex, torch.is_grad_enabled())
                if key not in read_once:
                    read_once[key] = read(self._inputs(m))
                if d is not None:
                    return m.scores_all(*read_once[key], d, self._head(w))
                composed = m(*read_once[key])
                return (composed * self._head(w)).sum(-1) if w.numel() else composed.sum(-1)
            return score
        return [term(SPACE[n], w) for n, w in zip(self.candidates, self.outputs)]

    def _head(self, w: Tensor) -> Tensor:
        return inner_box(w) if self.bounded and w.numel() else w

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        alpha = (list(alphas) if alphas is not None else self.arch_parameters())[0].detach().cpu()
        return {"interaction": self.candidates[int(alpha[0].argmax())], "alpha": alpha[0].tolist(),
                "probabilities": torch.softmax(alpha[0], -1).tolist()}


PRODUCT = "multiply(a,b,c)"


def check_candidate(name: str) -> str:
    if name not in SPACE:
        raise NaspError(f"unknown 3-way composition {name!r}; e.g. {', '.join(list(SPACE)[:3])} ... ({len(SPACE)} in all)")
    return name


@dataclass
class TensorConfig:
    """A model of the 3-way space: ``model`` a baseline name, a composition of ``SPACE``, or
    ``search`` (every composition, one row of alphas). ``num_tails``: ids of the third column
    when it is its own kind (rating), None where it shares the entity ids (ranking). ``task``
    rating adds a ``RatingHead`` (``global_mean``, and per-column ``biases`` unless off)."""

    model: str
    num_entities: int
    num_relations: int
    dim: int = 64
    space: str = "tensor"
    ways: int = 3
    num_tails: Optional[int] = None
    task: str = "ranking"
    global_mean: float = 0.0
    biases: bool = True

    def sizes(self) -> tuple[int, int, int]:
        return self.num_entities, self.num_relations, self.num_entities if self.num_tails is None else self.num_tails

    def build(self) -> TripleModel:
        if self.model in BASELINES:
            net = BASELINES[self.model](self.num_entities, self.num_relations, self.dim, num_tails=self.num_tails)
        else:
            names = list(SPACE) if self.model == "search" else [check_candidate(self.model)]
            net = CompositionNetwork(self.num_entities, self.num_relations, self.dim, names, num_tails=self.num_tails,
                                     bounded=self.task == "rating")
        if self.task == "rating":
            net.rating = RatingHead(self.sizes(), self.global_mean, self.biases)
        return net

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TensorConfig":
        try:
            tails = d.get("num_tails")
            return cls(str(d["model"]), int(d["num_entities"]), int(d["num_relations"]), int(d.get("dim", 64)),
                       num_tails=None if tails is None else int(tails), task=str(d.get("task", "ranking")),
                       global_mean=float(d.get("global_mean", 0.0)), biases=bool(d.get("biases", True)))
        except (KeyError, TypeError, ValueError) as exc:
            raise NaspError(f"not a 3-way model config ({exc.__class__.__name__}: {exc})") from None


# training and evaluation ------------------------------------------------------------------------
def known_answers(triples: Tensor, d: int) -> dict[tuple[int, int], list[int]]:
    """Query -> the entities that answer it in ``triples``: (head, relation) -> tails (d = 0),
    (relation, tail) -> heads (d = 1)."""
    out: dict[tuple[int, int], list[int]] = {}
    for h, r, t in triples.tolist():
        key, answer = ((h, r), t) if d == 0 else ((r, t), h)
        out.setdefault(key, []).append(answer)
    return out


def one_to_n(queries: Tensor, d: int, answers: dict, num_entities: int) -> tuple[Tensor, Tensor]:
    """Distinct queries of ``queries`` (triples) and their 0/1 target rows over every entity."""
    keys = sorted({(h, r) if d == 0 else (r, t) for h, r, t in queries.tolist()})
    if len(keys) * num_entities > MAX_TARGETS:
        raise NaspError(f"{len(keys)} queries x {num_entities} entities: too large for 1-N training in this version")
    q = torch.tensor(keys, dtype=torch.long).reshape(-1, 2)
    targets = torch.zeros(len(keys), num_entities)
    for i, key in enumerate(keys):
        targets[i, answers[key]] = 1.0
    return q, targets


def query_batches(triples: Tensor, known: Tensor, num_entities: int, batch_size: int,
                  seed: int) -> Callable[[int], list]:
    """``batches(epoch)``: shuffled 1-N batches ``(q, d, targets)`` of both directions; a query's
    targets are its answers among ``known`` (training triples, plus validation ones for the
    architecture step's batches)."""
    sets = [one_to_n(triples, d, known_answers(known, d), num_entities) for d in (0, 1)]

    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        out = []
        for d, (q, targets) in enumerate(sets):
            order = torch.randperm(len(q), generator=g)
            out += [(q[i], d, targets[i]) for i in order.split(batch_size)]
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    return batches


def loss_fn(model: TripleModel, batch: tuple) -> Tensor:
    """Binary cross-entropy of the 1-N scores against the 0/1 targets."""
    q, d, targets = batch
    device = next(model.parameters()).device
    return nn.functional.binary_cross_entropy_with_logits(model.score_all(q.to(device), d), targets.to(device))


def ranking_filter(triples: Tensor, every_known: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """What filtered ranking of ``triples`` removes, per direction (tails given (head, relation),
    then heads given (relation, tail)): (rows, entities), each triple's row in ``triples`` (in
    order) with every other answer its query has in ``every_known`` (the triple's own left out).
    Computed once per set of triples and reused at every evaluation."""
    out = []
    for d in (0, 1):
        answers = known_answers(every_known, d)
        rows: list[int] = []
        entities: list[int] = []
        for i, (h, r, t) in enumerate(triples.tolist()):
            key, target = ((h, r), t) if d == 0 else ((r, t), h)
            others = [e for e in answers.get(key, ()) if e != target]
            rows += [i] * len(others)
            entities += others
        out.append((torch.tensor(rows, dtype=torch.long), torch.tensor(entities, dtype=torch.long)))
    return out[0], out[1]


def filtered_ranks(model: TripleModel, triples: Tensor, every_known: Tensor, batch_size: int = 512,
                   removed: Optional[tuple] = None) -> Tensor:
    """The filtered rank of each triple's tail (given head, relation) then of its head (given
    relation, tail): 1 + entities scored higher + half the others scored equal, after removing
    every other answer the query has in ``every_known`` (``removed``: ``ranking_filter``'s of
    them, when computed before)."""
    removed = removed if removed is not None else ranking_filter(triples, every_known)
    ranks = []
    device = next(model.parameters(), torch.zeros(0)).device
    with torch.no_grad():
        for d in (0, 1):
            rows_removed, entities_removed = removed[d]
            for start in range(0, len(triples), batch_size):
                rows = triples[start:start + batch_size]
                q = rows[:, :2] if d == 0 else rows[:, 1:]
                target = rows[:, 2] if d == 0 else rows[:, 0]
                scores = model.score_all(q.to(device), d).float().cpu()
                lo, hi = torch.searchsorted(rows_removed, torch.tensor([start, start + len(rows)])).tolist()
                mask = torch.zeros_like(scores, dtype=torch.bool)
                mask[rows_removed[lo:hi] - start, entities_removed[lo:hi]] = True
                true = scores.gather(1, target.unsqueeze(1))
                higher = ((scores > true) & ~mask).sum(1).float()
                equal = ((scores == true) & ~mask).sum(1).float() - 1
                ranks.append(1 + higher + equal / 2)
    return torch.cat(ranks) if ranks else torch.zeros(0)


def metrics(ranks: Tensor, part: str) -> dict[str, float]:
    """MRR and Hits@1/3/10 of ranks (both directions together), keys prefixed ``part_``."""
    if not len(ranks):
        return {}
    out = {f"{part}_mrr": float((1.0 / ranks).mean())}
    out.update({f"{part}_hits@{k}": float((ranks <= k).float().mean()) for k in HITS})
    return out


def evaluate(model: TripleModel, splits: TripleSplits, part: str) -> dict[str, float]:
    """The metrics of ``part`` (valid or test): filtered MRR and Hits@1/3/10 (ranking), RMSE and
    MAE (rating); {} for an empty part."""
    model.eval()
    try:
        if splits.task == "rating":
            return rating_metrics(model, splits, part)
        if part not in splits.removed:
            splits.removed[part] = ranking_filter(getattr(splits, part), splits.all_triples())
        return metrics(filtered_ranks(model, getattr(splits, part), splits.all_triples(), removed=splits.removed[part]), part)
    finally:
        model.train()


# the rating task --------------------------------------------------------------------------------
def row_batches(rows: Tensor, values: Tensor, batch_size: int, seed: int) -> Callable[[int], list]:
    """``batches(epoch)``: the rows and their values in shuffled batches (fixed by seed and epoch)."""
    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(rows), generator=g)
        return [(rows[i], values[i]) for i in order.split(batch_size)]

    return batches


def make_rating_loss(reg: float) -> Callable[[TripleModel, tuple], Tensor]:
    """Squared error of the predicted values, plus ``reg`` times the squared norms of each row's
    three embeddings and biases (the two-way rating models' per-row L2), averaged over the batch."""
    def rating_loss(model: TripleModel, batch: tuple) -> Tensor:
        rows, values = batch
        device = next(model.parameters()).device
        rows, values = rows.to(device), values.to(device)
        loss = nn.functional.mse_loss(predict(model, rows), values)
        if reg:
            norms = sum(t(rows[:, k]).pow(2).sum(-1) for k, t in enumerate(model.tables()))
            loss = loss + reg * (norms + model.rating.rows_penalty(rows)).mean()
        return loss

    return rating_loss


def rating_metrics(model: TripleModel, splits: TripleSplits, part: str, batch_size: int = 8192) -> dict[str, float]:
    """RMSE and MAE of ``part``'s values, predictions clipped to the training values' range. A
    row with an id never seen in training is predicted without the interaction term (the mean
    and the biases of its known ids), and counted (``part_unseen_rows``)."""
    rows, values = getattr(splits, part), splits.values[part]
    if not len(rows):
        return {}
    train_values = splits.values["train"]
    low, high = float(train_values.min()), float(train_values.max())
    seen = splits.train.max(0).values + 1  # ids are numbered training rows first
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in rows.split(batch_size):
            batch = batch.to(device)
            known = (batch < seen.to(device)).all(1)
            score = torch.where(known, model.score_rows(batch), torch.zeros((), device=device))
            out.append((score + model.rating(batch)).clamp(low, high).double().cpu())
    error = torch.cat(out) - values.double()
    metrics_ = {f"{part}_rmse": float(error.pow(2).mean().sqrt()), f"{part}_mae": float(error.abs().mean())}
    unseen = int((~(rows < seen).all(1)).sum())
    if unseen:
        metrics_[f"{part}_unseen_rows"] = unseen
    return metrics_


# optimisation -----------------------------------------------------------------------------------
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
          init: Optional[dict] = None) -> tuple[TripleModel, dict]:
    """Train one fixed model with early stopping on the validation metric (MRR, or RMSE for
    ratings; the best epoch restored); ``init``: its starting weights (``chosen_state``), else
    fresh ones."""
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
    summary = {"interaction": config.model, **evaluate(net, splits, "valid"), **evaluate(net, splits, "test"),
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


# saved models -----------------------------------------------------------------------------------
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
        retrain: bool = True, biases: bool = True, warm_start: bool = False) -> dict:
    """A whole 3-way job in ``run``: search (``model`` and ``arch`` None) then retrain (unless
    ``retrain`` is off), or train ``model`` / the composition of ``arch``; writes model.pt
    (when it trains); returns the summary. ``biases``: a rating model's per-column biases.
    ``warm_start``: the retraining starts from the searched weights of the chosen composition
    (``chosen_state``), else from fresh ones."""
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
    net, trained = train(sub, splits, config, s, seed, device=device, init=init)
    if searched:
        trained["warm_start"] = bool(warm_start)
    save(run.file(MODEL_FILE), net.cpu(), config, splits)
    return {**summary, **trained, "seconds": round(time.perf_counter() - t0, 3)}


def _subrun(run: RunDir, name: str) -> RunDir:
    """RUN/<name>/, resumed when it was started before (its lock released with the command)."""
    out = run.file(name)
    rdir = release_with_command(RunDir(out, resume=(out / "config.json").exists(), clock=run.clock))
    if not rdir.resume:
        rdir.write_config({"command": name})
    return rdir


# the estimator's options ------------------------------------------------------------------------
#: ``SIFOptions`` of the two-way models that a three-way run has no use for (given: an error)
UNUSED = ("choices", "folds", "loss", "negatives", "topk", "min_rating", "split", "columns", "implicit", "head",
          "history_refreshes", "implicit_reg", "baselines", "mlp_on_valid", "amp", "gcn_layers", "ease_lambda",
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
               **({"trial_fraction": o.trial_fraction} if o.trial_fraction is not None
                  else {"trial_fraction": local.trial_fraction} if local is not None else {})}
    settings = settings_of(o)
    dim = o.dim or (arch["model"].get("dim", settings.dim) if arch else settings.dim)
    return fit(run, splits, o.ifc, arch, settings, dim, o.get("strategy"), o.get("epochs"), o.seed, options, device,
               o.retrain, biases=o.biases is not False, warm_start=bool(o.get("warm_start")))

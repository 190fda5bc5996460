"""Three-way (tensor) SIF: knowledge-graph style triples ``(a, b, c)`` = ``(head, relation, tail)``.

* **Data** (``read_triples``, ``load``): files with three id columns and optionally a value;
  given ``valid``/``test`` files or a random split. Head and tail share one entity id space (the
  first and third columns are the same kind of thing, as in a knowledge graph).
* **Task**: the knowledge-graph completion protocol. Training is 1-N scoring with binary
  cross-entropy (Dettmers et al., ConvE, AAAI 2018; TuckER): a query (head, relation) is scored
  against every entity as a tail, its targets the tails training knows for it; likewise
  (relation, tail) against every entity as a head. Evaluation ranks the true tail given
  (head, relation) and the true head given (relation, tail) among every entity, after removing
  every other entity that forms a known triple of train, valid or test ("filtered"); MRR and
  Hits@1/3/10 are averaged over both directions. A tie counts half (the mean of the optimistic
  and the pessimistic rank).
* **Models**: the baselines CP (separate head and tail tables), DistMult (one entity table),
  ComplEx and TuckER (``BASELINES``), and the searched space (``Compositions``): three embeddings
  composed as ``w . op2(op1(x, y), z)`` over every pairing, one row of alphas mixed by the core's
  rules, so every strategy of the core searches it.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.commands import release_with_command
from nasp.data import text_lines
from nasp.errors import NaspError
from nasp.loop import EarlyStopping, run_search
from nasp.runs import RunDir, read_json, save_torch
from nasp.strategies import SearchProblem, build_strategy

from .pipeline import best_search_epoch

WAYS = (2, 3)
ARCH_FORMAT = "nasp-sif-tensor-arch/1"
MODEL_FILE = "model.pt"
HITS = (1, 3, 10)
#: a dense 1-N target matrix (queries x entities) larger than this is refused
MAX_TARGETS = 200_000_000


def check_ways(ways: object) -> int:
    """``ways`` if it is 2 or 3; else one clear error."""
    if isinstance(ways, bool) or ways not in WAYS:
        raise NaspError(f"--ways {ways!r}: use 2 (user, item) or 3 (head, relation, tail)")
    return int(ways)


# data -------------------------------------------------------------------------------------------
def read_triples(path: Path | str, sep: Optional[str] = None) -> list[tuple[str, str, str]]:
    """The ``(head, relation, tail)`` rows of a file: three id columns and optionally a value
    (ignored by ranking); tab-separated, else ``sep``, else whitespace. A row with another number
    of columns is one clear error naming the line."""
    path = Path(path)
    rows = []
    for number, line in text_lines(path, "--data"):
        split_on = sep if sep is not None else ("\t" if "\t" in line else None)
        fields = [x.strip() for x in line.split(split_on)]
        if len(fields) not in (3, 4):
            raise NaspError(f"{path}:{number}: {len(fields)} columns; --ways 3 reads head, relation, tail "
                            "(and optionally a value)")
        if len(fields) == 4:
            try:
                float(fields[3])
            except ValueError:
                raise NaspError(f"{path}:{number}: the fourth column {fields[3]!r} is not a number") from None
        rows.append((fields[0], fields[1], fields[2]))
    if not rows:
        raise NaspError(f"{path}: no triples")
    return rows


@dataclass
class TripleSplits:
    """Encoded triples (rows of (head, relation, tail) ids) and the raw ids of each id space."""

    train: Tensor
    valid: Tensor
    test: Tensor
    entities: list[str]
    relations: list[str]

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def all_triples(self) -> Tensor:
        return torch.cat([self.train, self.valid, self.test])


def encode(parts: Sequence[list[tuple[str, str, str]]]) -> tuple[list[Tensor], list[str], list[str]]:
    """Ids of every part, in order of first appearance; heads and tails share the entity ids."""
    entities: dict[str, int] = {}
    relations: dict[str, int] = {}
    out = []
    for rows in parts:
        ids = [(entities.setdefault(h, len(entities)), relations.setdefault(r, len(relations)),
                entities.setdefault(t, len(entities))) for h, r, t in rows]
        out.append(torch.tensor(ids, dtype=torch.long).reshape(-1, 3))
    return out, list(entities), list(relations)


def load(data: Path | str, valid_data: Optional[Path | str] = None, test_data: Optional[Path | str] = None,
         valid_ratio: Optional[float] = None, test_ratio: Optional[float] = None, seed: int = 0,
         sep: Optional[str] = None) -> TripleSplits:
    """Read and split the triples: given validation/test files, else a random split of ``data``
    by ``seed`` (10% each by default)."""
    rows = read_triples(data, sep)
    for name, ratio in (("--valid-ratio", valid_ratio), ("--test-ratio", test_ratio)):
        if ratio is not None and not 0 <= ratio < 1:
            raise NaspError(f"{name} {ratio!r}: must be in [0, 1)")
    parts: dict[str, list] = {"valid": [], "test": []}
    given = {"valid": valid_data, "test": test_data}
    ratios = {"valid": 0.1 if valid_ratio is None else valid_ratio, "test": 0.1 if test_ratio is None else test_ratio}
    order = np.random.default_rng(seed).permutation(len(rows))
    start = 0
    for name in ("test", "valid"):
        if given[name] is not None:
            parts[name] = read_triples(given[name], sep)
            continue
        count = int(round(ratios[name] * len(rows)))
        parts[name] = [rows[i] for i in order[start:start + count]]
        start += count
    train = [rows[i] for i in sorted(order[start:])] if start else rows
    if not train:
        raise NaspError(f"{data}: no training triples left after the split")
    (tr, va, te), entities, relations = encode([train, parts["valid"], parts["test"]])
    return TripleSplits(tr, va, te, entities, relations)


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


def compositions() -> list[Composition]:
    """The space: for each pairing op1 in ``INNER_OPS``, op2 in those and concat, op1 != op2
    (48), and the five same-op compositions (the 3-way product ``multiply(a,b,c)`` among them): 53."""
    out = [Composition(op1, op2, p) for p in PAIRINGS for op1 in INNER_OPS for op2 in (*INNER_OPS, "concat") if op1 != op2]
    return out + [Composition(op, op, PAIRINGS[0]) for op in (*INNER_OPS, "concat")]


SPACE = {c.name: c for c in compositions()}


# models -----------------------------------------------------------------------------------------
class TripleModel(nn.Module):
    """Scores queries against every entity: ``score_all(q, d)`` with ``q`` (B, 2) rows of
    (head, relation) when ``d`` is 0 (tails ranked) or (relation, tail) when ``d`` is 1 (heads
    ranked); ``d`` is one direction for the whole batch."""

    def score_all(self, q: Tensor, d: int) -> Tensor:
        raise NotImplementedError


def _table(n: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(n, dim)
    nn.init.normal_(emb.weight, std=0.1)
    return emb


class Broadcast(TripleModel):
    """Models whose score is a function of the (head, relation, tail) vectors, computed with
    the candidate side broadcast over every entity: ``score(a, b, c)`` of (B|1, N|1, dim)."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, shared: bool = True) -> None:
        super().__init__()
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, dim)
        self.tail = self.entity if shared else _table(num_entities, dim)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def score_all(self, q: Tensor, d: int) -> Tensor:
        return self.score(*vectors(self.entity, self.relation, self.tail, q, d))


def vectors(entity: nn.Embedding, relation: nn.Embedding, tail: nn.Embedding, q: Tensor,
            d: int) -> tuple[Tensor, Tensor, Tensor]:
    """(a, b, c) of queries ``q`` in direction ``d``, the ranked side every entity: (1, N, dim)."""
    if d == 0:
        return entity(q[:, 0]).unsqueeze(1), relation(q[:, 1]).unsqueeze(1), tail.weight.unsqueeze(0)
    return entity.weight.unsqueeze(0), relation(q[:, 0]).unsqueeze(1), tail(q[:, 1]).unsqueeze(1)


class CP(Broadcast):
    """CP (Hitchcock 1927; Lacroix et al. 2018): sum_k a_k b_k c_k, separate head and tail tables."""

    def __init__(self, num_entities: int, num_relations: int, dim: int) -> None:
        super().__init__(num_entities, num_relations, dim, shared=False)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (a * b * c).sum(-1)


class DistMult(CP):
    """DistMult (Yang et al., ICLR 2015): CP with one entity table for heads and tails."""

    def __init__(self, num_entities: int, num_relations: int, dim: int) -> None:
        Broadcast.__init__(self, num_entities, num_relations, dim, shared=True)


class ComplEx(Broadcast):
    """ComplEx (Trouillon et al., ICML 2016): Re(<h, r, conj(t)>), ``dim`` complex coordinates."""

    def __init__(self, num_entities: int, num_relations: int, dim: int) -> None:
        super().__init__(num_entities, num_relations, 2 * dim, shared=True)

    def score(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        (ar, ai), (br, bi), (cr, ci) = (x.chunk(2, dim=-1) for x in (a, b, c))
        return (ar * br * cr + ai * br * ci + ar * bi * ci - ai * bi * cr).sum(-1)


class TuckER(TripleModel):
    """TuckER (Balazevic et al., EMNLP 2019): W x1 r x2 h x3 t with a learned core W (dim^3),
    without the paper's dropout and batch normalisation."""

    def __init__(self, num_entities: int, num_relations: int, dim: int) -> None:
        super().__init__()
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, dim)
        self.core = nn.Parameter(torch.empty(dim, dim, dim).uniform_(-1, 1) / dim)

    def score_all(self, q: Tensor, d: int) -> Tensor:
        if d == 0:
            v = torch.einsum("bi,ijk,bj->bk", self.relation(q[:, 1]), self.core, self.entity(q[:, 0]))
        else:
            v = torch.einsum("bi,ijk,bk->bj", self.relation(q[:, 0]), self.core, self.entity(q[:, 1]))
        return v @ self.entity.weight.t()


BASELINES: dict[str, type] = {"cp": CP, "distmult": DistMult, "complex": ComplEx, "tucker": TuckER}


class CompositionNetwork(SearchNetwork):
    """The searched space: one row of alphas over ``candidates`` (names of ``SPACE``), each
    scored as ``w_m . m(a, b, c)`` with its own output vector ``w_m`` (ones at the start, so
    ``multiply(a,b,c)`` starts as CP); the core's rule mixes the row. Heads and tails share the
    entity ids but have a table each (a = head, c = tail roles), as CP."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, candidates: Sequence[str]) -> None:
        super().__init__()
        self.entity = _table(num_entities, dim)
        self.relation = _table(num_relations, dim)
        self.tail = _table(num_entities, dim)
        self.candidates = [check_candidate(name) for name in candidates]
        self.alpha = nn.Parameter(torch.full((1, len(self.candidates)), 1.0 / len(self.candidates)))
        self.outputs = nn.ParameterList([nn.Parameter(torch.ones(SPACE[n].width(dim))) for n in self.candidates])

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    @torch.no_grad()
    def reset_weights(self) -> None:
        """The weights as built (random search trains each candidate from this start)."""
        for table in (self.entity, self.relation, self.tail):
            nn.init.normal_(table.weight, std=0.1)
        for w in self.outputs:
            w.fill_(1.0)

    def score_all(self, q: Tensor, d: int) -> Tensor:
        a, b, c = vectors(self.entity, self.relation, self.tail, q, d)
        p = plan(self.alpha, self.mixing)
        fns = [lambda m=SPACE[n], w=w: (m(a, b, c) * w).sum(-1) for n, w in zip(self.candidates, self.outputs)]
        out = mix(fns, p, 0)
        if out is None:
            raise NaspError("no candidate of the 3-way space is selected")
        return out

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        alpha = (list(alphas) if alphas is not None else self.arch_parameters())[0].detach().cpu()
        return {"interaction": self.candidates[int(alpha[0].argmax())], "alpha": alpha[0].tolist(),
                "probabilities": torch.softmax(alpha[0], -1).tolist()}


def check_candidate(name: str) -> str:
    if name not in SPACE:
        raise NaspError(f"unknown 3-way composition {name!r}; e.g. {', '.join(list(SPACE)[:3])} ... ({len(SPACE)} in all)")
    return name


@dataclass
class TensorConfig:
    """A model of the 3-way space: ``model`` a baseline name, a composition of ``SPACE``, or
    ``search`` (every composition, one row of alphas)."""

    model: str
    num_entities: int
    num_relations: int
    dim: int = 64
    space: str = "tensor"
    ways: int = 3

    def build(self) -> TripleModel:
        if self.model in BASELINES:
            return BASELINES[self.model](self.num_entities, self.num_relations, self.dim)
        names = list(SPACE) if self.model == "search" else [check_candidate(self.model)]
        return CompositionNetwork(self.num_entities, self.num_relations, self.dim, names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TensorConfig":
        try:
            return cls(str(d["model"]), int(d["num_entities"]), int(d["num_relations"]), int(d.get("dim", 64)))
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


def filtered_ranks(model: TripleModel, triples: Tensor, every_known: Tensor, batch_size: int = 512) -> Tensor:
    """The filtered rank of each triple's tail (given head, relation) then of its head (given
    relation, tail): 1 + entities scored higher + half the others scored equal, after removing
    every other answer the query has in ``every_known``."""
    ranks = []
    device = next(model.parameters(), torch.zeros(0)).device
    with torch.no_grad():
        for d in (0, 1):
            answers = known_answers(every_known, d)
            for rows in triples.split(batch_size):
                q = rows[:, :2] if d == 0 else rows[:, 1:]
                target = rows[:, 2] if d == 0 else rows[:, 0]
                scores = model.score_all(q.to(device), d).float().cpu()
                mask = torch.zeros_like(scores, dtype=torch.bool)
                for i, key in enumerate(q.tolist()):
                    mask[i, answers.get(tuple(key), [])] = True
                mask[torch.arange(len(rows)), target] = False
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
    model.eval()
    try:
        return metrics(filtered_ranks(model, getattr(splits, part), splits.all_triples()), part)
    finally:
        model.train()


@dataclass
class TensorSettings:
    """Optimisation of a 3-way run: Adam with ``lr``, L2 ``reg`` (weight decay), ``batch_size``
    queries per step, early stopping after ``patience`` epochs without a better validation MRR."""

    lr: float = 0.02
    reg: float = 0.0
    batch_size: int = 128
    arch_lr: float = 3e-3
    max_epochs: int = 200
    patience: int = 10


def _problem(net: nn.Module, s: TensorSettings, options: Optional[dict] = None) -> SearchProblem:
    return SearchProblem(network=net, loss=loss_fn, metric="valid_mrr", higher_is_better=True,
                         weight_optimizer=lambda params: torch.optim.Adam(params, lr=s.lr, weight_decay=s.reg),
                         arch_lr=s.arch_lr, options=options or {})


def train(run: RunDir, splits: TripleSplits, config: TensorConfig, s: TensorSettings, seed: int,
          stage: str = "train", device: Optional[torch.device] = None) -> tuple[TripleModel, dict]:
    """Train one fixed model with early stopping on validation MRR (best epoch restored)."""
    if config.model == "search":
        raise NaspError("train a fixed model: a baseline or one composition")
    net = config.build().to(device or "cpu")
    stopper = EarlyStopping("valid_mrr", True, s.patience) if len(splits.valid) else None
    strat = build_strategy("fixed", _problem(net, s), s.max_epochs)
    t0 = time.perf_counter()
    rows = run_search(strat, query_batches(splits.train, splits.train, splits.num_entities, s.batch_size, seed), None,
                      lambda model: evaluate(model, splits, "valid"), s.max_epochs, run, early_stopping=stopper,
                      stage=stage)
    summary = {"interaction": config.model, **evaluate(net, splits, "valid"), **evaluate(net, splits, "test"),
               "epochs_trained": len(rows), "best_epoch": (stopper.best_epoch if stopper else len(rows) - 1) + 1,
               "params": sum(p.numel() for p in net.parameters()), "train_seconds": round(time.perf_counter() - t0, 3)}
    return net, summary


def search(run: RunDir, splits: TripleSplits, config: TensorConfig, s: TensorSettings, strategy: str, epochs: int,
           seed: int, options: Optional[dict] = None, device: Optional[torch.device] = None) -> dict:
    """Search the composition by ``strategy`` (the core's); returns the arch (written to arch.json)."""
    if not len(splits.valid):
        raise NaspError("the search needs validation data: use --valid-ratio > 0 or --valid-data")
    net = config.build().to(device or "cpu")
    strat = build_strategy(strategy, _problem(net, s, {"seed": seed, **(options or {})}), epochs)
    known_valid = torch.cat([splits.train, splits.valid])
    t0 = time.perf_counter()
    rows = run_search(strat, query_batches(splits.train, splits.train, splits.num_entities, s.batch_size, seed),
                      query_batches(splits.valid, known_valid, splits.num_entities, s.batch_size, seed + 1),
                      lambda model: evaluate(model, splits, "valid"), epochs, run, stage="search")
    derived = net.derive(strat.derive_alphas())
    # as the 2-way search: the architecture of the best validated search epoch (warm-up excluded)
    best = best_search_epoch(rows, "valid_mrr", True) if not strat.selects_on_validation else None
    if best is not None:
        derived["interaction"] = best["architecture"]["interaction"]
    arch = {"format": ARCH_FORMAT, "ways": 3, "task": "ranking", "strategy": strategy, **derived,
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
    """model.pt: the config, the weights and the raw ids (and every known triple, never recommended)."""
    save_torch(path, {"ways": 3, "config": config.to_dict(), "state": {k: v.cpu() for k, v in net.state_dict().items()},
                      "entities": splits.entities, "relations": splits.relations, "known": splits.all_triples().cpu()})


def is_triple_model(path: Path | str) -> bool:
    """Whether ``path`` is a saved 3-way model (read memory-mapped: cheap for large files);
    False for anything else, including a file that cannot be read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(saved, dict) and saved.get("ways") == 3


class TripleRecommender:
    """A saved 3-way model: the top tails of a (head, relation) pair, known tails left out."""

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
            self.config = TensorConfig.from_dict(saved["config"])
            self.net = self.config.build()
            self.net.load_state_dict(saved["state"])
            self.entities, self.relations = list(saved["entities"]), list(saved["relations"])
            known = saved["known"].long()
            if known.numel() and (int(known.min()) < 0 or int(known[:, [0, 2]].max()) >= len(self.entities)
                                  or int(known[:, 1].max()) >= len(self.relations)):
                raise ValueError("known triples out of range")
        except NaspError:
            raise
        except Exception as exc:
            raise NaspError(f"{file}: not a valid 3-way SIF model ({exc.__class__.__name__}: {exc})") from None
        self.net.eval()
        self.known = known_answers(known, 0)

    def recommend(self, head: str, relation: str, k: int = 10) -> list[dict]:
        """The ``k`` best tails of (head, relation) never seen with it."""
        try:
            h, r = self.entities.index(head), self.relations.index(relation)
        except ValueError:
            raise NaspError(f"unknown pair ({head}, {relation}): the model knows {len(self.entities)} heads and "
                            f"{len(self.relations)} relations") from None
        with torch.no_grad():
            scores = self.net.score_all(torch.tensor([[h, r]]), 0)[0]
        scores[self.known.get((h, r), [])] = -math.inf
        top = scores.topk(min(k, len(scores)))
        return [{"rank": i + 1, "item": self.entities[j], "score": float(s)}
                for i, (s, j) in enumerate(zip(top.values.tolist(), top.indices.tolist())) if s > -math.inf]


def fit(run: RunDir, splits: TripleSplits, model: Optional[str], arch: Optional[dict], s: TensorSettings, dim: int,
        strategy: str, epochs: int, seed: int, options: Optional[dict] = None, device: Optional[torch.device] = None,
        retrain: bool = True) -> dict:
    """A whole 3-way job in ``run``: search (``model`` and ``arch`` None) then retrain (unless
    ``retrain`` is off), or train ``model`` / the composition of ``arch``; writes model.pt
    (when it trains); returns the summary."""
    t0 = time.perf_counter()
    summary: dict = {"task": "ranking", "ways": 3, "entities": splits.num_entities, "relations": splits.num_relations,
                     "train_triples": len(splits.train), "valid_triples": len(splits.valid), "test_triples": len(splits.test)}
    base = TensorConfig("search", splits.num_entities, splits.num_relations, dim)
    if model is None and arch is None:
        arch = search(run, splits, base, s, strategy, epochs, seed, options, device)
        summary.update({"searched_interaction": arch["interaction"], "search_seconds": arch["search_seconds"]})
        if not retrain:
            return {**summary, "seconds": round(time.perf_counter() - t0, 3)}
    name = model if model is not None else arch["interaction"]
    config = TensorConfig(name, splits.num_entities, splits.num_relations, dim)
    sub = run if model is not None or "searched_interaction" not in summary else _subrun(run, "retrain")
    net, trained = train(sub, splits, config, s, seed, device=device)
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
UNUSED = ("choices", "folds", "loss", "negatives", "topk", "min_rating", "split", "columns", "implicit", "head", "biases",
          "history_refreshes", "implicit_reg", "baselines", "warm_start", "mlp_on_valid", "amp", "gcn_layers", "ease_lambda",
          "knn_neighbours", "knn_shrink", "refit")


def check_options(o: Any) -> None:
    """What ``--ways`` allows of the other ``SIFOptions``: one clear error otherwise."""
    ways = check_ways(o.ways)
    if ways == 2:
        if o.ifc in BASELINES:
            raise NaspError(f"--ifc {o.ifc} is a 3-way model: use --ways 3")
        return
    if o.task != "ranking":
        raise NaspError("--ways 3 supports --task ranking (the knowledge-graph completion protocol) in this version")
    if o.ifc is not None and o.ifc not in BASELINES:
        raise NaspError(f"--ifc {o.ifc} is a 2-way model; with --ways 3 use one of {', '.join(BASELINES)} (or --arch)")
    defaults = {f.name: f.default for f in fields(o)}
    given = [name for name in (*UNUSED, "space") if getattr(o, name) != defaults[name]]
    if given:
        raise NaspError(f"--{given[0].replace('_', '-')} does not apply to --ways 3")


def settings_of(o: Any) -> TensorSettings:
    """The optimisation settings of ``SIFOptions`` (``None``: ``TensorSettings``' defaults)."""
    d = TensorSettings()
    pick = lambda name: getattr(d, name) if getattr(o, name) is None else getattr(o, name)  # noqa: E731
    return TensorSettings(lr=float(pick("lr")), reg=float(pick("reg")), batch_size=int(pick("batch_size")),
                          arch_lr=float(pick("arch_lr")), max_epochs=o.max_epochs, patience=o.patience)


def fit_options(run: RunDir, splits: TripleSplits, o: Any, arch: Optional[dict], warmup: Any,
                device: Optional[torch.device] = None) -> dict:
    """``fit`` with the options of a ``SIF`` (``SIFOptions``)."""
    options = {"warmup_epochs": warmup, **({"candidates": o.candidates} if o.candidates is not None else {})}
    dim = o.dim or (arch["model"].get("dim", 64) if arch else 64)
    return fit(run, splits, o.ifc, arch, settings_of(o), dim, o.get("strategy"), o.get("epochs"), o.seed, options, device, o.retrain)

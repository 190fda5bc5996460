"""Three-way models: the baselines (CP, DistMult, ComplEx, TuckER, an MLP), the searched
network of the space (``CompositionNetwork``) and the config that builds either."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from nasp import SearchNetwork, mix, plan
from nasp.errors import NaspError

from ..space import inner_box
from .space import HERMITIAN, PRODUCT, SPACE, check_candidate, hermitian, hermitian_all, product_all


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

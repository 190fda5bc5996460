"""The searched space of three-way SIF: the SIF paper's compositions ``op2(op1(x, y), z)`` over
every pairing, the 3-way product (CP) among them, and ComplEx's Hermitian product; each scores
every entity of a query without a (queries x entities x dim) tensor where its form allows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from nasp.errors import NaspError


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


PRODUCT = "multiply(a,b,c)"


def check_candidate(name: str) -> str:
    if name not in SPACE:
        raise NaspError(f"unknown 3-way composition {name!r}; e.g. {', '.join(list(SPACE)[:3])} ... ({len(SPACE)} in all)")
    return name

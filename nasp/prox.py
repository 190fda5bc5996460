"""Proximal operators of NASP (REFERENCE §1): pure tensor functions, no state.

The last dimension of an architecture tensor indexes the candidate operations; every other
dimension indexes rows (edges). ``onehot`` is prox onto C1 (one non-zero per row), ``box`` is
prox onto C2 (clamp), ``topk_per_node`` is the cell variant of C1 that also keeps only the
best ``k`` incoming edges of every node.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .errors import DivergedError


def _check_finite(a: Tensor) -> None:
    if torch.isnan(a).any():
        raise DivergedError("architecture values contain NaN; the search diverged (lower the learning rate)")


def onehot(a: Tensor) -> Tensor:
    """Per row, the arg-max entry becomes 1 and every other entry 0.

    Ties go to the lowest index (``torch.argmax`` returns the first maximum). NaN raises
    ``ValueError``. The kept entry is set to 1, not to its value (BinaryConnect, as the authors).
    """
    _check_finite(a)
    out = torch.zeros_like(a)
    return out.scatter_(-1, a.argmax(dim=-1, keepdim=True), 1.0)


def box(a: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """Clamp every entry to ``[low, high]`` (prox onto C2)."""
    return a.clamp(low, high)


def node_slices(edges_per_node: Sequence[int]) -> list[slice]:
    """Row ranges of each node's incoming edges, rows laid out node after node."""
    slices, start = [], 0
    for n in edges_per_node:
        slices.append(slice(start, start + n))
        start += n
    return slices


def select_edges(scores: Tensor, edges_per_node: Sequence[int], k: int) -> list[list[int]]:
    """Indices (global rows) of the ``k`` best-scoring incoming edges of every node.

    ``scores`` holds one value per row. Ties go to the lower edge index (stable sort). A node
    with fewer than ``k`` incoming edges keeps them all.
    """
    if scores.dim() != 1 or scores.numel() != sum(edges_per_node):
        raise ValueError(f"expected {sum(edges_per_node)} edge scores, got shape {tuple(scores.shape)}")
    kept = []
    for sl in node_slices(edges_per_node):
        order = torch.sort(scores[sl], descending=True, stable=True).indices[:k]
        kept.append(sorted(sl.start + int(i) for i in order))
    return kept


def topk_per_node(a: Tensor, edges_per_node: Sequence[int], k: int = 2) -> Tensor:
    """Cell projection: one-hot every row, then keep only the top-``k`` incoming edges per node.

    Edges are ranked by the value of their arg-max entry; the other edges become all-zero, so
    the result is already a valid discrete cell (REFERENCE §1, prox onto C1 for cells).
    """
    if a.dim() != 2 or a.shape[0] != sum(edges_per_node):
        raise ValueError(
            f"architecture of shape {tuple(a.shape)} does not fit a cell with {sum(edges_per_node)} edges"
        )
    _check_finite(a)
    keep = torch.zeros(a.shape[0], dtype=torch.bool)
    for rows in select_edges(a.detach().max(dim=-1).values.cpu(), edges_per_node, k):
        keep[rows] = True
    return onehot(a) * keep.to(a.device).unsqueeze(-1).to(a.dtype)


class CellProjection:
    """``topk_per_node`` bound to one cell shape: a picklable ``discretize`` for ``Architect``."""

    def __init__(self, edges_per_node: Sequence[int], k: int = 2) -> None:
        self.edges_per_node = list(edges_per_node)
        self.k = k

    def __call__(self, a: Tensor) -> Tensor:
        return topk_per_node(a, self.edges_per_node, self.k)

    def __repr__(self) -> str:
        return f"CellProjection(edges_per_node={self.edges_per_node}, k={self.k})"

"""Recurrent search spaces (REFERENCE §1, RNN space) and the registry of node activations.

A space is a number of intermediate nodes plus a list of activations. Node ``i`` (0-based, the
``i``-th intermediate node) picks one predecessor among the ``i + 1`` earlier states (state 0 is
the initial state computed from the input and the previous hidden state) and one activation.
The architecture tensor has one row per (node, predecessor) pair, laid out node after node, and
one column per activation. Adding a space is one ``register_space`` call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..registry import Registry

Activation = Callable[[Tensor], Tensor]

ACTIVATIONS: Registry = Registry("activation")
ACTIVATIONS.register("tanh")(torch.tanh)
ACTIVATIONS.register("relu")(torch.relu)
ACTIVATIONS.register("sigmoid")(torch.sigmoid)
ACTIVATIONS.register("identity")(lambda x: x)


@dataclass(frozen=True)
class RecurrentSpace:
    """``steps`` intermediate nodes, each choosing one earlier state and one of ``activations``."""

    name: str
    steps: int
    activations: tuple[str, ...]

    def __post_init__(self) -> None:
        for act in self.activations:
            ACTIVATIONS.get(act)  # unknown names fail at registration time

    @property
    def edges_per_node(self) -> list[int]:
        """Incoming candidate edges of every node: node i has i + 1 predecessors."""
        return [i + 1 for i in range(self.steps)]

    @property
    def num_rows(self) -> int:
        return sum(self.edges_per_node)

    def row(self, node: int, pred: int) -> int:
        """Row of the architecture tensor for (node, predecessor)."""
        return node * (node + 1) // 2 + pred

    def first_row(self, node: int) -> int:
        return self.row(node, 0)


SPACES: Registry = Registry("RNN search space")


def register_space(space: RecurrentSpace) -> RecurrentSpace:
    SPACES.register(space.name)(space)
    return space


#: the DARTS recurrent space without DARTS' ``none`` op (as in REFERENCE §1).
DARTS_SPACE = register_space(RecurrentSpace("darts", 8, ("tanh", "relu", "sigmoid", "identity")))
#: a smaller space, handy for quick experiments and tests.
register_space(RecurrentSpace("small", 4, ("tanh", "relu", "sigmoid", "identity")))

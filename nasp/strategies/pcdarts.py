"""PC-DARTS (Xu et al., ICLR 2020) as a baseline: partial channel connections and edge
normalisation on DARTS' first-order search.

Two changes of the network, which ``nasp cnn search --strategy pcdarts`` builds
(``CNNSearchNetwork(partial_channels=K, edge_normalization=True)``, ``nasp.cnn.search_net``):

* partial channel connections: each edge sends 1/K of its channels through its candidate ops
  (``--partial-channels K``, 4 by default with this strategy: the paper's K on CIFAR-10); the
  rest bypass them and a channel shuffle follows, so the supernet needs about 1/K of DARTS'
  memory and time on its edges;
* edge normalisation: one parameter beta per edge, softmax-ed over the incoming edges of each
  node, multiplies the edge's output (it steadies the choice of edges, which the sampled
  channels would otherwise make noisy).

The step is first-order DARTS' (``darts``): an Adam step of the alphas and the betas on a
validation batch, an SGD step of the weights on a training batch, both through the softmax
supernet; it validates that supernet. The exported cell is PC-DARTS' derivation: per edge the
op weights ``softmax(alpha)`` times the edge's weight ``softmax(beta)``; per node the two edges
whose largest product is highest, on each its arg-max op (under a budget: the budgeted
projection of the same products).

Not reproduced: the paper's warm-up (15 of its 50 epochs train the weights before the
architecture moves) and its larger batch and learning rate (which its memory saving allows:
set them with ``--batch-size`` and ``--lr``). PC-DARTS is defined on the channels and edges of a
CNN cell: the SIF and RNN commands refuse it by name (``Strategy.domains``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import NaspError
from .base import SearchProblem
from .darts import DARTS
from .registry import STRATEGIES

PARTIAL_CHANNELS = 4
"""K, the share 1/K of each edge's channels that goes through its ops: the paper's on CIFAR-10
(``--partial-channels``' default with ``--strategy pcdarts``)."""


@STRATEGIES.register("pcdarts")
class PCDARTS(DARTS):
    """First-order DARTS on a network with partial channels and edge normalisation; exports by
    ``softmax(alpha) x softmax(beta)``. The network must offer edge normalisation
    (``edge_weights()``; ``CNNSearchNetwork(edge_normalization=True)``)."""

    domains = frozenset({"cnn"})
    domain_note = ("PC-DARTS' partial channel connections and edge normalisation act on the channels and the edges of a CNN "
                   "cell, which this search does not have")
    edge_normalization = True

    def __init__(self, problem: SearchProblem, epochs: int) -> None:
        if not getattr(problem.network, "edge_normalization", False) or not hasattr(problem.network, "edge_weights"):
            raise NaspError("strategy 'pcdarts' needs a search network with edge normalisation (edge_weights(); "
                            "nasp cnn search builds one: CNNSearchNetwork(edge_normalization=True))")
        super().__init__(problem, epochs)  # the alphas and the betas (arch extras) share the Adam step

    def projected_values(self, alphas: Sequence[Tensor]) -> list[Tensor]:
        """Per edge ``softmax(alpha)`` times the edge's weight ``softmax(beta)`` over its node's
        inputs: the weights PC-DARTS derives its cell from."""
        edges = self.network.edge_weights()
        return [torch.softmax(a.detach().float().cpu(), dim=-1) * e.detach().float().cpu()[:, None]
                for a, e in zip(alphas, edges)]

    def architecture_of(self, alphas: Sequence[Tensor]) -> Any:
        """PC-DARTS' derivation: DARTS' rule (top-2 edges per node, arg-max op) on the products
        ``softmax(alpha) x softmax(beta)``; under a budget, the budgeted projection of them."""
        if self.network.budget is None:
            return self.network.derive_weights(self.projected_values(alphas))
        return self.network.export(self.network.budget(self.projected_values(alphas)), alphas)

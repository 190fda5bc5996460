"""The CNN search network (DARTS' supernet, driven by any core strategy).

Every cell has two inputs, ``steps`` intermediate nodes and one edge from every earlier state to
every node (14 edges for 4 nodes), laid out node after node: the rows of the architecture tensor
``alpha_normal`` / ``alpha_reduce`` (edges x ops). The network calls ``nasp.mixing.plan`` once per
cell type per forward and ``mix`` once per edge, so NASP's weight step (``Mixing.SINGLE``) runs
only the selected op of every kept edge and its architecture step (``Mixing.ACTIVE``) runs the
same forward, the other ops in the backward pass without autograd (for their alphas' gradient). A dropped edge contributes nothing; a node with no kept input is
zeros of the right shape.

Two options of PC-DARTS (Xu et al., ICLR 2020), off by default:

* ``partial_channels=K``: partial channel connections. Each edge sends only the first ``C / K``
  of its ``C`` input channels through its candidate ops (built ``C / K`` wide); the other
  channels bypass them (max-pooled 2 x 2 on a stride-2 edge, so that the shapes agree) and are
  concatenated after the ops' output, followed by a channel shuffle of ``K`` groups, so that the
  next edge sends a different share through its ops.
* ``edge_normalization=True``: one parameter per edge (``beta_normal`` / ``beta_reduce``, the
  network's ``arch_extra_parameters()``), softmax-ed over the incoming edges of each node; every
  edge's output is multiplied by its weight. ``edge_weights()`` gives those weights (PC-DARTS'
  derivation ranks the edges by them times the op weights).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import prox
from ..mixing import MixPlan, mix, plan
from ..network import SearchNetwork
from .genotypes import Genotype
from .ops import OPS, FactorizedReduce, ReLUConvBN, nchw
from .spaces import SPACES, Space


def edges_per_node(steps: int) -> list[int]:
    """Incoming edges of every intermediate node: 2, 3, ..., steps + 1."""
    return [2 + i for i in range(steps)]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """The channels of ``x`` (N, C, H, W) regrouped: channel ``g * C / groups + j`` moves to
    ``j * groups + g`` (ShuffleNet's shuffle, as PC-DARTS applies it after each edge)."""
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SearchEdge(nn.Module):
    """Every candidate op of one edge (pools followed by a non-affine batch norm).

    With ``partial_channels`` K > 1 the ops are ``channels / K`` wide and see only the first
    ``channels / K`` input channels; the rest bypass them (PC-DARTS: ``forward``)."""

    def __init__(self, op_names: Sequence[str], channels: int, stride: int, partial_channels: int = 1) -> None:
        super().__init__()
        if partial_channels < 1 or channels % partial_channels:
            raise ValueError(f"partial_channels {partial_channels} must be at least 1 and divide the edge's {channels} channels")
        self.stride, self.partial_channels = stride, partial_channels
        width = channels // partial_channels
        ops = []
        for name in op_names:
            spec = OPS.get(name)
            op = spec.build(width, stride, False)
            if spec.is_pool:
                op = nn.Sequential(op, nn.BatchNorm2d(width, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def candidates(self, x: Tensor) -> list:
        return [functools.partial(op, x) for op in self.ops]

    def _like(self, x: Tensor) -> Tensor:
        """A tensor of the shape of the ops' output on ``x`` (uninitialised; for ``mix``'s zero rows)."""
        if self.stride == 1:
            return x
        n, c, h, w = x.shape
        return x.new_empty(n, c, -(-h // self.stride), -(-w // self.stride))

    def forward(self, x: Tensor, p: MixPlan, row: int) -> Optional[Tensor]:
        """The edge's mix of its candidates on ``x`` under plan ``p`` (None: a dropped edge).
        With partial channels: the mix of the first ``C / K`` channels, the others (pooled on a
        stride-2 edge) concatenated after it, the whole shuffled in ``K`` groups."""
        k = self.partial_channels
        if k == 1:
            return mix(self.candidates(x), p, row, like=self._like(x))
        width = x.shape[1] // k
        out = mix(self.candidates(x[:, :width]), p, row, like=self._like(x[:, :width]))
        if out is None:
            return None
        rest = x[:, width:]
        if self.stride > 1:  # ceil_mode: ceil(H / 2), the stride-2 ops' output size
            rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
        return channel_shuffle(torch.cat([out, rest], dim=1), k)


class SearchCell(nn.Module):
    """One cell of the supernet; reads its mixing from a ``MixPlan`` of its cell type."""

    def __init__(self, op_names: Sequence[str], steps: int, multiplier: int, c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool, partial_channels: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.channels = c
        self.pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(SearchEdge(op_names, c, stride, partial_channels))

    def forward(self, s0: Tensor, s1: Tensor, p: MixPlan, edge_weights: Optional[Tensor] = None) -> Tensor:
        """``edge_weights`` (one per edge, PC-DARTS' edge normalisation): each edge's output times its weight."""
        states = [self.pre0(s0), self.pre1(s1)]
        b, _, h, w = states[1].shape
        node_shape = (b, self.channels, (h + 1) // 2, (w + 1) // 2) if self.reduction else (b, self.channels, h, w)
        row = 0
        for _ in range(self.steps):
            total: Optional[Tensor] = None
            for state in list(states):
                out = self.edges[row](state, p, row)
                if out is not None and edge_weights is not None:
                    out = edge_weights[row] * out
                row += 1
                if out is not None:
                    total = out if total is None else total + out
            states.append(total if total is not None else states[1].new_zeros(node_shape))
        return torch.cat(states[-self.multiplier:], dim=1)


class CNNSearchNetwork(SearchNetwork):
    """Stem (3x3 conv to ``stem_multiplier * C``), ``layers`` cells (reductions at 1/3 and 2/3 of the
    depth double the channels), global average pooling, linear classifier.

    Args:
        space: a ``Space`` or the name of a registered one.
        channels: initial channels C (16 in the paper).
        layers: number of cells (8 in the paper).
        num_classes, in_channels: of the data.
        steps: intermediate nodes per cell (4); ``multiplier`` of them are concatenated.
        partial_channels: PC-DARTS' K: each edge's ops see 1/K of its channels (1: all, the default).
        edge_normalization: PC-DARTS' per-edge weights (``beta_normal`` / ``beta_reduce``).
    """

    def __init__(self, space: Space | str = "darts", channels: int = 16, layers: int = 8, num_classes: int = 10,
                 in_channels: int = 3, steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                 init_noise: float = 1e-3, partial_channels: int = 1, edge_normalization: bool = False) -> None:
        super().__init__()
        if channels < 1 or layers < 1:
            raise ValueError("channels and layers must be positive")
        if partial_channels < 1 or channels % partial_channels:
            raise ValueError(f"partial_channels {partial_channels} must be at least 1 and divide channels {channels}")
        self.partial_channels, self.edge_normalization = partial_channels, edge_normalization
        self.space = SPACES.get(space) if isinstance(space, str) else space
        self.channels, self.layers, self.steps, self.multiplier = channels, layers, steps, multiplier
        self.num_classes, self.in_channels = num_classes, in_channels
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(self.space.ops(reduction), steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev,
                                         partial_channels))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        rows = sum(edges_per_node(steps))
        self.alpha_normal = nn.Parameter(0.5 + init_noise * torch.randn(rows, len(self.space.normal)))
        self.alpha_reduce = nn.Parameter(0.5 + init_noise * torch.randn(rows, len(self.space.reduce)))
        if edge_normalization:  # PC-DARTS' initialisation: near 0, uniform weights over each node's inputs
            self.beta_normal = nn.Parameter(init_noise * torch.randn(rows))
            self.beta_reduce = nn.Parameter(init_noise * torch.randn(rows))

    # the SearchNetwork contract -------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def arch_extra_parameters(self) -> list[nn.Parameter]:
        """The edge parameters of edge normalisation (none without it): searched with the
        alphas, never projected."""
        return [self.beta_normal, self.beta_reduce] if self.edge_normalization else []

    def edge_weights(self, betas: Optional[Sequence[Tensor]] = None) -> Optional[list[Tensor]]:
        """Per cell type (normal, reduce) the weight of every edge: the softmax of its beta over
        the incoming edges of its node (None without edge normalisation)."""
        if not self.edge_normalization:
            return None
        betas = self.arch_extra_parameters() if betas is None else betas
        return [torch.cat([torch.softmax(beta[sl], dim=-1) for sl in prox.node_slices(edges_per_node(self.steps))])
                for beta in betas]

    def discretizers(self) -> list[prox.CellProjection]:
        projection = prox.CellProjection(edges_per_node(self.steps), k=2)
        return [projection, projection]

    def forward(self, x: Tensor) -> Tensor:
        plans = {False: plan(self.alpha_normal, self.mixing), True: plan(self.alpha_reduce, self.mixing)}
        edges = self.edge_weights()
        weights = {False: edges[0], True: edges[1]} if edges is not None else {False: None, True: None}
        s0 = s1 = self.stem(nchw(x))
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, plans[cell.reduction], weights[cell.reduction])
        return self.classifier(self.pool(s1).flatten(1))

    def derive(self, alphas: Optional[Sequence[Tensor]] = None) -> dict:
        """DARTS' genotype as JSON: per edge softmax, top-2 incoming edges per node by their
        largest probability, arg-max op on each kept edge (REFERENCE §1, "Deriving": DARTS only)."""
        return self.genotype(alphas).to_json()

    def export(self, discrete: Sequence[Tensor], continuous: Optional[Sequence[Tensor]] = None) -> dict:
        """The genotype a projection prox_C1 holds: on every kept (non-zero) edge, its op. This
        is the cell NASP trained and validated (REFERENCE §1, "Deriving": NASP)."""
        cells = []
        for value, names in zip(discrete, (self.space.normal, self.space.reduce)):
            value = value.detach().cpu()
            edges = []
            for sl in prox.node_slices(edges_per_node(self.steps)):
                for r in range(sl.start, sl.stop):
                    if value[r].amax() > 0:
                        edges.append((names[int(value[r].argmax())], r - sl.start))
            cells.append(edges)
        concat = list(range(2 + self.steps - self.multiplier, 2 + self.steps))
        return Genotype.build(cells[0], concat, cells[1], concat, "exported genotype").to_json()

    def alphas_of(self, genotype: Genotype) -> list[Tensor]:
        """Discrete architecture values holding ``genotype`` (the inverse of ``export``)."""
        out = []
        for reduction, names in ((False, self.space.normal), (True, self.space.reduce)):
            edges, _ = genotype.cell(reduction)
            value = torch.zeros(sum(edges_per_node(self.steps)), len(names))
            starts = [sl.start for sl in prox.node_slices(edges_per_node(self.steps))]
            for n, (op, source) in enumerate(edges):
                value[starts[n // 2] + source, names.index(op)] = 1.0
            out.append(value.to(self.alpha_normal.device))
        return out

    def derive_weights(self, weights: Sequence[Tensor]) -> dict:
        """DARTS' derivation rule on given op weights (rows x ops per cell type) instead of the
        alphas' softmax: top-2 incoming edges per node by their largest weight, arg-max op on
        each. PC-DARTS derives from softmax(alpha) times each edge's weight (``edge_weights``)."""
        return self.genotype_of_weights(weights).to_json()

    def genotype(self, alphas: Optional[Sequence[Tensor]] = None) -> Genotype:
        alphas = list(alphas) if alphas is not None else [a.detach() for a in self.arch_parameters()]
        return self.genotype_of_weights([torch.softmax(a.detach().float().cpu(), dim=-1) for a in alphas])

    def genotype_of_weights(self, weights: Sequence[Tensor]) -> Genotype:
        cells = []
        for probs, names in zip(weights, (self.space.normal, self.space.reduce)):
            probs = probs.detach().float().cpu()
            kept = prox.select_edges(probs.max(dim=-1).values, edges_per_node(self.steps), 2)
            best = probs.argmax(dim=-1).tolist()
            edges = []
            for sl, rows in zip(prox.node_slices(edges_per_node(self.steps)), kept):
                edges.extend((names[best[r]], r - sl.start) for r in rows)
            cells.append(edges)
        concat = list(range(2 + self.steps - self.multiplier, 2 + self.steps))
        return Genotype.build(cells[0], concat, cells[1], concat, "derived genotype")

    # model size ------------------------------------------------------------------------------
    def op_params(self, reduction: bool = False) -> list[int]:
        """Parameter count of every candidate op of a cell type at the search width C."""
        return [OPS.get(name).params(self.channels) for name in self.space.ops(reduction)]

    def cell_params(self, genotype: Genotype, reduction: bool = False) -> int:
        """Parameters of a derived cell's chosen ops at the search width C."""
        edges, _ = genotype.cell(reduction)
        return sum(OPS.get(op).params(self.channels) for op, _ in edges)

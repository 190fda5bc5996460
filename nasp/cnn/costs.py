"""What a CNN cell costs in the network that will be trained, per op and position.

A cell type (normal or reduction) is used at several positions (layers) of a network; an op on
edge ``(node, source)`` of that cell runs at every one of them, with the position's channels and
resolution (stride 2 on the edges from the two cell inputs of a reduction cell). The cost of a
genotype is therefore additive: a fixed part (stem, the cells' preprocessing, classifier) plus,
for every kept edge, its op's cost summed over the positions of its cell type. ``NetworkCosts``
measures the positions and the fixed part of one network once and gives the tables that
``nasp.prox.BudgetedCellProjection`` needs.

Costs (``COST_METRICS``): ``params`` (parameters, as ``nasp.cnn.model.count_params``), ``madds``
(multiply-adds of one image through the convolutions and linear layers, as ``count_flops``), and
``latency`` (milliseconds per forward, from a table measured by ``nasp cnn profile-ops``:
each op timed alone at each position's shape, plus the fixed modules; the sum is a lookup-table
estimate, as in FBNet and ProxylessNAS: node sums and concatenations are not counted).

Networks (``NETWORKS``): ``eval`` (the evaluation network of ``nasp cnn train``) and ``search``
(the search network's shape: its width and depth, ops without batch-norm affine parameters).
"""
from __future__ import annotations

import functools
import math
import platform
import statistics
import time
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import prox
from ..errors import NaspError
from ..registry import Registry
from .genotypes import Genotype
from .model import MODELS, count_flops
from .ops import OPS
from .search_net import CNNSearchNetwork, edges_per_node
from .spaces import Space

LATENCY_TABLE_TYPE = "nasp-latency-table"
LATENCY_TABLE_VERSION = 1


@dataclass(frozen=True)
class CostNetwork:
    """The network whose cost a budget limits.

    Attributes:
        kind: a key of ``NETWORKS`` (``eval`` or ``search``).
        model: the evaluation network (``nasp.cnn.model.MODELS``: cifar, imagenet); ``search``
            networks always have the CIFAR layout.
        layers, channels: cells and initial channels.
        in_channels, num_classes, image_size: of the data.
        steps: intermediate nodes per cell.
    """

    kind: str
    model: str
    layers: int
    channels: int
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    steps: int = 4

    def describe(self) -> str:
        what = f"{self.model} evaluation network" if self.kind == "eval" else "search network"
        h, w = self.image_size
        return f"{what}, {self.layers} cells x {self.channels} channels, {self.in_channels}x{h}x{w} images"

    def short(self) -> str:
        return f"{self.kind} network {self.layers}x{self.channels}"

    def to_json(self) -> dict:
        return {**asdict(self), "image_size": list(self.image_size)}


@dataclass(frozen=True)
class OpShape:
    """One op at one input shape: the key of a latency table entry."""

    op: str
    channels: int
    stride: int
    height: int
    width: int

    def text(self) -> str:
        return f"{self.op} at {self.channels} channels, {self.height}x{self.width}, stride {self.stride}"


@dataclass(frozen=True)
class Position:
    """A cell of the network: its layer, type, channels and input resolution (of its preprocessed states)."""

    layer: int
    reduction: bool
    channels: int
    height: int
    width: int

    def shape(self, op: str, source: int) -> OpShape:
        """The shape op ``op`` runs at on an edge from state ``source`` (0, 1: the cell inputs)."""
        if self.reduction and source < 2:
            return OpShape(op, self.channels, 2, self.height, self.width)
        if self.reduction:  # the nodes of a reduction cell are at half the resolution
            return OpShape(op, self.channels, 1, (self.height + 1) // 2, (self.width + 1) // 2)
        return OpShape(op, self.channels, 1, self.height, self.width)


def reference_genotype(space: Space, steps: int) -> Genotype:
    """A valid genotype of ``space`` (every node: its cell's first pool, else first op, on inputs 0
    and 1): the positions and the fixed part do not depend on the ops."""
    def op(names: Sequence[str]) -> str:
        return next((n for n in names if OPS.get(n).is_pool), names[0])

    concat = list(range(2, 2 + steps))
    normal = [(op(space.normal), j) for _ in range(steps) for j in (0, 1)]
    reduce = [(op(space.reduce), j) for _ in range(steps) for j in (0, 1)]
    return Genotype.build(normal, concat, reduce, concat, "reference genotype")


@dataclass(frozen=True)
class NetworkKind:
    """How to build a cost network, whether its ops have affine batch norms, and the name
    fragment of the modules (and parameters) the architecture chooses."""

    build: Callable[[CostNetwork, Space], nn.Module]
    affine: bool
    chosen: str


def _build_eval(net: CostNetwork, space: Space) -> nn.Module:
    return _build_eval_of(net, reference_genotype(space, net.steps))


def _build_search(net: CostNetwork, space: Space) -> nn.Module:
    model = CNNSearchNetwork(space, channels=net.channels, layers=net.layers, num_classes=net.num_classes,
                             in_channels=net.in_channels, steps=net.steps, multiplier=net.steps)
    model.set_architecture(model.alphas_of(reference_genotype(space, net.steps)))  # single path: one op per edge
    return model


NETWORKS: Registry[NetworkKind] = Registry("cost network")
NETWORKS.register("eval")(NetworkKind(_build_eval, affine=True, chosen=".ops."))
NETWORKS.register("search")(NetworkKind(_build_search, affine=False, chosen=".edges."))


@functools.lru_cache(maxsize=None)
def op_madds(op: str, channels: int, stride: int, height: int, width: int, affine: bool) -> int:
    """Multiply-adds of one op on one ``channels x height x width`` input (a pure function, cached)."""
    return count_flops(OPS.get(op).build(channels, stride, affine), (channels, height, width), exclude=lambda name: False)


class NetworkCosts:
    """The positions and the fixed part of one cost network of one space, measured once (one
    forward pass of one image with hooks); ``cell_costs(metric)`` gives the projection's tables."""

    def __init__(self, space: Space, network: CostNetwork) -> None:
        self.space, self.network = space, network
        self.kind = NETWORKS.get(network.kind)
        model = self.kind.build(network, space).eval()
        chosen = self.kind.chosen

        def fixed(name: str) -> bool:
            return chosen not in name and not name.startswith(("alpha_", "auxiliary_head"))

        self.base_params = sum(p.numel() for name, p in model.named_parameters() if fixed(name))
        self.positions: list[Position] = []
        hooks = [cell.pre1.register_forward_hook(self._recorder(i, cell.reduction)) for i, cell in enumerate(model.cells)]
        try:
            h, w = network.image_size
            self.base_madds = count_flops(model, (network.in_channels, h, w), exclude=lambda name: not fixed(name))
        finally:
            for hook in hooks:
                hook.remove()
        self.edges_per_node = edges_per_node(network.steps)

    def _recorder(self, layer: int, reduction: bool) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple, out: Tensor) -> None:
            _, c, h, w = out.shape
            self.positions.append(Position(layer, reduction, int(c), int(h), int(w)))
        return record

    def sources(self) -> list[int]:
        """The source state of every row (rows node after node)."""
        return [j for n in self.edges_per_node for j in range(n)]

    def shapes(self, reduction: bool) -> list[list[list[OpShape]]]:
        """``[row][op]``: the shapes the op runs at, one per position of this cell type."""
        places = [p for p in self.positions if p.reduction == reduction]
        return [[[p.shape(op, source) for p in places] for op in self.space.ops(reduction)] for source in self.sources()]

    def needed(self) -> dict[OpShape, str]:
        """Every op shape of the space in this network (-> a position that uses it, for messages)."""
        out: dict[OpShape, str] = {}
        for reduction in (False, True):
            for row in self.shapes(reduction):
                for shapes in row:
                    for s in shapes:
                        out.setdefault(s, "reduction" if reduction else "normal")
        return out

    def table(self, reduction: bool, op_cost: Callable[[OpShape], float]) -> Tensor:
        """Rows x ops: each entry's cost summed over the positions of its cell type."""
        return torch.tensor([[sum(op_cost(s) for s in shapes) for shapes in row] for row in self.shapes(reduction)],
                            dtype=torch.float64)

    def cell_costs(self, metric: str, latency: Optional["LatencyTable"] = None) -> prox.CellCosts:
        """The (normal, reduce) entry tables and the fixed part of ``metric`` (a key of ``COST_METRICS``)."""
        m = COST_METRICS.get(metric)
        op_cost = m.op_cost(self, latency)
        return prox.CellCosts((self.table(False, op_cost), self.table(True, op_cost)), float(m.base(self, latency)))

    def genotype_cost(self, genotype: Genotype, costs: prox.CellCosts) -> float:
        """``costs`` of a genotype of this space: the fixed part plus every edge's entry."""
        starts = [sl.start for sl in prox.node_slices(self.edges_per_node)]
        total = costs.base
        for table, reduction in zip(costs.entries, (False, True)):
            edges, _ = genotype.cell(reduction)
            names = self.space.ops(reduction)
            for n, (op, source) in enumerate(edges):
                total += float(table[starts[n // 2] + source, names.index(op)])
        return total


@dataclass(frozen=True)
class CostMetric:
    """A cost a budget can limit: its option, its unit, its key in metrics rows and summaries,
    and how to get an op's cost at a shape and the fixed part."""

    flag: str
    unit: str
    key: str
    op_cost: Callable[[NetworkCosts, Optional["LatencyTable"]], Callable[[OpShape], float]]
    base: Callable[[NetworkCosts, Optional["LatencyTable"]], float]
    needs_table: bool = False


def _params(costs: NetworkCosts, latency: Optional["LatencyTable"]) -> Callable[[OpShape], float]:
    return lambda s: float(OPS.get(s.op).params(s.channels, s.stride, costs.kind.affine))


def _madds(costs: NetworkCosts, latency: Optional["LatencyTable"]) -> Callable[[OpShape], float]:
    return lambda s: float(op_madds(s.op, s.channels, s.stride, s.height, s.width, costs.kind.affine))


def _latency(costs: NetworkCosts, latency: Optional["LatencyTable"]) -> Callable[[OpShape], float]:
    if latency is None:
        raise NaspError("--max-latency-ms needs --latency-table (measure one with nasp cnn profile-ops)")
    return lambda s: latency.ms[s]


COST_METRICS: Registry[CostMetric] = Registry("cost metric")
COST_METRICS.register("params")(CostMetric("--max-params", "parameters", "params", _params, lambda c, t: c.base_params))
COST_METRICS.register("madds")(CostMetric("--max-madds", "multiply-adds", "madds", _madds, lambda c, t: c.base_madds))
COST_METRICS.register("latency")(CostMetric("--max-latency-ms", "ms", "latency_ms", _latency,
                                       lambda c, t: t.base_ms if t is not None else 0.0, needs_table=True))


# latency tables -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyTable:
    """Median forward milliseconds of every op at every shape of a network (``ms``), plus the
    fixed modules (``base_ms``: stem, each cell's two preprocessing ops, pooling and classifier),
    measured on one device at one batch size (``meta``)."""

    ms: dict[OpShape, float]
    base_ms: float
    meta: dict
    source: str = "latency table"

    def to_json(self) -> dict:
        entries = [{**asdict(s), "ms": v} for s, v in sorted(self.ms.items(), key=lambda kv: astuple(kv[0]))]
        return {"type": LATENCY_TABLE_TYPE, "version": LATENCY_TABLE_VERSION, "unit": "ms", **self.meta,
                "base_ms": self.base_ms, "ops": entries}

    @classmethod
    def from_json(cls, obj: Any, source: str) -> "LatencyTable":
        """A table from ``to_json``'s object; anything else is one ``NaspError`` naming ``source``."""
        if not isinstance(obj, dict) or obj.get("type") != LATENCY_TABLE_TYPE:
            raise NaspError(f"{source}: not a latency table (expected the JSON file written by nasp cnn profile-ops)")
        if obj.get("version") != LATENCY_TABLE_VERSION:
            raise NaspError(f"{source}: latency table version {obj.get('version')!r}, this nasp reads {LATENCY_TABLE_VERSION}")
        base = obj.get("base_ms")
        if not _positive_ms(base, allow_zero=True):
            raise NaspError(f"{source}: base_ms {base!r} is not a number of milliseconds >= 0")
        entries = obj.get("ops")
        if not isinstance(entries, list) or not entries:
            raise NaspError(f"{source}: 'ops' must be a non-empty list of entries")
        ms: dict[OpShape, float] = {}
        for i, e in enumerate(entries):
            shape = _entry_shape(e, f"{source}: ops[{i}]")
            if shape in ms:
                raise NaspError(f"{source}: ops[{i}]: a second entry for {shape.text()}")
            ms[shape] = float(e["ms"])
        meta = {k: v for k, v in obj.items() if k not in ("type", "version", "unit", "base_ms", "ops")}
        return cls(ms, float(base), meta, source)

    def check(self, costs: NetworkCosts) -> None:
        """The table must hold exactly the op shapes of ``costs``' space and network: an op the
        space lacks, a shape no position has, or a missing shape is one ``NaspError``."""
        space = costs.space
        ops = set(space.normal) | set(space.reduce)
        needed = costs.needed()
        profiled = _profiled(self.meta)
        for shape in self.ms:
            if shape.op not in ops:
                raise NaspError(f"{self.source}: op {shape.op!r} is not in space {space.name!r} ({', '.join(sorted(ops))}); "
                                f"the table was profiled for {profiled}")
        net = self.meta.get("network") if isinstance(self.meta.get("network"), dict) else {}
        same_data = (net.get("in_channels"), list(net.get("image_size") or []), net.get("num_classes")) == (
            costs.network.in_channels, list(costs.network.image_size), costs.network.num_classes)
        if self.meta.get("positions") != positions_json(costs.positions) or not same_data:
            raise NaspError(f"{self.source}: profiled for {profiled}, not for the {costs.network.describe()} "
                            f"({costs.network.num_classes} classes): its cells, channels or images differ; run nasp cnn "
                            f"profile-ops for this network")
        for shape in self.ms:
            if shape not in needed:
                raise NaspError(f"{self.source}: entry {shape.text()}: no position of the {costs.network.describe()} "
                                f"runs it (the table was profiled for {profiled})")
        for shape, cell in needed.items():
            if shape not in self.ms:
                raise NaspError(f"{self.source}: no latency for {shape.text()} (a {cell} cell of the "
                                f"{costs.network.describe()}); the table was profiled for {profiled}: run nasp cnn "
                                f"profile-ops with the search's --space and the cost network's layers and channels")


def positions_json(positions: Sequence[Position]) -> list[list]:
    """The positions of a network as a latency table records them."""
    return [[p.layer, p.reduction, p.channels, p.height, p.width] for p in positions]


def _positive_ms(value: Any, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0


def _entry_shape(e: Any, where: str) -> OpShape:
    if not isinstance(e, dict):
        raise NaspError(f"{where}: expected an object with op, channels, stride, height, width, ms")
    missing = [k for k in ("op", "channels", "stride", "height", "width", "ms") if k not in e]
    if missing:
        raise NaspError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(e["op"], str):
        raise NaspError(f"{where}: op {e['op']!r} is not a name")
    for k in ("channels", "stride", "height", "width"):
        if isinstance(e[k], bool) or not isinstance(e[k], int) or e[k] < 1:
            raise NaspError(f"{where}: {k} {e[k]!r} is not a positive whole number")
    if not _positive_ms(e["ms"], allow_zero=True):
        raise NaspError(f"{where}: ms {e['ms']!r} is not a number of milliseconds >= 0")
    return OpShape(e["op"], e["channels"], e["stride"], e["height"], e["width"])


def _profiled(meta: dict) -> str:
    net = meta.get("network") if isinstance(meta.get("network"), dict) else {}
    parts = [f"space {meta.get('space', '?')!r}"]
    if net:
        parts.append(f"{net.get('model', '?')} {net.get('kind', '?')} network, {net.get('layers', '?')} cells x "
                     f"{net.get('channels', '?')} channels, images {net.get('in_channels', '?')}x"
                     f"{'x'.join(map(str, net.get('image_size', ['?'])))}")
    return ", ".join(parts)


def read_latency_table(path: Path) -> LatencyTable:
    """Load a latency table file; a missing, malformed or foreign file is one ``NaspError``."""
    from ..runs import read_json

    return LatencyTable.from_json(read_json(path, "latency table"), str(path))


MAX_TABLE_BYTES = 64 * 2**20
"""A file larger than this is never taken for a latency table (``is_latency_table``)."""


def is_latency_table(path: Path) -> bool:
    """Whether ``path`` is a latency table file (``profile-ops --out`` overwrites only those)."""
    from ..errors import NaspError
    from ..runs import read_json

    path = Path(path)
    if not path.is_file() or path.stat().st_size > MAX_TABLE_BYTES:
        return False
    try:
        obj = read_json(path, "latency table")
    except NaspError:
        return False
    return isinstance(obj, dict) and obj.get("type") == LATENCY_TABLE_TYPE


def write_latency_table(table: LatencyTable, path: Path) -> None:
    from ..runs import write_json_atomic

    write_json_atomic(Path(path), table.to_json())  # a failed write is one NaspError naming the file


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def median_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall milliseconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs (the device
    synchronised around each timed run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        t0 = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def probe_genotypes(space: Space, steps: int) -> list[Genotype]:
    """Genotypes that together run every op of ``space`` at every shape: genotype ``j`` puts op
    ``j`` (cycling) on every edge of its cell type, node ``i`` reading states ``i`` and ``i + 1`` (so
    a reduction cell has edges of stride 2 and of stride 1)."""
    concat = list(range(2, 2 + steps))
    out = []
    for j in range(max(len(space.normal), len(space.reduce))):
        normal = [(space.normal[j % len(space.normal)], s) for i in range(steps) for s in (i, i + 1)]
        reduce = [(space.reduce[j % len(space.reduce)], s) for i in range(steps) for s in (i, i + 1)]
        out.append(Genotype.build(normal, concat, reduce, concat, "probe genotype"))
    return out


def _eval_ops(model: nn.Module, genotype: Genotype) -> list[tuple[int, str, int, nn.Module]]:
    """(layer, op, source, module) of every chosen op of an evaluation network."""
    out = []
    for layer, cell in enumerate(model.cells):
        edges, _ = genotype.cell(cell.reduction)
        out.extend((layer, op, source, module) for (op, source), module in zip(edges, cell.ops))
    return out


def _search_ops(model: nn.Module, genotype: Genotype) -> list[tuple[int, str, int, nn.Module]]:
    """(layer, op, source, module) of every chosen op of a search network holding ``genotype``."""
    starts = [sl.start for sl in prox.node_slices(edges_per_node(model.steps))]
    out = []
    for layer, cell in enumerate(model.cells):
        edges, _ = genotype.cell(cell.reduction)
        names = model.space.ops(cell.reduction)
        for n, (op, source) in enumerate(edges):
            out.append((layer, op, source, cell.edges[starts[n // 2] + source].ops[names.index(op)]))
    return out


_OPS_OF = {"eval": _eval_ops, "search": _search_ops}


@torch.no_grad()
def profile_ops(space: Space, network: CostNetwork, device: torch.device, batch_size: int = 1, repeats: int = 20,
                warmup: int = 3) -> LatencyTable:
    """Time every op of ``space`` at every shape of ``network`` **in context**: inside full forward
    passes (eval mode, random input of ``batch_size`` images) of the networks of
    ``probe_genotypes``, each op timed by hooks around its module (the device synchronised), the
    median over ``repeats`` forwards after ``warmup``; an entry is the median over the modules
    of that shape. The fixed part is the rest of a forward: the median forward time without hooks
    minus the ops' times, the median over the probe networks (at least 0). So a probe network's
    table latency is its measured latency, and other cells are sums of ops timed where they run
    (the fixed part then holds the node sums, concatenations and Python between modules, which
    timing the fixed modules alone misses: 1.7 ms against 0.38 ms for a 6-cell digits network)."""
    costs = NetworkCosts(space, network)
    kind = NETWORKS.get(network.kind)
    h, w = network.image_size
    x = torch.randn(batch_size, network.in_channels, h, w, device=device)
    samples: dict[OpShape, list[float]] = {}
    bases = []
    for genotype in probe_genotypes(space, network.steps):
        model = kind.build(network, space) if network.kind == "search" else _build_eval_of(network, genotype)
        if network.kind == "search":
            model.set_architecture(model.alphas_of(genotype))
        model = model.to(device).eval()
        full = median_ms(lambda: model(x), device, repeats, warmup)
        ops = _OPS_OF[network.kind](model, genotype)
        times = _hooked_times(model, x, [m for *_, m in ops], device, repeats, warmup)
        for (layer, op, source, _), t in zip(ops, times):
            samples.setdefault(costs.positions[layer].shape(op, source), []).append(t)
        bases.append(full - sum(times))
    missing = [s for s in costs.needed() if s not in samples]
    if missing:  # the probe genotypes cover every shape by construction
        raise AssertionError(f"probe networks missed {missing[0].text()}")
    ms = {s: statistics.median(samples[s]) for s in costs.needed()}
    meta = {"space": space.name, "network": network.to_json(), "positions": positions_json(costs.positions), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "batch_size": batch_size, "repeats": repeats, "warmup": warmup,
            "timing": "in context (hooks inside full forwards of the probe networks)", "torch_version": torch.__version__}
    return LatencyTable(ms, max(0.0, statistics.median(bases)), meta)


def _build_eval_of(network: CostNetwork, genotype: Genotype) -> nn.Module:
    return MODELS.get(network.model)(genotype, channels=network.channels, layers=network.layers,
                                     num_classes=network.num_classes, in_channels=network.in_channels, auxiliary=False)


def _hooked_times(model: nn.Module, x: Tensor, modules: Sequence[nn.Module], device: torch.device, repeats: int,
                  warmup: int) -> list[float]:
    """Median milliseconds of every module in ``modules`` over ``repeats`` forwards of ``model``."""
    runs: list[list[float]] = [[] for _ in modules]
    started = [0.0] * len(modules)

    def before(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            _synchronize(device)
            started[i] = time.perf_counter()
        return hook

    def after(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            _synchronize(device)
            runs[i].append(time.perf_counter() - started[i])
        return hook

    hooks = [h for i, m in enumerate(modules) for h in (m.register_forward_pre_hook(before(i)), m.register_forward_hook(after(i)))]
    try:
        for _ in range(warmup):
            model(x)
        for r in runs:
            r.clear()
        for _ in range(repeats):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return [1000.0 * statistics.median(r) for r in runs]


# a search's budget ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def network_costs(space: Space, network: CostNetwork) -> NetworkCosts:
    """``NetworkCosts`` of a space in a network, built once per process for the same inputs (the
    command's validation and its search share it)."""
    return NetworkCosts(space, network)


@dataclass(frozen=True)
class CellBudget:
    """What a CNN search limits and records: the costs of its space in the cost network, every
    recorded metric's tables (``params``, ``madds``, and ``latency`` with a table), and the budget
    (``metric``, ``limit``, its ``projection``) when one is given."""

    costs: NetworkCosts
    tables: dict[str, prox.CellCosts]
    latency: Optional[LatencyTable] = None
    metric: Optional[str] = None
    projection: Optional[prox.BudgetedCellProjection] = None

    def genotype_costs(self, genotype: Genotype) -> dict[str, float]:
        """``{row key: cost}`` of a genotype for every recorded metric (``params``, ``madds``,
        ``latency_ms``); counts as whole numbers."""
        out: dict[str, float] = {}
        for name, table in self.tables.items():
            value = self.costs.genotype_cost(genotype, table)
            out[COST_METRICS.get(name).key] = int(round(value)) if name != "latency" else round(value, 6)
        return out

    def row_costs(self, architecture: Any) -> dict[str, float]:
        return self.genotype_costs(Genotype.from_json(architecture, "architecture"))


def cell_budget(space: Space, network: CostNetwork, limits: dict[str, Optional[float]],
                latency_table: Optional[Path] = None) -> CellBudget:
    """The costs and the budget of a search: ``limits`` maps each metric of ``COST_METRICS`` to its
    limit or None (at most one given); ``latency_table`` is the file of ``nasp cnn profile-ops``
    (needed for a latency budget; with it, latency is recorded every epoch too). Bad input (two
    budgets, a latency budget without a table, a table that does not fit, a budget below the
    cheapest cell) is one ``NaspError``."""
    from ..budget import one_budget

    given = one_budget({COST_METRICS.get(name).flag: value for name, value in limits.items()})
    costs = network_costs(space, network)
    latency = None
    if latency_table is not None:
        latency = read_latency_table(latency_table)
        latency.check(costs)
    tables = {name: costs.cell_costs(name, latency) for name in COST_METRICS
              if not COST_METRICS.get(name).needs_table or latency is not None}
    if given is None:
        return CellBudget(costs, tables, latency)
    flag, limit = given
    metric = next(name for name in COST_METRICS if COST_METRICS.get(name).flag == flag)
    if COST_METRICS.get(metric).needs_table and latency is None:
        raise NaspError(f"{flag} needs --latency-table (measure one with nasp cnn profile-ops)")
    m = COST_METRICS.get(metric)
    projection = prox.BudgetedCellProjection(costs.edges_per_node, tables[metric], limit, k=2, label=flag,
                                             unit=f"{m.unit} in the {network.describe()}")
    return CellBudget(costs, tables, latency, metric, projection)


# the image shape of a data set, without reading it --------------------------------------------
@dataclass(frozen=True)
class ImageShape:
    """What a cost network needs of a data set."""

    name: str
    in_channels: int
    image_size: tuple[int, int]
    num_classes: int
    kind: str  # the default evaluation network (``MODELS``)


#: known data sets whose shape needs no reading (``nasp cnn profile-ops`` on a machine without them)
IMAGE_SHAPES: Registry[ImageShape] = Registry("image data set")
IMAGE_SHAPES.register("cifar10")(ImageShape("cifar10", 3, (32, 32), 10, "cifar"))
IMAGE_SHAPES.register("digits")(ImageShape("digits", 1, (8, 8), 10, "cifar"))


def image_shape(spec: str, data_dir: Optional[Path] = None, image_size: Optional[int] = None) -> ImageShape:
    """The shape of ``--data spec``: a known name's without reading it, else the data's."""
    from .data import load_data

    if str(spec) in IMAGE_SHAPES:
        return IMAGE_SHAPES.get(str(spec))
    data = load_data(spec, data_dir, image_size)
    return ImageShape(data.name, data.in_channels, tuple(data.image_size), data.num_classes, data.kind)

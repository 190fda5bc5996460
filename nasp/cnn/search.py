"""``nasp cnn search``: build the search problem from a ``CNNSearchConfig`` and run the shared search loop."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..budget import RecordCosts, summary as budget_summary
from ..devices import autocast
from ..distributed import world as current_world
from ..errors import NaspError
from ..plots import plot_pareto
from ..prox import format_amount
from ..regularizers import ModelSize
from ..devices import peak_memory_mb
from ..loop import Hook, run_search
from ..runs import RunDir, write_bytes_atomic
from ..strategies import STRATEGIES, SearchProblem, build_strategy
from ..strategies.base import SearchOptions
from .config import CNNSearchConfig, check_sizes  # noqa: F401  (check_sizes: re-exported for callers of the first round)
from .costs import COST_METRICS, CostNetwork
from .data import Augment, Batches, ImageData, batch_seed, load_data
from .genotypes import Genotype
from .model import MODELS, count_params
from .plot import plot_curves, plot_genotype
from .search_net import CNNSearchNetwork

log = logging.getLogger("nasp")

PAPER_LAYERS, PAPER_CHANNELS = 20, 36
"""DARTS' CIFAR-10 evaluation network: the one ``params_eval_network`` counts."""


def classification_loss(device: torch.device, amp: bool = False) -> Callable[[nn.Module, Any], Tensor]:
    """``loss(network, (x, y))``: cross-entropy of the network's logits (float32 loss under AMP)."""

    def loss(network: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        with autocast(device, amp):
            logits = network(x)
        return F.cross_entropy(logits.float(), y)

    return loss


@torch.no_grad()
def accuracy(network: nn.Module, batches: Batches, device: torch.device, amp: bool = False,
             logits_of: Callable[[Any], Tensor] = lambda out: out) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over ``batches`` (one host sync at the end); in a
    data-parallel run each rank scores its slices and the sums are added over the ranks."""
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # correct, loss, examples
    for x, y in batches:
        if len(y) == 0:  # this rank's slice of a short last batch
            continue
        with autocast(device, amp):
            logits = logits_of(network(x)).float()
        sums += torch.stack([(logits.argmax(dim=1) == y).sum().double(),
                             F.cross_entropy(logits, y, reduction="sum").double(), sums.new_tensor(len(y))])
    correct, loss_sum, total = batches.world.sum(sums).tolist()
    if total == 0:
        raise NaspError("the evaluation data yields no batch")
    return {"acc": correct / total, "loss": loss_sum / total}


def memory_kind(device: torch.device) -> str:
    """What ``peak_memory_mb`` measures on ``device``."""
    return "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"


def _exported_score(strategy: Any, rows: list[dict], key: str) -> float:
    """The validation score of the exported architecture: the selected candidate's for a
    strategy that selects on validation (random), else the last epoch's."""
    best = getattr(strategy, "best_score", None)
    return float(best) if strategy.selects_on_validation and best is not None else rows[-1][key]


def _log_budget(c: CNNSearchConfig, budget: Any) -> None:
    p, m = budget.projection, COST_METRICS.get(budget.metric)
    log.info("budget %s %s in the %s (cheapest cell %s, most expensive %s)", m.flag, format_amount(p.limit),
             budget.costs.network.describe(), format_amount(p.cheapest), format_amount(p.most_expensive))
    if c.eta > 0:
        log.info("--eta %g adds the soft model-size term (normal cell, search width) inside the hard budget", c.eta)
    if STRATEGIES.get(c.strategy).validates == "supernet":  # darts, darts2
        log.info("%s: the supernet trains without the budget; the exported cell is the budgeted projection of its "
                 "softmax weights", c.strategy)


def build_search_network(config: CNNSearchConfig, data: ImageData) -> CNNSearchNetwork:
    """The supernet of ``config``: partial channels as ``--partial-channels`` says, edge
    normalisation where the strategy needs it (pcdarts)."""
    return CNNSearchNetwork(config.space, channels=config.channels, layers=config.layers, num_classes=data.num_classes,
                            in_channels=data.in_channels, steps=config.nodes, multiplier=config.nodes,
                            partial_channels=config.partial_channels or 1,
                            edge_normalization=STRATEGIES.get(config.strategy).edge_normalization)


def search(config: CNNSearchConfig, run: RunDir, device: torch.device, data: Optional[ImageData] = None,
           hooks: Sequence[Hook] = ()) -> dict:
    """Run a cell search with a checked config (``config.validate(data)``: the command calls it
    before the run directory exists); writes arch.json, genotype.txt, cells.png; returns the summary.
    ``hooks``: extra run-loop hooks after the run's own (e.g. a benchmark's per-epoch measurements)."""
    c = config
    amp = c.amp and device.type == "cuda"
    world = current_world()  # the ranks of a data-parallel run: each trains on its slice of every batch
    data = data if data is not None else load_data(c.data, c.data_dir, c.image_size)
    w_idx, a_idx = c.split(data)
    seed = int(c.seed)
    torch.manual_seed(seed)
    net = build_search_network(c, data).to(device)
    budget = c.budget(data)  # the costs every epoch records; the budget every projection obeys
    net.set_budget(budget.projection)
    if budget.projection is not None:
        _log_budget(c, budget)
    regularizer = ModelSize([net.op_params(False), None]) if c.eta > 0 else None
    problem = SearchProblem(
        network=net,
        loss=classification_loss(device, amp),
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay),
        scheduler=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, n), eta_min=c.lr_min),
        metric="valid_acc",
        higher_is_better=True,
        grad_clip=5.0,
        arch_lr=c.arch_lr,
        regularizer=regularizer,
        eta=c.eta,
        options=SearchOptions(seed=seed, warmup_epochs=c.warmup_epochs, candidates=c.candidates, unrolled=c.unrolled),
    )
    strategy = build_strategy(c.strategy, problem, c.epochs)
    augment = Augment(pad=data.crop_pad, flip=data.flip)

    def batches(indices: Tensor, stream: int) -> Callable[[int], Batches]:
        return lambda i: Batches(data.train, indices, c.batch_size, device, data.mean, data.std,
                                 seed=batch_seed(seed, stream, i), augment=augment, world=world)

    valid_eval = Batches(data.train, a_idx, c.eval_batch_size or 2 * c.batch_size, device, data.mean,
                         data.std, shuffle=False, drop_last=False, world=world)

    def evaluate(network: nn.Module) -> dict:
        result = accuracy(network, valid_eval, device, amp)
        return {"valid_acc": result["acc"], "valid_loss": result["loss"]}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = run_search(strategy, batches(w_idx, 1), batches(a_idx, 2), evaluate, c.epochs, run,
                      hooks=[RecordCosts(budget.row_costs), *hooks], stage="search")
    genotype = Genotype.from_json(strategy.export(), "exported genotype")
    run.write_json("arch.json", genotype.to_json())
    write_bytes_atomic(run.file("genotype.txt"), (genotype.to_text() + "\n").encode())
    plot_genotype(genotype, run.file("cells.png"), f"{c.strategy} on {data.name}, space {c.space}")
    plot_curves(rows, run.file("curves.png"), ("train_loss", "arch_loss", "valid_loss", "valid_acc"), c.strategy)
    metric = COST_METRICS.get(budget.metric or "params")
    limit = budget.projection.limit if budget.projection is not None else None
    plot_pareto(rows, run.file("pareto.png"), metric.key, "valid_acc", True, limit,
                f"{c.strategy}: valid acc ({strategy.validates}) per epoch", f"{metric.key}, {budget.costs.network.short()}")
    costs = budget.genotype_costs(genotype)
    search_seconds = sum(r["seconds"] for r in rows)
    paper = CostNetwork("eval", "cifar", PAPER_LAYERS, PAPER_CHANNELS, data.in_channels, data.num_classes, data.image_size, c.nodes)
    searched = CostNetwork("search", "cifar", c.layers, c.channels, data.in_channels, data.num_classes, data.image_size, c.nodes)
    eval_model = MODELS.get("cifar")(genotype, channels=PAPER_CHANNELS, layers=PAPER_LAYERS, num_classes=data.num_classes,
                                     in_channels=data.in_channels)
    return {
        "strategy": c.strategy,
        "space": c.space,
        "partial_channels": c.partial_channels or 1,
        "data": data.name,
        "epochs": len(rows),
        "search_seconds": round(search_seconds, 3),
        "seconds_per_epoch": round(search_seconds / max(1, len(rows)), 3),
        "train_seconds_per_epoch": round(sum(r["train_seconds"] for r in rows) / max(1, len(rows)), 3),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "peak_memory_kind": memory_kind(device),
        "valid_acc": _exported_score(strategy, rows, "valid_acc"),
        "valid_score_of": strategy.validates,
        "best_valid_acc": max((r["valid_acc"] for r in rows if r["valid_acc"] is not None), default=None),
        "params_of_derived_cell": net.cell_params(genotype, reduction=False),
        "params_of_derived_reduce_cell": net.cell_params(genotype, reduction=True),
        "derived_cells_network": f"{searched.describe()} (the cells' ops at {c.channels} channels)",
        "params_eval_network": count_params(eval_model),
        "eval_network": f"{paper.describe()} (DARTS' CIFAR-10 network, no auxiliary head)",
        "params_cost_network": costs["params"],
        "cost_network": budget.costs.network.describe(),
        "eta": c.eta,
        "cost": costs,
        "budget": None if budget.projection is None else budget_summary(
            budget.projection, budget.metric, metric.flag, costs[metric.key], strategy.budget_binding(),
            budget.costs.network.describe()),
        "genotype": genotype.to_text(),
        "device": str(device),
    }

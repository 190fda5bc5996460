"""Training pieces shared by ``sif search`` and ``sif train``: batches, loss, metrics, problem."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from nasp.devices import autocast_loss
from nasp.distributed import World
from nasp.strategies import SearchProblem

from .data import Interactions
from .model import SIFNetwork


@dataclass
class TrainSettings:
    """The resolved optimisation settings of one training (``SIFOptions.train_settings``: the
    settings, their help and their defaults per task are declared there)."""

    lr: float                    # Adagrad on embeddings, biases and op heads
    reg: float                   # L2 on the batch's embeddings and biases (per rating)
    implicit_reg: float          # L2 on the batch items' implicit factors y (with implicit feedback)
    batch_size: int
    arch_lr: float               # Adam on alpha (and, with mlp_on_valid, the element-wise MLPs)
    max_epochs: int              # training epochs at most (early stopping on validation)
    patience: int                # epochs without a better validation score before stopping
    seed: int                    # the order of the batches (and the sampled negatives)
    grad_clip: float = 5.0       # the SIF authors' value
    amp: bool = False            # bfloat16 autocast of the training forward passes (CUDA only)

    def to_dict(self) -> dict:
        return asdict(self)


Batch = tuple[Tensor, Tensor, Tensor]


def batches(data: Interactions, batch_size: int, seed: int, shuffle: bool = True,
            world: World = World()) -> Callable[[int], list[Batch]]:
    """``make(i)``: the i-th pass over ``data`` in a order fixed by (seed, i). Each pass permutes
    users, items and ratings once (three gathers) and its batches are contiguous views of those
    copies, instead of three gathers per batch. In a data-parallel run each batch is this rank's
    slice of the global batch (``world.shard``), and a last batch with fewer ratings than ranks
    is left out."""

    def make(i: int) -> list[Batch]:
        n = len(data)
        if shuffle:
            g = torch.Generator().manual_seed(seed * 100_003 + i)
            order = torch.randperm(n, generator=g).to(data.users.device)
            users, items, ratings = (t.index_select(0, order) for t in (data.users, data.items, data.ratings))
        else:
            users, items, ratings = data.users, data.items, data.ratings
        return [tuple(world.shard(t[j : j + batch_size]) for t in (users, items, ratings))
                for j in range(0, n, batch_size) if min(batch_size, n - j) >= world.size]

    return make


def make_loss(reg: float, implicit_reg: float = 0.0) -> Callable[[SIFNetwork, Batch], Tensor]:
    """Mean squared error plus ``reg`` times the batch's squared embedding norms (and
    ``implicit_reg`` times its items' squared implicit factors)."""

    def loss(net: SIFNetwork, batch: Batch) -> Tensor:
        users, items, ratings = batch
        pred, l2 = net.forward_and_regularization(users, items)
        out = nn.functional.mse_loss(pred, ratings) + reg * l2
        if implicit_reg and net.config.implicit:
            out = out + implicit_reg * net.implicit_regularization(users, items)
        return out

    return loss


@torch.no_grad()
def evaluate(net: SIFNetwork, data: Interactions, prefix: str, chunk: int = 1 << 16,
             world: World = World()) -> dict[str, float]:
    """RMSE and MAE in stars (predictions clipped to the training range); in a data-parallel run
    each rank scores its slice of ``data`` and the sums are added over the ranks."""
    n = len(data)
    if n == 0:
        return {}
    lo, hi = world.bounds(n)
    sums = torch.zeros(2, dtype=torch.float64, device=data.ratings.device)  # squared, absolute errors
    for j in range(lo, hi, chunk):
        end = min(j + chunk, hi)
        err = (net.predict(data.users[j:end], data.items[j:end]) - data.ratings[j:end]).double()
        sums += torch.stack([err.pow(2).sum(), err.abs().sum()])
    se, ae = world.sum(sums).tolist()
    return {f"{prefix}_rmse": math.sqrt(se / n), f"{prefix}_mae": ae / n}


def make_problem(net: SIFNetwork, settings: TrainSettings, options: dict | None = None, task=None) -> SearchProblem:
    """The ``SearchProblem`` of a SIF network: the task's loss and selection metric (without a
    task: squared error, selection on validation RMSE)."""
    loss = task.loss(settings) if task is not None else make_loss(settings.reg, settings.implicit_reg)
    device = next(net.parameters()).device
    optimizer = getattr(net, "optimizer", torch.optim.Adagrad)  # Adagrad, unless the network names its own (LightGCN: Adam)
    return SearchProblem(
        network=net,
        loss=autocast_loss(loss, device, settings.amp),
        weight_optimizer=lambda params: optimizer(params, lr=settings.lr),
        metric=task.metric if task is not None else "valid_rmse",
        higher_is_better=task.higher_is_better if task is not None else False,
        grad_clip=settings.grad_clip,
        arch_lr=settings.arch_lr,
        options=options or {},
    )

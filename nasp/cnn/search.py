"""``nasp cnn search``: build the search problem from options and run the shared search loop."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import NaspError
from ..regularizers import ModelSize
from ..runs import RunDir, peak_memory_mb, run_search
from ..strategies import SearchProblem, build_strategy, check_search_strategy
from . import defaults
from .data import Augment, Batches, ImageData, batch_seed, load_data, search_split
from .genotypes import Genotype
from .model import MODELS, count_params
from .plot import plot_curves, plot_genotype
from .search_net import CNNSearchNetwork
from .spaces import SPACES

log = logging.getLogger("nasp")


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled`` (no gradient scaler needed), else a no-op."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


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
    """Top-1 accuracy and mean cross-entropy over ``batches`` (one host sync at the end)."""
    correct = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device)
    total = 0
    for x, y in batches:
        with autocast(device, amp):
            logits = logits_of(network(x)).float()
        correct += (logits.argmax(dim=1) == y).sum()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        total += len(y)
    if total == 0:
        raise NaspError("the evaluation data yields no batch")
    return {"acc": float(correct) / total, "loss": float(loss_sum) / total}


def memory_kind(device: torch.device) -> str:
    """What ``peak_memory_mb`` measures on ``device``."""
    return "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"


def check_sizes(batch_size: int, channels: int, layers: int, n_train: Optional[int] = None, what: str = "training",
                even_channels: bool = False) -> None:
    """Batch size / width / depth that cannot work raise ``NaspError``."""
    if batch_size < 2:
        raise NaspError(f"--batch-size {batch_size}: must be at least 2 (batch norm needs two examples per batch)")
    if channels < 1:
        raise NaspError(f"--channels {channels}: must be at least 1")
    if even_channels and (channels < 2 or channels % 2):
        raise NaspError(f"--channels {channels}: this network needs an even number >= 2 (its first cell halves the resolution in two paths)")
    if layers < 1:
        raise NaspError(f"--layers {layers}: must be at least 1")
    if n_train is not None and batch_size > n_train:
        raise NaspError(f"--batch-size {batch_size}: larger than the {n_train} examples of the {what} data")


def _exported_score(strategy: Any, rows: list[dict], key: str) -> float:
    """The validation score of the exported architecture: the selected candidate's for a
    strategy that selects on validation (random), else the last epoch's."""
    best = getattr(strategy, "best_score", None)
    return float(best) if strategy.selects_on_validation and best is not None else rows[-1][key]


def build_search_network(opts: dict, data: ImageData) -> CNNSearchNetwork:
    return CNNSearchNetwork(opts["space"], channels=opts["channels"], layers=opts["layers"], num_classes=data.num_classes,
                            in_channels=data.in_channels, steps=opts.get("nodes", 4), multiplier=opts.get("nodes", 4))


def search(opts: dict, run: RunDir, device: torch.device) -> dict:
    """Run a cell search with resolved options; writes arch.json, genotype.txt, cells.png; returns the summary."""
    SPACES.get(opts["space"])
    if opts["eta"] < 0:
        raise NaspError(f"--eta {opts['eta']}: must be >= 0")
    amp = bool(opts.get("amp")) and device.type == "cuda"
    data = load_data(opts["data"], opts.get("data_dir"), opts.get("image_size"))
    defaults.record(run, defaults.resolve(opts, defaults.SEARCH.get(defaults.profile(data.name, data.kind))))
    check_sizes(opts["batch_size"], opts["channels"], opts["layers"])
    if opts["epochs"] < 1:
        raise NaspError(f"--epochs {opts['epochs']}: must be at least 1")
    w_idx, a_idx = search_split(len(data.train), opts.get("train_portion", 0.5), opts["seed"], opts.get("subset"))
    check_sizes(opts["batch_size"], opts["channels"], opts["layers"], min(len(w_idx), len(a_idx)), "weight or architecture")
    seed = int(opts["seed"])
    torch.manual_seed(seed)
    net = build_search_network(opts, data).to(device)
    regularizer = ModelSize([net.op_params(False), None]) if opts["eta"] > 0 else None
    problem = SearchProblem(
        network=net,
        loss=classification_loss(device, amp),
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=opts["lr"], momentum=0.9, weight_decay=opts["weight_decay"]),
        scheduler=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, n), eta_min=opts["lr_min"]),
        metric="valid_acc",
        higher_is_better=True,
        grad_clip=5.0,
        arch_lr=opts["arch_lr"],
        regularizer=regularizer,
        eta=opts["eta"],
        options={"candidates": opts.get("candidates"), "seed": seed, "warmup_epochs": opts.get("warmup_epochs"),
                 "unrolled": opts.get("unrolled")},
    )
    strategy = build_strategy(check_search_strategy(opts["strategy"]), problem, opts["epochs"])
    augment = Augment(pad=data.crop_pad, flip=data.flip)

    def batches(indices: Tensor, stream: int) -> Callable[[int], Batches]:
        return lambda i: Batches(data.train, indices, opts["batch_size"], device, data.mean, data.std,
                                 seed=batch_seed(seed, stream, i), augment=augment)

    valid_eval = Batches(data.train, a_idx, opts.get("eval_batch_size") or 2 * opts["batch_size"], device, data.mean,
                         data.std, shuffle=False, drop_last=False)

    def evaluate(network: nn.Module) -> dict:
        result = accuracy(network, valid_eval, device, amp)
        return {"valid_acc": result["acc"], "valid_loss": result["loss"]}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = run_search(strategy, batches(w_idx, 1), batches(a_idx, 2), evaluate, opts["epochs"], run)
    genotype = Genotype.from_json(strategy.export(), "exported genotype")
    run.write_json("arch.json", genotype.to_json())
    run.file("genotype.txt").write_text(genotype.to_text() + "\n")
    plot_genotype(genotype, run.file("cells.png"), f"{opts['strategy']} on {data.name}, space {opts['space']}")
    plot_curves(rows, run.file("curves.png"), ("train_loss", "arch_loss", "valid_loss", "valid_acc"), opts["strategy"])
    search_seconds = sum(r["seconds"] for r in rows)
    eval_model = MODELS.get("cifar")(genotype, num_classes=data.num_classes, in_channels=data.in_channels)
    return {
        "strategy": opts["strategy"],
        "space": opts["space"],
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
        "params_eval_network": count_params(eval_model),
        "eta": opts["eta"],
        "genotype": genotype.to_text(),
        "device": str(device),
    }

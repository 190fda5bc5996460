"""``nasp cnn train``: train an evaluation network built from a genotype, report test accuracy."""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import autocast
from ..distributed import world as current_world
from ..loop import Hook, RunLoop
from ..devices import peak_memory_mb
from ..runs import RunDir
from ..strategies import SearchProblem, build_strategy
from .config import CNNTrainConfig
from .costs import CostNetwork
from .data import Augment, Batches, ImageData, batch_seed, load_data
from .genotypes import Genotype, load_genotype
from .model import MODELS, count_flops, count_params
from .plot import plot_curves, plot_genotype
from .search import accuracy, memory_kind

log = logging.getLogger("nasp")


class DropPathRamp(Hook):
    """Drop-path probability ramped linearly from 0 to ``max_prob`` over the epochs (DARTS)."""

    def __init__(self, model: nn.Module, max_prob: float, epochs: int) -> None:
        self.model, self.max_prob, self.epochs = model, max_prob, epochs

    def begin_epoch(self, epoch: int) -> None:
        self.model.drop_path_prob = self.max_prob * epoch / self.epochs


def train(config: CNNTrainConfig, run: RunDir, device: torch.device, data: Optional[ImageData] = None) -> dict:
    """Train with a checked config (``config.validate(data)``: the command calls it before the run
    directory exists; epoch checkpoints, ``--resume``); returns the summary."""
    c = config
    genotype: Genotype = load_genotype(c.genotype)
    data = data if data is not None else load_data(c.data, c.data_dir, c.image_size)
    kind, channels, layers = c.model, c.channels, c.layers
    amp = c.amp and device.type == "cuda"
    seed = int(c.seed)
    torch.manual_seed(seed)
    aux_weight = float(c.auxiliary_weight)
    model = MODELS.get(kind)(genotype, channels=channels, layers=layers, num_classes=data.num_classes,
                             in_channels=data.in_channels, auxiliary=aux_weight > 0).to(device)
    params = count_params(model)
    network = CostNetwork("eval", kind, layers, channels, data.in_channels, data.num_classes, data.image_size, genotype.steps)
    flops = count_flops(model, (data.in_channels, *data.image_size))
    label_smoothing = c.label_smoothing
    all_train = torch.arange(len(data.train))
    augment = Augment(pad=data.crop_pad, flip=data.flip, cutout=c.cutout)
    world = current_world()  # the ranks of a data-parallel run: each trains on its slice of every batch
    test_batches = Batches(data.test, torch.arange(len(data.test)), c.eval_batch_size or 2 * c.batch_size,
                           device, data.mean, data.std, shuffle=False, drop_last=False, world=world)

    def loss(network: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        with autocast(device, amp):
            logits, aux = network(x)
        out = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        if aux is not None:
            out = out + aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=label_smoothing)
        return out

    problem = SearchProblem(
        network=model,
        loss=loss,
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay),
        scheduler=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, n, eta_min=0.0),
        grad_clip=5.0,
    )
    trainer = build_strategy("fixed", problem, c.epochs)

    def evaluate(network: nn.Module) -> dict:
        test = accuracy(network, test_batches, device, amp, logits_of=lambda out: out[0])
        return {"lr": trainer.current_lr(), "drop_path": network.drop_path_prob, "test_acc": test["acc"],
                "test_loss": test["loss"]}

    def train_batches(epoch: int) -> Batches:
        return Batches(data.train, all_train, c.batch_size, device, data.mean, data.std,
                       seed=batch_seed(seed, 3, epoch), augment=augment, world=world)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = RunLoop(trainer, train_batches, evaluate, c.epochs, run,
                   hooks=[DropPathRamp(model, c.drop_path, c.epochs)], stage="train")()
    plot_genotype(genotype, run.file("cells.png"), f"trained on {data.name}")
    plot_curves(rows, run.file("curves.png"), ("train_loss", "test_loss", "test_acc"), f"{kind} network on {data.name}")
    run.write_json("arch.json", genotype.to_json())
    seconds = sum(r["seconds"] for r in rows)
    return {
        "test_acc": rows[-1]["test_acc"],
        "params": params,
        "flops": flops,
        "params_network": f"{network.describe()} (no auxiliary head)",
        "model": kind,
        "layers": layers,
        "channels": channels,
        "data": data.name,
        "epochs": len(rows),
        "train_seconds": round(seconds, 3),
        "seconds_per_epoch": round(seconds / max(1, len(rows)), 3),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "peak_memory_kind": memory_kind(device),
        "genotype": genotype.to_text(),
        "device": str(device),
    }

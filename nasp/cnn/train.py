"""``nasp cnn train``: train an evaluation network built from a genotype, report test accuracy."""
from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NaspError
from ..runs import RunDir, peak_memory_mb, progress, rng_state, set_rng_state
from .data import Augment, Batches, batch_seed, load_data
from .genotypes import Genotype, load_genotype
from . import defaults
from .model import MODELS, count_flops, count_params
from .plot import plot_curves, plot_genotype
from .search import accuracy, autocast, check_sizes, memory_kind

log = logging.getLogger("nasp")


def train(opts: dict, run: RunDir, device: torch.device) -> dict:
    """Train with resolved options (epoch checkpoints, ``--resume``); returns the summary."""
    genotype: Genotype = load_genotype(opts["genotype"])
    data = load_data(opts["data"], opts.get("data_dir"), opts.get("image_size"))
    kind = data.kind if opts.get("model", "auto") == "auto" else opts["model"]
    MODELS.get(kind)
    filled = defaults.resolve(opts, defaults.TRAIN.get(defaults.profile(data.name, kind)))
    channels, layers = opts["channels"], opts["layers"]
    check_sizes(opts["batch_size"], channels, layers, len(data.train), "training", even_channels=kind == "imagenet")
    if opts["epochs"] < 1:
        raise NaspError(f"--epochs {opts['epochs']}: must be at least 1")
    amp = bool(opts.get("amp")) and device.type == "cuda"
    seed = int(opts["seed"])
    torch.manual_seed(seed)
    aux_weight = float(opts.get("auxiliary_weight", 0.4))
    model = MODELS.get(kind)(genotype, channels=channels, layers=layers, num_classes=data.num_classes,
                             in_channels=data.in_channels, auxiliary=aux_weight > 0).to(device)
    params = count_params(model)
    flops = count_flops(model, (data.in_channels, *data.image_size))
    label_smoothing = opts.get("label_smoothing")
    if label_smoothing is None:
        label_smoothing = 0.1 if kind == "imagenet" else 0.0
    cutout = opts.get("cutout")
    if cutout is None:
        cutout = 16 if data.name == "cifar10" else 0
    filled.update({"cutout": cutout, "label_smoothing": label_smoothing, "model": kind})
    defaults.record(run, filled)
    optimizer = torch.optim.SGD(model.parameters(), lr=opts["lr"], momentum=0.9, weight_decay=opts["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, opts["epochs"], eta_min=0.0)
    all_train = torch.arange(len(data.train))
    all_test = torch.arange(len(data.test))
    augment = Augment(pad=data.crop_pad, flip=data.flip, cutout=cutout)
    test_batches = Batches(data.test, all_test, opts.get("eval_batch_size") or 2 * opts["batch_size"], device, data.mean,
                           data.std, shuffle=False, drop_last=False)
    start = 0
    if run.resume and run.has_checkpoint():
        state = run.load_checkpoint()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = int(state["epoch"]) + 1
    run.truncate_metrics(start)
    rows = run.read_metrics()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for epoch in range(start, opts["epochs"]):
        t0 = time.perf_counter()
        model.train()
        model.drop_path_prob = opts["drop_path"] * epoch / opts["epochs"]
        batches = Batches(data.train, all_train, opts["batch_size"], device, data.mean, data.std,
                          seed=batch_seed(seed, 3, epoch), augment=augment)
        loss_sum = torch.zeros((), device=device)
        for x, y in progress(batches, len(batches), f"epoch {epoch + 1}/{opts['epochs']}"):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):
                logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            if aux is not None:
                loss = loss + aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=label_smoothing)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            loss_sum += loss.detach()
        train_seconds = time.perf_counter() - t0
        test = accuracy(model, test_batches, device, amp, logits_of=lambda out: out[0])
        row = {"epoch": epoch, "train_loss": float(loss_sum) / max(1, len(batches)), "lr": optimizer.param_groups[0]["lr"],
               "drop_path": model.drop_path_prob, "test_acc": test["acc"], "test_loss": test["loss"],
               "train_seconds": round(train_seconds, 4), "seconds": round(time.perf_counter() - t0, 4)}
        scheduler.step()
        run.append_metrics(row)
        rows.append(row)
        run.save_checkpoint({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng_state()})
        log.info("epoch %d/%d %s", epoch + 1, opts["epochs"], row)
    plot_genotype(genotype, run.file("cells.png"), f"trained on {data.name}")
    plot_curves(rows, run.file("curves.png"), ("train_loss", "test_loss", "test_acc"), f"{kind} network on {data.name}")
    run.write_json("arch.json", genotype.to_json())
    seconds = sum(r["seconds"] for r in rows)
    return {
        "test_acc": rows[-1]["test_acc"],
        "params": params,
        "flops": flops,
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

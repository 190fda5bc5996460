"""Run directories and the one search loop every domain shares (DESIGN.md, "Runs").

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (atomic),
``arch.json``, ``summary.json`` (written last: its presence means the run finished) and plots.
"""
from __future__ import annotations

import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch

from .errors import NaspError
from .strategies.base import Strategy

log = logging.getLogger("nasp")

CONFIG, METRICS, CHECKPOINT, ARCH, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "arch.json", "summary.json"


# devices and seeds ----------------------------------------------------------------------------
def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; unusable ones raise NaspError."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise NaspError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise NaspError(f"--device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise NaspError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise NaspError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA max allocated on a GPU, else the process's max RSS
    (``ru_maxrss`` is in bytes on macOS, in KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": _py_state_to_list(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_py_state_from_list(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# files ----------------------------------------------------------------------------------------
def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class RunDir:
    """One run's directory.

    A new run needs an absent or empty directory; ``resume=True`` needs an unfinished run with a
    checkpoint. Either way the mistake is reported before anything is written.
    """

    def __init__(self, path: os.PathLike | str, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        if self.path.exists() and not self.path.is_dir():
            raise NaspError(f"--out {self.path}: exists and is not a directory")
        if resume:
            if not (self.path / CONFIG).exists():
                raise NaspError(f"--resume: {self.path} is not a run directory (no {CONFIG})")
            if (self.path / SUMMARY).exists():
                raise NaspError(f"--resume: run {self.path} already finished ({SUMMARY} present)")
        elif self.path.exists() and any(self.path.iterdir()):
            raise NaspError(
                f"--out {self.path}: directory exists and is not empty; pass --resume to continue it or choose another --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    # config -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json_atomic(self.file(CONFIG), config)

    def read_config(self) -> dict:
        return read_json(self.file(CONFIG), "run config")

    # metrics ----------------------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        with open(self.file(METRICS), "a") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict]:
        if not self.file(METRICS).exists():
            return []
        with open(self.file(METRICS)) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep only rows of epochs before ``epochs_done`` (rows written after the last checkpoint go)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) < epochs_done]
        tmp = self.file(METRICS + ".tmp")
        with open(tmp, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        os.replace(tmp, self.file(METRICS))

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        tmp = self.file(CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.file(CHECKPOINT))

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def load_checkpoint(self, map_location: Any = "cpu") -> dict:
        try:
            return torch.load(self.file(CHECKPOINT), map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise NaspError(f"--resume: {self.path} has no {CHECKPOINT} yet; start it again without --resume") from None
        except Exception as exc:  # a corrupt or foreign file
            raise NaspError(f"{self.file(CHECKPOINT)}: cannot be read as a checkpoint ({exc.__class__.__name__})") from None

    # results ----------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.file(name), obj)

    def finish(self, summary: dict) -> None:
        """Write ``summary.json`` — the last file of a finished run."""
        write_json_atomic(self.file(SUMMARY), summary)


def read_json(path: os.PathLike | str, what: str = "JSON file") -> Any:
    """Load a JSON file; a missing or malformed one raises NaspError naming it."""
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise NaspError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise NaspError(f"{path}: is a directory, expected a {what}") from None
    except json.JSONDecodeError as exc:
        raise NaspError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


# the loop -------------------------------------------------------------------------------------
class EarlyStopping:
    """Stop after ``patience`` epochs without improvement of ``metric``; remembers the best
    network state so the loop can restore it at the end."""

    def __init__(self, metric: str, higher_is_better: bool = False, patience: int = 5) -> None:
        self.metric, self.higher_is_better, self.patience = metric, higher_is_better, patience
        self.best: Optional[float] = None
        self.best_epoch = -1
        self.best_state: Optional[dict] = None

    def update(self, epoch: int, metrics: dict, network: torch.nn.Module) -> bool:
        """Record this epoch; returns True when training should stop."""
        value = float(metrics[self.metric])
        improved = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]


def progress(iterable: Iterable, total: Optional[int], desc: str) -> Iterable:
    """A tqdm bar on stderr, silent when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None, dynamic_ncols=True)


def _cycle(make: Callable[[int], Iterable], start: int) -> Iterator:
    """Endless batches: a fresh pass of ``make(i)`` each time one runs out (not cached)."""
    i = start
    while True:
        empty = True
        for batch in make(i):
            empty = False
            yield batch
        if empty:
            raise NaspError("the validation data yields no batch")
        i += 1


def run_search(
    strategy: Strategy,
    train_batches: Callable[[int], Iterable],
    valid_batches: Callable[[int], Iterable],
    evaluate: Callable[[Any], dict],
    epochs: int,
    run: RunDir,
    extra_state: Optional[Callable[[], dict]] = None,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
    early_stopping: Optional[EarlyStopping] = None,
) -> list[dict]:
    """Search for ``epochs`` epochs, checkpointing after each; resume if ``run.resume``.

    ``train_batches(epoch)`` and ``valid_batches(pass_index)`` give fresh iterables whose order
    depends on their argument only, so a resumed run sees the same batches as an uninterrupted
    one. ``evaluate(network)`` runs inside ``strategy.evaluation()`` and returns metrics.
    With ``early_stopping``, training stops when it says so and the best network state is
    restored at the end. Returns all metrics rows (one per epoch).
    """
    net = strategy.network
    start = 0
    if run.resume and run.has_checkpoint():
        state = run.load_checkpoint()
        net.load_state_dict(state["network"])
        strategy.load_state_dict(state["strategy"])
        set_rng_state(state["rng"])
        if early_stopping is not None and "early_stopping" in state:
            early_stopping.load_state_dict(state["early_stopping"])
        start = int(state["epoch"]) + 1
        run.truncate_metrics(start)
        log.info("resuming %s at epoch %d", run.path, start)
    elif run.resume:
        run.truncate_metrics(0)
    rows = run.read_metrics()
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        net.train()
        strategy.begin_epoch(epoch)
        valid_iter = _cycle(valid_batches, epoch * 1_000) if strategy.uses_valid_batch else None
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        batches = train_batches(epoch)
        total = len(batches) if hasattr(batches, "__len__") else None
        for train_batch in progress(batches, total, f"epoch {epoch + 1}/{epochs}"):
            valid_batch = next(valid_iter) if valid_iter is not None else None
            stats = strategy.step(train_batch, valid_batch)
            for key, value in stats.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            steps += 1
        if steps == 0:
            raise NaspError("the training data yields no batch (fewer ratings/examples than one batch?)")
        train_seconds = time.perf_counter() - t0
        with strategy.evaluation():
            metrics = evaluate(net)
        row = {"epoch": epoch, **{k: float(v) / steps for k, v in sums.items()}, **metrics}
        row.update(strategy.describe())
        row["architecture"] = strategy.derive()
        row["seconds"] = round(time.perf_counter() - t0, 4)
        row["train_seconds"] = round(train_seconds, 4)
        strategy.end_epoch(epoch, metrics)
        stop = early_stopping.update(epoch, metrics, net) if early_stopping is not None else False
        run.append_metrics(row)
        rows.append(row)
        state = {"epoch": epoch, "network": net.state_dict(), "strategy": strategy.state_dict(), "rng": rng_state()}
        if early_stopping is not None:
            state["early_stopping"] = early_stopping.state_dict()
        if extra_state is not None:
            state.update(extra_state())
        run.save_checkpoint(state)
        if on_epoch is not None:
            on_epoch(epoch, row)
        log.info("epoch %d/%d %s", epoch + 1, epochs, {k: v for k, v in row.items() if k != "architecture"})
        if stop:
            log.info("early stop after epoch %d (best epoch %d)", epoch + 1, early_stopping.best_epoch + 1)
            break
    if early_stopping is not None and early_stopping.best_state is not None:
        net.load_state_dict(early_stopping.best_state)
    return rows

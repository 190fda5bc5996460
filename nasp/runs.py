"""Run directories and the one search loop every domain shares (DESIGN.md, "Runs").

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (atomic),
``arch.json``, ``summary.json`` (written last: its presence means the run finished) and plots.
"""
from __future__ import annotations

import json
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from .errors import NaspError
from .loop import EarlyStopping, OnEpoch, RunLoop, progress  # noqa: F401  (re-exported)
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


# the loop (kept here for the first round's callers; the loop itself is nasp.loop.RunLoop) ---------
def run_search(
    strategy: Strategy,
    train_batches: Callable[[int], Iterable],
    valid_batches: Callable[[int], Iterable],
    evaluate: Callable[[Any], dict],
    epochs: int,
    run: RunDir,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
    early_stopping: Optional[EarlyStopping] = None,
) -> list[dict]:
    """``RunLoop`` with the two hooks most runs use: ``early_stopping`` (the best network state
    is restored at the end) and ``on_epoch(epoch, row)`` after each checkpoint."""
    hooks = [h for h in (early_stopping, OnEpoch(on_epoch) if on_epoch is not None else None) if h is not None]
    return RunLoop(strategy, train_batches, evaluate, epochs, run, valid_batches, hooks)()

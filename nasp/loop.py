"""The one epoch loop that every search and every training of every domain runs on.

``RunLoop`` drives a *stepper* (a search ``Strategy``; ``fixed`` for a plain training, also of
networks that are not search networks; or a domain's own stepper such as the RNN's averaged SGD)
for a number of epochs, and owns every piece of run state in one place: after each epoch it
appends the metrics row and writes one checkpoint holding the network, the stepper, the random
number generators, the epoch and the state of every hook; ``run.resume`` continues from it to
the same result. What differs between runs are *hooks* (early stopping, a drop-path ramp,
keeping the best model, a log line), each a small object with optional methods.

Order within an epoch::

    hooks.begin_epoch(e); stepper.begin_epoch(e)
    for train_batch (and valid_batch): stepper.step(...)
    with stepper.evaluation(): metrics = evaluate(network)
    row = {epoch (from 1), mean step stats, metrics, stepper.describe(), architecture, seconds}
    stepper.end_epoch(e, metrics); stop = stepper.finished or any(hook.end_epoch(e, row))
    append row; save checkpoint; hooks.after_checkpoint(e, row); stop or next epoch
    (at the end) hooks.on_end()

A hook's ``end_epoch`` may raise ``StopRun`` (a run that diverged): the epoch's row and checkpoint
are still written, every hook's ``on_end`` runs (curves are drawn), then the loop raises it; a
``--resume`` of that run raises it again.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import torch

from .distributed import World, world as current_world
from .errors import NaspError
from .network import SearchNetwork, check_state
from .runs import CHECKPOINT, _short, dumps
from .seeding import rng_state, set_rng_state

log = logging.getLogger("nasp")


class Stepper(Protocol):
    """What the loop needs of the thing it drives (``nasp.strategies.Strategy`` is one)."""

    network: torch.nn.Module
    uses_valid_batch: bool

    def begin_epoch(self, epoch: int) -> None: ...
    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, torch.Tensor]: ...
    def evaluation(self) -> Any: ...
    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def describe(self) -> dict: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


SEARCH_CHECKPOINT = {"epoch": int, "valid_passes": int, "network": dict, "strategy": dict, "rng": dict}
"""What a ``RunLoop`` checkpoint must hold, with the types (checked before a resume uses it)."""


class StopRun(NaspError):
    """Raised by a hook's ``end_epoch`` to end the run with this one-line error once the epoch is
    written (see the module's docstring)."""


class Hook:
    """Run behaviour outside the stepper. Every method is optional; ``end_epoch`` returns True
    to stop after this epoch and may add keys to the row; ``state_dict`` is checkpointed."""

    def on_start(self, loop: "RunLoop") -> None:
        """Before the first epoch of this process (after a resume restored the state)."""

    def begin_epoch(self, epoch: int) -> None:
        """Before the stepper's ``begin_epoch``."""

    def end_epoch(self, epoch: int, row: dict) -> bool:
        return False

    def after_checkpoint(self, epoch: int, row: dict) -> None:
        """After the epoch's row and checkpoint are written."""

    def on_end(self, loop: "RunLoop") -> None:
        """After the last epoch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def improves(value: float, best: Optional[float], higher_is_better: bool) -> bool:
    """Whether ``value`` beats ``best`` (``None``: nothing yet, so it does)."""
    return best is None or (value > best if higher_is_better else value < best)


class EarlyStopping(Hook):
    """Stop after ``patience`` epochs without improvement of ``metric``; remembers the best
    network state and restores it at the end of the run."""

    def __init__(self, metric: str, higher_is_better: bool = False, patience: int = 5) -> None:
        self.metric, self.higher_is_better, self.patience = metric, higher_is_better, patience
        self.best: Optional[float] = None
        self.best_epoch = -1
        self.best_state: Optional[dict] = None
        self.network: Optional[torch.nn.Module] = None

    def on_start(self, loop: "RunLoop") -> None:
        self.network = loop.network

    def update(self, epoch: int, metrics: dict, network: torch.nn.Module) -> bool:
        """Record this epoch; returns True when training should stop."""
        value = float(metrics[self.metric])
        if improves(value, self.best, self.higher_is_better):
            self.best, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def end_epoch(self, epoch: int, row: dict) -> bool:
        return self.update(epoch, row, self.network)

    def on_end(self, loop: "RunLoop") -> None:
        if self.best_state is not None:
            loop.network.load_state_dict(self.best_state)
            log.info("restored the best epoch %d (%s %.6g)", self.best_epoch + 1, self.metric, self.best)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]


class KeepBest(Hook):
    """Call ``save()`` whenever ``metric`` improves (e.g. write the best model to a file)."""

    def __init__(self, metric: str, save: Callable[[], None], higher_is_better: bool = False) -> None:
        self.metric, self.save, self.higher_is_better = metric, save, higher_is_better
        self.best: Optional[float] = None

    def end_epoch(self, epoch: int, row: dict) -> bool:
        value = float(row[self.metric])
        if improves(value, self.best, self.higher_is_better):
            self.best = value
            self.save()
        return False

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class OnEpoch(Hook):
    """Call ``fn(epoch, row)`` after every epoch (tests use it to kill a run)."""

    def __init__(self, fn: Callable[[int, dict], None]) -> None:
        self.fn = fn

    def after_checkpoint(self, epoch: int, row: dict) -> None:
        self.fn(epoch, row)


def progress(iterable: Iterable, total: Optional[int], desc: str) -> Iterable:
    """A tqdm bar on stderr, silent when stderr is not a terminal or the log is quiet (``-q``)."""
    from tqdm.auto import tqdm

    quiet = log.level > logging.INFO  # set by the CLI's -q; NOTSET (0) for library callers
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=True if quiet else None, dynamic_ncols=True)


def epoch_label(stage: str, epoch: int, epochs: int, described: Optional[dict] = None) -> str:
    """``search epoch 3/10`` (``epoch 3/10`` without a stage name); ``search warm-up epoch 1/10``
    when the stepper's ``described`` fields say the epoch warms up (``{"warmup": True}``)."""
    if stage and described and described.get("warmup"):
        stage = f"{stage} warm-up"
    return f"{stage} epoch {epoch + 1}/{epochs}" if stage else f"epoch {epoch + 1}/{epochs}"


def epoch_line(epoch: int, epochs: int, row: dict, stage: str = "") -> str:
    """One log line for an epoch: its stage, its scalar metrics, rounded (``retrain epoch 3/10
    train_loss 0.8123 ...``)."""
    parts = [epoch_label(stage, epoch, epochs, row)]
    for key, value in row.items():
        if key == "epoch" or isinstance(value, (dict, list, tuple)):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, str) and len(value) > 40:
            continue
        parts.append(f"{key} {value}")
    return "  ".join(parts)


class RunLoop:
    """Run ``stepper`` for ``epochs`` epochs in ``run``, checkpointing after each; resumes when
    ``run.resume``.

    Args:
        stepper: the strategy (or other stepper) to drive.
        train_batches: ``train_batches(epoch)`` gives that epoch's batches; the order must depend
            on the argument only, so that a resumed run sees the batches an uninterrupted one does.
        evaluate: ``evaluate(network) -> metrics``, run inside ``stepper.evaluation()``.
        epochs: the number of epochs (a hook may stop earlier).
        run: the run directory.
        valid_batches: ``valid_batches(i)``: the run's i-th pass over the validation batches (i = 0,
            1, 2, ... over the whole run, each epoch beginning a new pass), for steppers that read
            them; like ``train_batches`` its order must depend on ``i`` only.
        hooks: run behaviour outside the stepper (``EarlyStopping``, ``KeepBest``, ...); a search
            network's own ``run_hooks()`` follow them.
        stage: the stage's name in the progress bar and the epoch log lines (``search``,
            ``retrain``, ``baseline multiply``, ``refit``, ...).
        world: the ranks of a data-parallel run (default: torch's process group, else one process):
            the network starts from rank 0's state, an epoch's step statistics are averaged over
            the ranks, and after every epoch the ranks must agree on the architecture and weights.
    """

    def __init__(self, stepper: Stepper, train_batches: Callable[[int], Iterable], evaluate: Callable[[Any], dict],
                 epochs: int, run: Any, valid_batches: Optional[Callable[[int], Iterable]] = None,
                 hooks: Sequence[Hook] = (), stage: str = "", world: Optional[World] = None) -> None:
        self.stepper, self.network = stepper, stepper.network
        self.world = world if world is not None else current_world()
        self.train_batches, self.valid_batches, self.evaluate = train_batches, valid_batches, evaluate
        own = self.network.run_hooks() if isinstance(self.network, SearchNetwork) else []
        self.epochs, self.run, self.hooks, self.stage = epochs, run, [*hooks, *own], stage
        self.start_epoch = 0
        self.stopped = False  # a hook ended the run (restored on resume)
        self.failure: Optional[str] = None  # a hook's StopRun message (restored on resume)
        self.valid_passes = 0  # validation passes begun in this run: the next one is valid_batches(valid_passes)
        self.rows: list[dict] = []

    # state ----------------------------------------------------------------------------------
    def state_dict(self, epoch: int, stopped: bool = False) -> dict:
        """Everything a resume needs, in one object (written as ``checkpoint.pt``); ``stopped``:
        a hook ended the run after this epoch (a resume then trains no further epoch); ``failure``:
        the ``StopRun`` message it ended with, if any."""
        return {"epoch": epoch, "stopped": stopped, "failure": self.failure, "valid_passes": self.valid_passes,
                "network": self.network.state_dict(),
                "strategy": self.stepper.state_dict(), "rng": rng_state(),
                "hooks": {key: state for key, state in self._hook_states()}}

    def _hook_keys(self) -> list[str]:
        """A key per hook: its class name and its rank among hooks of that class."""
        seen: dict[str, int] = {}
        keys = []
        for hook in self.hooks:
            name = type(hook).__name__
            keys.append(f"{name}.{seen.get(name, 0)}")
            seen[name] = seen.get(name, 0) + 1
        return keys

    def _hook_states(self) -> list[tuple[str, dict]]:
        """The states of the hooks that have one (stateless hooks may come and go on resume)."""
        return [(key, state) for key, hook in zip(self._hook_keys(), self.hooks) if (state := hook.state_dict())]

    def restore(self) -> None:
        """Load the run's checkpoint (``--resume``) and drop metrics rows written after it."""
        run = self.run
        if not (run.resume and run.has_checkpoint()):
            if run.resume:
                run.truncate_metrics(0)
            return
        # onto the network's device, so that optimizer moments, averages and best states live there
        device = next(iter(self.network.parameters()), torch.zeros(())).device
        state = run.load_checkpoint(map_location=device, required=SEARCH_CHECKPOINT)
        self._check_counts(state, run.file(CHECKPOINT))
        try:
            check_state(self.network, state["network"])
            self.network.load_state_dict(state["network"])
            self.stepper.load_state_dict(state["strategy"])
            set_rng_state(state["rng"])
            saved = state.get("hooks") or {}
            if not isinstance(saved, dict):
                raise TypeError(f"hook states are a {type(saved).__name__}, not a dict")
            for key, hook in zip(self._hook_keys(), self.hooks):
                if key in saved:  # a hook added since the checkpoint starts fresh
                    hook.load_state_dict(saved[key])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise NaspError(f"{run.file(CHECKPOINT)}: does not fit this run ({_short(exc)})") from None
        self.start_epoch = state["epoch"] + 1
        self.stopped = state.get("stopped", False)
        self.failure = state.get("failure")
        self.valid_passes = state["valid_passes"]
        run.truncate_metrics(self.start_epoch)
        log.info("resuming %s at epoch %d", run.path, self.start_epoch + 1)

    def _check_counts(self, state: dict, path: Any) -> None:
        """A NaspError naming ``path`` unless the checkpoint's epoch is one of this run's, ``stopped``
        true or false and ``valid_passes`` a count."""
        def count(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 0

        epoch, passes = state["epoch"], state["valid_passes"]
        if not count(epoch) or epoch >= self.epochs:
            raise NaspError(f"{path}: entry 'epoch' is {epoch!r}, not an epoch of this run (0..{self.epochs - 1})")
        if not isinstance(state.get("stopped", False), bool):
            raise NaspError(f"{path}: entry 'stopped' is {state['stopped']!r}, expected true or false")
        if not count(passes):
            raise NaspError(f"{path}: entry 'valid_passes' is {passes!r}, not a count")

    # the loop -------------------------------------------------------------------------------
    def _valid_stream(self) -> Iterator:
        """Endless validation batches: pass after pass of ``valid_batches(i)``, a fresh pass each
        time one runs out (not cached). ``i`` counts the passes of the whole run (an epoch begins a
        new one; ``valid_passes`` is checkpointed), so no two passes share an index however many
        an epoch takes, and a resumed run sees the passes an uninterrupted one does."""
        while True:
            index = self.valid_passes
            self.valid_passes += 1
            empty = True
            for batch in self.valid_batches(index):
                empty = False
                yield batch
            if empty:
                raise NaspError("the validation data yields no batch")

    def run_epoch(self, epoch: int) -> tuple[dict, bool]:
        """Train and evaluate one epoch; returns (metrics row, stop)."""
        stepper, net = self.stepper, self.network
        t0 = time.perf_counter()
        net.train()
        for hook in self.hooks:
            hook.begin_epoch(epoch)
        stepper.begin_epoch(epoch)
        valid_iter = self._valid_stream() if stepper.uses_valid_batch and self.valid_batches else None
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        batches = self.train_batches(epoch)
        if hasattr(stepper, "epoch_batches"):
            batches = stepper.epoch_batches(epoch, batches)
        total = len(batches) if hasattr(batches, "__len__") else None
        for train_batch in progress(batches, total, epoch_label(self.stage, epoch, self.epochs, stepper.describe())):
            valid_batch = next(valid_iter) if valid_iter is not None else None
            stats = stepper.step(train_batch, valid_batch)
            for key, value in stats.items():
                sums[key] = sums[key] + value if key in sums else value.detach().clone()
            steps += 1
        if steps == 0:
            raise NaspError("the training data yields no batch (fewer ratings/examples than one batch?)")
        sums = self.world.mean_stats(sums)
        # every rank evaluates (and checkpoints) rank 0's running statistics (batch norm), as
        # DistributedDataParallel's broadcast_buffers: a resumed run then continues exactly.
        # Only saved buffers: a non-persistent one is a rank's own cache (the network checkpoints
        # any of it that matters through its ``run_hooks``)
        saved = net.state_dict(keep_vars=True).values()
        self.world.broadcast([b for b in saved if not isinstance(b, torch.nn.Parameter) and b.is_floating_point()])
        train_seconds = time.perf_counter() - t0
        with stepper.evaluation():
            metrics = self.evaluate(net)
        row = {"epoch": epoch + 1, **{k: float(v) / steps for k, v in sums.items()}, **metrics}  # counted from 1
        if isinstance(net, SearchNetwork) and hasattr(stepper, "evaluated_architecture"):
            row["architecture"] = stepper.evaluated_architecture()
        stepper.end_epoch(epoch, metrics)
        self.check_agreement(row.get("architecture"))
        row.update(stepper.describe())  # after end_epoch: e.g. the RNN's switch to averaging
        row["seconds"] = round(time.perf_counter() - t0, 4)
        row["train_seconds"] = round(train_seconds, 4)
        stop = bool(getattr(stepper, "finished", False))  # a search with nothing left to try
        for hook in self.hooks:
            try:
                stop = bool(hook.end_epoch(epoch, row)) or stop
            except StopRun as exc:  # the first one counts; the other hooks still see the row
                self.failure, stop = self.failure or str(exc), True
        return row, stop

    def check_agreement(self, architecture: Any) -> None:
        """In a data-parallel run: a NaspError unless every rank holds this architecture and the
        same weights (a checksum of every parameter; one host copy per epoch)."""
        if not self.world.parallel:
            return
        with torch.no_grad():
            checksum = [float(p.detach().double().sum()) for p in self.network.parameters()]
        self.world.agree({"architecture": architecture}, "the architecture")
        self.world.agree(checksum, "the weights")

    def __call__(self) -> list[dict]:
        """Run (or continue) the loop; returns every metrics row of the run."""
        self.restore()
        if self.failure is not None:  # a resumed run that had stopped with an error
            raise StopRun(self.failure)
        # every rank starts from rank 0's network (a no-op in one process)
        self.world.broadcast_state(self.network)
        self.rows = self.run.read_metrics()
        for hook in self.hooks:
            hook.on_start(self)
        for epoch in range(self.start_epoch, self.epochs):
            if self.stopped:
                break
            row, stop = self.run_epoch(epoch)
            row = json.loads(dumps(row))  # as metrics.jsonl holds it (null for NaN), resumed or not
            self.stopped = stop
            self.run.append_metrics(row)
            self.rows.append(row)
            self.run.save_checkpoint(self.state_dict(epoch, stop))
            for hook in self.hooks:
                hook.after_checkpoint(epoch, row)
            log.info("%s", epoch_line(epoch, self.epochs, row, self.stage))
            if stop and self.failure is None:
                log.info("stopped after epoch %d", epoch + 1)
        for hook in self.hooks:
            hook.on_end(self)
        if self.failure is not None:
            raise StopRun(self.failure)
        return self.rows


def run_search(
    strategy: Stepper,
    train_batches: Callable[[int], Iterable],
    valid_batches: Callable[[int], Iterable],
    evaluate: Callable[[Any], dict],
    epochs: int,
    run: Any,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
    early_stopping: Optional[EarlyStopping] = None,
    hooks: Sequence[Hook] = (),
    stage: str = "",
) -> list[dict]:
    """``RunLoop`` with the two hooks most runs use: ``early_stopping`` (the best network state
    is restored at the end) and ``on_epoch(epoch, row)`` after each checkpoint, then ``hooks``;
    ``stage`` names the stage in the progress bar and the epoch log lines."""
    first = [h for h in (early_stopping, OnEpoch(on_epoch) if on_epoch is not None else None) if h is not None]
    return RunLoop(strategy, train_batches, evaluate, epochs, run, valid_batches, [*first, *hooks], stage)()

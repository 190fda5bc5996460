"""The run loop numbers validation passes over the whole run (``RunLoop.valid_passes``): no two
passes share an index, however many passes an epoch takes (the first rounds began epoch e at
pass e * 1000, so an epoch of more than 1000 passes reused the next epoch's), and a resumed run
sees the indices an uninterrupted one does."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from nasp.loop import OnEpoch, RunLoop
from nasp.runs import RunDir

STEPS = 1_200  # training steps per epoch, each reading one batch of a one-batch validation pass


class Reader:
    """A stepper that only reads its batches (the loop's contract, no optimisation)."""

    uses_valid_batch = True

    def __init__(self) -> None:
        self.network = torch.nn.Linear(1, 1)
        self.seen: list[tuple[int, int]] = []  # (train batch, valid batch) per step

    def begin_epoch(self, epoch: int) -> None: ...
    def evaluation(self): return nullcontext()
    def end_epoch(self, epoch: int, metrics: dict) -> None: ...
    def describe(self) -> dict: return {}
    def state_dict(self) -> dict: return {}
    def load_state_dict(self, state: dict) -> None: ...

    def step(self, train_batch, valid_batch) -> dict:
        self.seen.append((train_batch, valid_batch))
        return {}


def _loop(run: RunDir, stepper: Reader, calls: list[int], hooks=()) -> RunLoop:
    def valid_batches(i: int) -> list[int]:
        calls.append(i)
        return [i]  # one batch per pass, named by its pass index

    return RunLoop(stepper, lambda epoch: list(range(STEPS)), lambda net: {}, 3, run, valid_batches=valid_batches,
                   hooks=hooks)


def test_validation_passes_never_share_an_index(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({})
    calls: list[int] = []
    stepper = Reader()
    _loop(run, stepper, calls)()
    assert calls == list(range(3 * STEPS))  # one pass per step, numbered over the run
    assert len({valid for _, valid in stepper.seen}) == 3 * STEPS


def test_a_resumed_run_reads_the_passes_of_an_uninterrupted_one(tmp_path):
    full_calls: list[int] = []
    full = Reader()
    run = RunDir(tmp_path / "full")
    run.write_config({})
    _loop(run, full, full_calls)()

    def die(epoch: int, row: dict) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    cut = RunDir(tmp_path / "cut")
    cut.write_config({})
    first, calls = Reader(), []
    with pytest.raises(KeyboardInterrupt):
        _loop(cut, first, calls, hooks=[OnEpoch(die)])()
    cut.close()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["valid_passes"] == STEPS
    resumed = Reader()
    _loop(RunDir(tmp_path / "cut", resume=True), resumed, calls)()
    assert calls == full_calls and first.seen + resumed.seen == full.seen


def test_a_checkpoint_without_the_pass_count_is_refused(tmp_path):
    """``valid_passes`` is a required checkpoint entry (no fallback for checkpoints without it)."""
    from nasp.errors import NaspError

    def die(epoch: int, row: dict) -> None:
        raise KeyboardInterrupt

    cut = RunDir(tmp_path / "cut")
    cut.write_config({})
    with pytest.raises(KeyboardInterrupt):
        _loop(cut, Reader(), [], hooks=[OnEpoch(die)])()
    cut.close()
    path = tmp_path / "cut" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["valid_passes"]
    torch.save(state, path)
    with pytest.raises(NaspError, match="no 'valid_passes' entry"):
        _loop(RunDir(tmp_path / "cut", resume=True), Reader(), [])()

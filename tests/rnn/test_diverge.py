"""Diverging language-model runs say so: a warning when the loss keeps rising, one error line when
it is not finite (issue 15 §7) or when the validation perplexity blows up (issue 25 §2)."""
from __future__ import annotations

import importlib
import logging
import math

import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp import NaspError
from nasp.loop import StopRun
from nasp.rnn.diverge import DivergenceWatch, ValidationWatch


def test_rising_loss_warns_once(caplog):
    watch = DivergenceWatch()
    with caplog.at_level(logging.WARNING, logger="nasp"):
        for epoch, loss in enumerate([7.94, 9.33, 12.32, 14.0]):  # the run
            watch.update(epoch, loss)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "epoch 3" in warnings[0] and "diverging" in warnings[0] and "--lr" in warnings[0]


def test_noise_and_recovery_do_not_warn(caplog):
    watch = DivergenceWatch()
    with caplog.at_level(logging.WARNING, logger="nasp"):
        for epoch, loss in enumerate([7.9, 8.1, 7.5, 8.0, 7.4, 7.6, 7.3]):
            watch.update(epoch, loss)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_one_error(loss):
    watch = DivergenceWatch()
    watch.update(0, 5.0)
    with pytest.raises(NaspError, match=r"train_loss is (nan|inf) at epoch 2: the run diverged"):
        watch.update(1, loss)


def test_state_round_trip():
    watch = DivergenceWatch()
    for epoch, loss in enumerate([5.0, 6.0]):
        watch.update(epoch, loss)
    again = DivergenceWatch()
    again.load_state_dict(watch.state_dict())
    assert again.state_dict() == watch.state_dict() == {"best": 5.0, "best_epoch": 0, "rising": 1, "above": 0,
                                                        "warned": False}


def test_loss_above_the_uniform_prediction_warns(caplog):
    watch = DivergenceWatch(ceiling=8.006)  # log(3000): a 3,000-word vocabulary
    with caplog.at_level(logging.WARNING, logger="nasp"):
        for epoch, loss in enumerate([8.823, 8.725, 8.659]):  # a default search on a 5k-line corpus
            watch.update(epoch, loss)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "epoch 2" in warnings[0] and "not learning" in warnings[0]


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_run_that_blows_up_ends_in_one_error_line(command, corpus_dir, tmp_path, tiny):
    # random search: no architecture step (NaN alphas are caught earlier, by the projection)
    extra = ["--genotype", "DARTS_V2"] if command == "train" else ["--strategy", "random", "--candidates", "1"]
    # the largest rate and decay the options allow: w <- w (1 - 1e8) - ... overflows in a few steps
    result = CliRunner().invoke(main, ["rnn", command, "--data", str(corpus_dir), "--epochs", "2", "--lr", "1e4",
                                       "--weight-decay", "1e4", "--clip", "1e38", "--out", str(tmp_path / "run"),
                                       *extra, *tiny])
    assert result.exit_code == 1, result.output
    assert "the run diverged" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "summary.json").exists()


# the validation watch (issue 25 §2: validation perplexity 770 -> 1.9e8 while the training loss stayed 7.3-7.6)
def test_a_validation_blow_up_stops_with_one_error():
    watch = ValidationWatch(vocabulary=3000)
    watch.update(0, math.log(770.0), 7.6)
    with pytest.raises(StopRun, match=r"^valid_ppl 1\.9e\+08 at epoch 2 \(train_loss 7\.3\) is more than 10x its best, "
                                      r"770 at epoch 1: the run diverged; try a lower --lr"):
        watch.update(1, math.log(1.9e8), 7.3)


def test_validation_noise_and_a_first_epoch_above_uniform_do_not_stop():
    watch = ValidationWatch(vocabulary=2571)
    for epoch, ppl in enumerate([25000.0, 2487.0, 9000.0, 466.0, 239.0, 2000.0]):  # below 10x its best, 100x 2,571
        watch.update(epoch, math.log(ppl))
    assert watch.state_dict() == {"best": pytest.approx(math.log(239.0)), "best_epoch": 4, "best_architecture": None}


def test_in_a_search_a_new_cell_that_blows_up_warns_and_the_same_cell_stops(caplog):
    """A sampling strategy's new choice of cell can validate at an overflowing perplexity while the
    weights are sound (equal-time runs of asng, reinforce, random, tpe, local at --lr 5): the
    search goes on with a warning; a blow-up of the cell that validated best still stops it."""
    a, b = {"recurrent": [["tanh", 0]]}, {"recurrent": [["relu", 0]]}
    watch = ValidationWatch(vocabulary=3000)
    watch.update(0, float("nan"), 4.6, a)  # the first epoch: no cell validated yet
    watch.update(1, math.log(80.0), 4.5, a)
    watch.update(2, 700.0, 4.7, b)  # another cell overflows
    watch.update(3, float("nan"), 4.6, b)
    assert sum("the search goes on" in r.getMessage() for r in caplog.records) == 3
    assert watch.state_dict() == {"best": pytest.approx(math.log(80.0)), "best_epoch": 1, "best_architecture": a}
    with pytest.raises(StopRun, match=r"^valid_ppl .* at epoch 5 \(train_loss 4\.6\) is more than 10x its best"):
        watch.update(4, 700.0, 4.6, a)


@pytest.mark.parametrize("loss, match", [(float("nan"), r"valid_loss is nan at epoch 1"),
                                         (math.log(300_001.0), r"valid_ppl 3e\+05 at epoch 1 is more than 100x the vocabulary's 3000 words")])
def test_a_first_epoch_that_is_not_finite_or_far_above_uniform_stops(loss, match):
    with pytest.raises(StopRun, match=match):
        ValidationWatch(vocabulary=3000).update(0, loss)


@pytest.mark.parametrize("command", ["search", "train"])
def test_a_validation_blow_up_ends_the_run_in_one_error_line_with_curves(command, corpus_dir, tmp_path, tiny, monkeypatch):
    # the validation loss jumps by 10 (perplexity x22,000) from the second epoch on; the training loss stays
    module = importlib.import_module(f"nasp.rnn.{command}")
    real, calls = module.evaluate_nll, []
    first_bad = 2 if command == "search" else 3  # train also evaluates the untrained model first

    def blows_up(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) + (10.0 if len(calls) >= first_bad else 0.0)

    monkeypatch.setattr(module, "evaluate_nll", blows_up)
    extra = ["--genotype", "DARTS_V2"] if command == "train" else ["--strategy", "random", "--candidates", "1"]
    args = ["rnn", command, "--data", str(corpus_dir), "--epochs", "3", "--out", str(tmp_path / "run"), *extra, *tiny]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "at epoch 2" in errors[0] and "is more than 10x its best" in errors[0], result.output
    assert "Traceback" not in result.output
    run = tmp_path / "run"
    assert not (run / "summary.json").exists() and (run / "curves.png").stat().st_size > 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # the blow-up epoch's row is written
    again = CliRunner().invoke(main, [*args, "--resume"])  # a resume stops with the same line
    assert again.exit_code == 1 and errors[0] in again.output and not (run / "summary.json").exists()

"""Diverging language-model runs say so: a warning when the loss keeps rising, one error line when
it is not finite (issue 15 §7)."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from cli import main
from nasp import NaspError
from nasp.rnn.diverge import DivergenceWatch


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

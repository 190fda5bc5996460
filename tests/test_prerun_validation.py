"""One pre-run validation for every CNN and RNN command (``nasp.config``): bad input is one
``Error:`` line and a non-zero exit, and no run directory is ever opened (not one created and
removed again), also for learning rates that used to overflow inside torch's optimizers."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp.errors import NaspError
from nasp.runs import RunDir

_spec = importlib.util.spec_from_file_location("rnn_conftest", Path(__file__).parent / "rnn" / "conftest.py")
_rnn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rnn)
RNN_TINY, write_corpus = _rnn.TINY, _rnn.write_corpus

CNN_SEARCH = ["cnn", "search", "--data", "digits", "--epochs", "1", "--subset", "64", "--batch-size", "8",
              "--layers", "1", "--channels", "2", "--threads", "1"]
CNN_TRAIN = ["cnn", "train", "--data", "digits", "--epochs", "1", "--batch-size", "8", "--layers", "1",
             "--channels", "2", "--threads", "1"]


@pytest.fixture
def opened(monkeypatch):
    """The run directories the command opened (``RunDir`` constructed)."""
    paths: list[Path] = []
    init = RunDir.__init__

    def recording(self, path, *args, **kwargs):
        paths.append(Path(path))
        init(self, path, *args, **kwargs)

    monkeypatch.setattr(RunDir, "__init__", recording)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "c")


def _rnn_search(corpus: Path) -> list[str]:
    return ["rnn", "search", "--data", str(corpus), "--epochs", "1", "--threads", "1", *RNN_TINY]


def _rnn_train(corpus: Path) -> list[str]:
    return ["rnn", "train", "--data", str(corpus), "--genotype", "DARTS_V2", "--epochs", "1", "--threads", "1", *RNN_TINY]


def _assert_refused(args: list[str], message: str, out: Path, opened: list[Path]) -> None:
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (RuntimeError, ValueError)), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert opened == [] and not out.exists(), "a run directory was opened before the input was checked"


CNN_CASES = [
    (CNN_SEARCH, ["--channels", "0"], "--channels 0: must be at least 1"),
    (CNN_SEARCH, ["--batch-size", "40"], "--batch-size 40: larger than the 32 examples"),  # --subset 64: 32 + 32
    (CNN_SEARCH, ["--eta", "-1"], "'--eta'"),
    (CNN_SEARCH, ["--space", "huge"], "unknown search space 'huge'"),
    (CNN_SEARCH, ["--strategy", "enas"], "unknown search strategy 'enas'"),
    (CNN_SEARCH, ["--epochs", "0"], "--epochs 0"),
    (CNN_SEARCH, ["--nodes", "0"], "--nodes 0"),
    (CNN_SEARCH, ["--subset", "1"], "--subset 1"),
    (CNN_SEARCH, ["--train-portion", "1"], "--train-portion 1.0"),
    (CNN_SEARCH, ["--warmup-epochs", "3"], "--warmup-epochs (3)"),
    (CNN_SEARCH, ["--arch-lr", "1e38"], "'--arch-lr': 1e+38 is not in the range"),
    (CNN_SEARCH, ["--arch-lr", "nan"], "'--arch-lr': 'nan' is not a number"),
    (CNN_SEARCH, ["--arch-lr", "0"], "'--arch-lr'"),
    (CNN_SEARCH, ["--lr", "1e39"], "'--lr': 1e+39 is not in the range"),
    (CNN_SEARCH, ["--lr", "nan"], "'--lr'"),
    (CNN_SEARCH, ["--lr", "-1"], "'--lr'"),
    (CNN_SEARCH, ["--lr-min", "0.5"], "--lr-min 0.5: larger than --lr 0.025"),
    (CNN_SEARCH, ["--weight-decay", "1e39"], "'--weight-decay'"),
    (CNN_SEARCH, ["--image-size", "0"], "'--image-size'"),
    (CNN_SEARCH, ["--data", "nowhere"], "--data nowhere"),
    (CNN_SEARCH, ["--device", "cuda:7"], "--device cuda:7"),
    (CNN_SEARCH, ["--max-params", "1K"], "--max-params 1K: no cell fits; the cheapest cell of this space costs 58.52K"),
    (CNN_SEARCH, ["--max-madds", "10"], "--max-madds 10: no cell fits; the cheapest cell"),
    (CNN_SEARCH, ["--max-params", "0"], "'--max-params': '0': must be a positive number"),
    (CNN_SEARCH, ["--max-params", "-2M"], "'--max-params': '-2M': must be a positive number"),
    (CNN_SEARCH, ["--max-madds", "lots"], "'--max-madds': 'lots': not an amount"),
    (CNN_SEARCH, ["--max-params", "1M", "--max-madds", "1G"], "--max-params and --max-madds: give one budget at a time"),
    (CNN_SEARCH, ["--max-latency-ms", "5"], "--max-latency-ms needs --latency-table"),
    (CNN_SEARCH, ["--max-latency-ms", "5", "--latency-table", "/nowhere/ops.json"], "/nowhere/ops.json: latency table not found"),
    (CNN_SEARCH, ["--max-params", "1M", "--eval-layers", "0"], "--eval-layers 0"),
    (CNN_SEARCH, ["--cost-network", "teacher"], "'--cost-network'"),
    (CNN_TRAIN, ["--batch-size", "5000"], "--batch-size 5000: larger than the"),
    (CNN_TRAIN, ["--channels", "0"], "--channels 0"),
    (CNN_TRAIN, ["--model", "imagenet", "--channels", "3"], "--channels 3: this network needs an even number"),
    (CNN_TRAIN, ["--model", "vgg"], "unknown model 'vgg'"),
    (CNN_TRAIN, ["--genotype", "DARTS_V9"], "neither a file nor a known genotype"),
    (CNN_TRAIN, ["--lr", "1e39"], "'--lr'"),
    (CNN_TRAIN, ["--label-smoothing", "2"], "'--label-smoothing'"),
    (CNN_TRAIN, ["--drop-path", "1"], "'--drop-path'"),
    (CNN_TRAIN, ["--cutout", "-3"], "'--cutout'"),
    (CNN_TRAIN, ["--auxiliary-weight", "nan"], "'--auxiliary-weight'"),
]


@pytest.mark.parametrize("base, extra, message", CNN_CASES, ids=[" ".join(c[0][:2] + c[1]) for c in CNN_CASES])
def test_bad_cnn_input_opens_no_run_directory(base, extra, message, tmp_path, opened):
    _assert_refused([*base, *extra], message, tmp_path / "run", opened)


RNN_CASES = [
    ("search", ["--arch-lr", "1e38"], "'--arch-lr': 1e+38 is not in the range"),  # overflowed in Adam (beta1 0.9)
    ("search", ["--arch-lr", "nan"], "'--arch-lr'"),
    ("search", ["--lr", "1e39"], "'--lr'"),
    ("search", ["--weight-decay", "-1"], "'--weight-decay'"),
    ("search", ["--tar", "nan"], "'--tar'"),
    ("search", ["--clip", "nan"], "'--clip'"),
    ("search", ["--batch-size", "100"], "valid split has"),  # the architecture batches of the validation split
    ("search", ["--space", "huge"], "unknown RNN search space 'huge'"),
    ("search", ["--warmup-epochs", "3"], "--warmup-epochs (3)"),
    ("search", ["--max-params", "10"], "--max-params 10: no cell fits; the cheapest cell of this space costs 1.28K"),
    ("search", ["--max-params", "0"], "'--max-params'"),
    ("train", ["--eval-batch-size", "100"], "valid split has"),
    ("train", ["--lr", "1e39"], "'--lr'"),
    ("train", ["--genotype", "DARTS_V9"], "neither a file nor a published genotype"),
]


@pytest.mark.parametrize("command, extra, message", RNN_CASES, ids=[" ".join([c[0], *c[1]]) for c in RNN_CASES])
def test_bad_rnn_input_opens_no_run_directory(command, extra, message, corpus, tmp_path, opened):
    base = _rnn_search(corpus) if command == "search" else _rnn_train(corpus)
    _assert_refused([*base, *extra], message, tmp_path / "run", opened)


def test_the_largest_allowed_rates_do_not_overflow_in_the_optimizers(corpus, tmp_path):
    """1e4 (``MAX_RATE``) with Adam's beta1 0.9 is a step of 1e5: far from float32's limit."""
    result = CliRunner().invoke(main, [*_rnn_search(corpus), "--arch-lr", "1e4", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [*CNN_SEARCH, "--arch-lr", "1e4", "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code == 0, result.output


def test_a_tampered_rate_in_config_json_is_refused_on_resume(tmp_path):
    out = tmp_path / "run"
    killed = CliRunner().invoke(main, [*CNN_SEARCH, "--out", str(out)])
    assert killed.exit_code == 0, killed.output
    config = json.loads((out / "config.json").read_text())
    config["options"]["arch_lr"] = 1e38
    (out / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["cnn", "search", "--resume", "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "option --arch-lr = 1e+38" in result.output.splitlines()[-1], result.output


def test_the_search_problem_refuses_a_rate_that_overflows():
    from nasp.strategies import SearchProblem

    for rate in (1e38, float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(NaspError, match="arch_lr"):
            SearchProblem(network=None, loss=None, weight_optimizer=None, arch_lr=rate)

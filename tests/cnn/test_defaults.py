"""Size-dependent defaults follow the data set (digits: CPU-sized; cifar10: the paper's) and
config.json records the values used."""
from __future__ import annotations

import json

from click.testing import CliRunner

from nasp.cli import main
from nasp.cnn import defaults


def _run(*args):
    result = CliRunner().invoke(main, ["cnn", *map(str, args)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _options(out):
    return json.loads((out / "config.json").read_text())["options"]


def test_digits_search_takes_the_digits_defaults(tmp_path):
    out = tmp_path / "s"
    _run("search", "--data", "digits", "--epochs", 1, "--subset", 128, "--layers", 1, "--channels", 2,
         "--threads", 1, "--out", out, "--json")
    options = _options(out)
    assert options["batch_size"] == 32 and options["arch_lr"] == 3e-3  # digits profile
    assert options["layers"] == 1 and options["channels"] == 2 and options["epochs"] == 1  # given ones stay


def test_cifar_search_takes_the_papers_defaults(cifar_dir, tmp_path):
    out = tmp_path / "s"
    _run("search", "--data", cifar_dir, "--epochs", 1, "--subset", 32, "--layers", 1, "--channels", 2,
         "--batch-size", 8, "--threads", 1, "--out", out, "--json")
    assert _options(out)["arch_lr"] == 3e-4


def test_digits_train_takes_the_digits_defaults(tmp_path):
    out = tmp_path / "t"
    summary = _run("train", "--data", "digits", "--genotype", "DARTS_V2", "--epochs", 1, "--layers", 1, "--channels", 2,
                   "--threads", 1, "--out", out, "--json")
    options = _options(out)
    assert options["batch_size"] == 32 and options["drop_path"] == 0.1 and options["model"] == "cifar"
    assert options["cutout"] == 0 and options["label_smoothing"] == 0.0
    assert summary["layers"] == 1 and summary["channels"] == 2


def test_profiles_and_help():
    assert defaults.profile("digits", "cifar") == "digits"
    assert defaults.profile("cifar10", "cifar") == "cifar10" and defaults.profile("my-images", "imagenet") == "imagenet"
    assert defaults.TRAIN.get("cifar10")["layers"] == 20 and defaults.TRAIN.get("digits")["layers"] == 6
    result = CliRunner().invoke(main, ["cnn", "train", "--help"])
    assert "20 on cifar10" in result.output and "6 on digits" in result.output


def test_configs_fill_the_profile_without_changing_the_options():
    from nasp.cnn.config import CNNSearchConfig, CNNTrainConfig
    from nasp.cnn.data import load_data

    data = load_data("digits")
    opts = {"data": "digits", "epochs": None, "batch_size": 16, "layers": None, "channels": None, "arch_lr": None,
            "out": "runs/x", "threads": 1, "resume": False}
    before = dict(opts)
    config = CNNSearchConfig.from_options(opts, data)
    assert opts == before  # the caller's dict is not mutated
    assert (config.epochs, config.batch_size, config.layers, config.channels, config.arch_lr) == (10, 16, 5, 8, 3e-3)
    assert "out" not in config.options() and config.options()["epochs"] == 10
    train = CNNTrainConfig.from_options({"data": "digits", "model": "auto", "cutout": None, "label_smoothing": None}, data)
    assert (train.model, train.cutout, train.label_smoothing, train.layers, train.drop_path) == ("cifar", 0, 0.0, 6, 0.1)

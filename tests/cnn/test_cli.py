import json

import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp.cnn.genotypes import Genotype

TINY = ["--layers", "2", "--channels", "2", "--batch-size", "8", "--device", "cpu"]


def _invoke(*args):
    return CliRunner().invoke(main, ["cnn", *map(str, args)])


def _summary(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.parametrize("strategy", ["nasp", "darts", "darts2", "random", "no-auto"])
def test_one_search_epoch_per_strategy_gives_a_valid_genotype(strategy, cifar_dir, tmp_path):
    out = tmp_path / "run"
    s = _summary(_invoke("search", "--strategy", strategy, "--data", cifar_dir, "--epochs", 1, "--candidates", 1,
                         *TINY, "--subset", 32, "--out", out, "--json"))
    for key in ("search_seconds", "seconds_per_epoch", "peak_memory_mb", "valid_acc", "params_of_derived_cell"):
        assert key in s
    g = Genotype.from_json(json.loads((out / "arch.json").read_text()))
    assert len(g.normal) == 8 and len(g.reduce) == 8
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and Genotype.from_json(rows[0]["architecture"])
    assert (out / "cells.png").stat().st_size > 1000 and (out / "summary.json").exists()


def test_nasp12_space_with_eta_and_archive_data(cifar_tar, tmp_path):
    s = _summary(_invoke("search", "--space", "nasp12", "--eta", "1.0", "--data", cifar_tar, "--epochs", 2, *TINY,
                         "--subset", 32, "--warmup-epochs", 1, "--threads", 1, "--out", tmp_path / "r", "--json"))
    assert s["space"] == "nasp12" and s["eta"] == 1.0 and s["epochs"] == 2


def test_killed_search_resumes_to_the_same_result(cifar_dir, tmp_path, monkeypatch):
    from nasp.runs import RunDir

    args = ["search", "--data", cifar_dir, *TINY, "--seed", "3", "--epochs", "2"]
    full = _summary(_invoke(*args, "--out", tmp_path / "full", "--json"))
    save = RunDir.save_checkpoint

    def save_then_die(self, state):  # killed right after the checkpoint of epoch 0
        save(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    cut = tmp_path / "cut"
    killed = _invoke(*args, "--out", cut)
    assert killed.exit_code == 130 and not (cut / "summary.json").exists() and (cut / "checkpoint.pt").exists()
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    resumed = _summary(_invoke("search", "--out", cut, "--resume", "--json"))
    assert resumed["genotype"] == full["genotype"]
    assert resumed["valid_acc"] == pytest.approx(full["valid_acc"])
    rows = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows(cut)] == pytest.approx([r["train_loss"] for r in rows(tmp_path / "full")])


def test_digits_search_then_train_beats_chance_by_far(tmp_path):
    search = tmp_path / "s"
    _summary(_invoke("search", "--data", "digits", "--epochs", 1, "--layers", 2, "--channels", 4, "--batch-size", 32,
                     "--subset", 320, "--device", "cpu", "--out", search, "--json"))
    s = _summary(_invoke("train", "--genotype", search, "--data", "digits", "--epochs", 2, "--layers", 3, "--channels", 8,
                         "--batch-size", 48, "--device", "cpu", "--out", tmp_path / "t", "--json"))
    assert s["test_acc"] > 0.5, s  # chance is 0.1
    assert s["params"] > 0 and s["flops"] > 0


def test_the_summaries_name_the_network_of_every_count(cifar_dir, tmp_path):
    # issue 25 §6: search's params_eval_network (20x36) beside train's params (6x16), no network named
    search = tmp_path / "s"
    s = _summary(_invoke("search", "--data", cifar_dir, "--epochs", 1, *TINY, "--subset", 32, "--eval-layers", 2,
                         "--eval-channels", 4, "--out", search, "--json"))
    t = _summary(_invoke("train", "--genotype", search, "--data", cifar_dir, "--epochs", 1, "--layers", 2,
                         "--channels", 4, "--batch-size", 8, "--device", "cpu", "--out", tmp_path / "t", "--json"))
    assert s["derived_cells_network"].startswith("search network, 2 cells x 2 channels")
    assert s["eval_network"].startswith("cifar evaluation network, 20 cells x 36 channels")
    assert s["params_eval_network"] > t["params"] > 0
    # the cost network is the one cnn train builds: the same count, the same name
    assert s["params_cost_network"] == t["params"] and s["cost_network"] == t["params_network"].split(" (")[0]
    assert t["params_network"].startswith("cifar evaluation network, 2 cells x 4 channels, 3x32x32 images")
    assert (search / "curves.png").exists() and (tmp_path / "t" / "curves.png").exists()


@pytest.mark.smoke
def test_search_with_odd_channels_works(cifar_dir, tmp_path):
    s = _summary(_invoke("search", "--data", cifar_dir, "--epochs", 1, "--layers", 2, "--channels", 3, "--batch-size", 8,
                         "--subset", 32, "--device", "cpu", "--out", tmp_path / "r", "--json"))
    assert s["epochs"] == 1


@pytest.mark.smoke
def test_train_on_image_folder_with_the_imagenet_network(tmp_path):
    from PIL import Image

    for split, n in (("train", 4), ("val", 2)):
        for c, cls in enumerate(("a", "b")):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), (200 * c, 40 * i, 90)).save(tmp_path / "imgs" / split / cls / f"{i}.jpg")
    s = _summary(_invoke("train", "--genotype", "NASP", "--data", tmp_path / "imgs", "--image-size", 32, "--epochs", 1,
                         "--layers", 3, "--channels", 4, "--batch-size", 4, "--device", "cpu", "--out", tmp_path / "t", "--json"))
    assert s["model"] == "imagenet" and 0.0 <= s["test_acc"] <= 1.0


@pytest.mark.smoke
def test_train_named_genotype_on_cifar_files(cifar_dir, tmp_path):
    s = _summary(_invoke("train", "--genotype", "DARTS_V1", "--data", cifar_dir, "--epochs", 1, "--layers", 2,
                         "--channels", 2, "--batch-size", 16, "--device", "cpu", "--out", tmp_path / "t", "--json"))
    assert set(s) >= {"test_acc", "params", "flops"}


def _assert_clean_error(result, message, out=None):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    if out is not None:
        assert not (out / "summary.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--batch-size", "1"], "--batch-size 1: must be at least 2"),
        (["search", "--channels", "0"], "--channels 0: must be at least 1"),
        (["train", "--model", "imagenet", "--channels", "3"], "--channels 3: this network needs an even number"),
        (["search", "--layers", "0"], "--layers 0"),
        (["search", "--batch-size", "500"], "--batch-size 500: larger than the"),
        (["search", "--space", "huge"], "unknown search space 'huge'"),
        (["search", "--strategy", "enas"], "unknown search strategy 'enas'"),
        (["search", "--strategy", "fixed"], "unknown search strategy 'fixed'"),
        (["search", "--device", "cuda:7"], "--device cuda:7"),
        (["train", "--genotype", "DARTS_V9"], "neither a file nor a known genotype"),
        (["train", "--batch-size", "1"], "--batch-size 1"),
    ],
)
def test_bad_options(args, message, cifar_dir, tmp_path):
    out = tmp_path / "run"
    result = _invoke(*args, "--data", cifar_dir, "--epochs", 1, "--out", out)
    _assert_clean_error(result, message, out)
    assert not out.exists()  # nothing half-written left behind


def test_bad_data_and_genotype_files(tmp_path, cifar_writer):
    partial = cifar_writer(tmp_path / "partial", skip=("data_batch_5",))
    _assert_clean_error(_invoke("search", "--data", partial, *TINY, "--out", tmp_path / "a"), "missing data_batch_5", tmp_path / "a")
    bad_tar = tmp_path / "cifar.tar.gz"
    bad_tar.write_bytes(b"\x1f\x8b\x08garbage")
    _assert_clean_error(_invoke("search", "--data", bad_tar, *TINY, "--out", tmp_path / "b"), "corrupt or unreadable archive")
    _assert_clean_error(_invoke("search", "--data", tmp_path / "nothing", *TINY, "--out", tmp_path / "n"), "no such file or directory")
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"normal": [["warp_drive", 0], ["skip_connect", 1]], "normal_concat": [2],
                             "reduce": [["skip_connect", 0], ["skip_connect", 1]], "reduce_concat": [2]}))
    _assert_clean_error(_invoke("train", "--genotype", g, "--data", "digits", "--out", tmp_path / "c"), "unknown op 'warp_drive'")
    g.write_text(json.dumps({"normal": [["skip_connect", 0], ["skip_connect", 5]], "normal_concat": [2],
                             "reduce": [["skip_connect", 0], ["skip_connect", 1]], "reduce_concat": [2]}))
    _assert_clean_error(_invoke("train", "--genotype", g, "--data", "digits"), "input 5 of node 0")
    assert not (tmp_path / "c").exists()


def test_out_directory_rules(cifar_dir, tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "x").write_text("keep")
    _assert_clean_error(_invoke("search", "--data", cifar_dir, *TINY, "--out", out), "not empty")
    _assert_clean_error(_invoke("search", "--resume"), "--resume needs --out")


def test_cifar10_is_a_known_data_set(tmp_path):
    result = CliRunner().invoke(main, ["data", "list", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0
    names = {d["name"] for d in json.loads(result.output)["datasets"]}
    assert "cifar10" in names


@pytest.mark.parametrize("unrolled", ["plain", "darts"])
def test_darts2_search_uses_the_unrolled_form_given(unrolled, cifar_dir, tmp_path, monkeypatch):
    from nasp.strategies import darts

    calls = []
    original = darts.UNROLLED[unrolled]
    monkeypatch.setitem(darts.UNROLLED, unrolled, lambda *a: calls.append(unrolled) or original(*a))
    out = tmp_path / "run"
    _summary(_invoke("search", "--strategy", "darts2", "--unrolled", unrolled, "--data", cifar_dir, "--epochs", 1,
                     *TINY, "--subset", 32, "--out", out, "--json"))
    assert calls and set(calls) == {unrolled}
    assert json.loads((out / "config.json").read_text())["options"]["unrolled"] == unrolled

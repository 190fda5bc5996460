import json

import pytest
from click.testing import CliRunner

from nasp.cli import main


def _invoke(args):
    return CliRunner().invoke(main, args)


def test_search_then_train_end_to_end(corpus_dir, tmp_path, tiny):
    out = tmp_path / "search"
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--epochs", "1", "--strategy", "nasp",
                      "--seed", "3", "--out", str(out), "--json", *tiny])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"search_seconds", "seconds_per_epoch", "peak_memory_mb", "valid_ppl"} <= set(summary)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "arch.json", "cell.png", "curves.png", "summary.json"):
        assert (out / name).exists(), name
    arch = json.loads((out / "arch.json").read_text())
    assert arch["type"] == "rnn-genotype" and len(arch["recurrent"]) == 8

    trained = tmp_path / "train"
    result = _invoke(["rnn", "train", "--data", str(corpus_dir), "--genotype", str(out), "--epochs", "2", "--lr", "5",
                      "--out", str(trained), "--json", *tiny])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"valid_ppl", "test_ppl", "params"} <= set(summary)
    assert summary["genotype"] == arch
    assert all((trained / name).exists() for name in ("model.pt", "cell.png", "curves.png"))


def test_train_resume_continues_a_killed_run(corpus_dir, tmp_path, tiny, monkeypatch):
    from nasp.rnn.train import Trainer

    def args(out):
        return ["rnn", "train", "--data", str(corpus_dir), "--genotype", "DARTS_V2", "--epochs", "3",
                "--out", str(out), "--json", *tiny]

    assert _invoke(args(tmp_path / "full")).exit_code == 0
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    original = Trainer.train_segments

    def dies_in_epoch_1(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_segments", dies_in_epoch_1)
    killed = _invoke(args(tmp_path / "killed"))
    assert killed.exit_code == 130 and not (tmp_path / "killed" / "summary.json").exists()
    monkeypatch.setattr(Trainer, "train_segments", original)
    result = _invoke([*args(tmp_path / "killed"), "--resume"])
    assert result.exit_code == 0, result.output
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert (resumed["valid_ppl"], resumed["test_ppl"]) == (full["valid_ppl"], full["test_ppl"])
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k not in ("seconds", "train_seconds")} for l in p.read_text().splitlines()]
    assert strip(tmp_path / "killed" / "metrics.jsonl") == strip(tmp_path / "full" / "metrics.jsonl")


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_split_file_is_named(corpus_dir, tmp_path, tiny):
    (corpus_dir / "ptb.test.txt").unlink()
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--out", str(tmp_path / "o"), *tiny])
    _assert_one_line_error(result, "missing test split", "ptb.test.txt")
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_empty_corpus(corpus_dir, tmp_path, tiny):
    (corpus_dir / "ptb.train.txt").write_text("")
    result = _invoke(["rnn", "train", "--data", str(corpus_dir), "--genotype", "DARTS_V2", "--out", str(tmp_path / "o"), *tiny])
    _assert_one_line_error(result, "ptb.train.txt", "empty corpus")


@pytest.mark.parametrize("recurrent, fragment", [
    ([["swish", 0]] + [["tanh", 0]] * 7, "unknown activation 'swish'"),
    ([["tanh", 0], ["relu", 5]] + [["tanh", 0]] * 6, "node 2: bad predecessor 5"),
])
def test_bad_genotype_file(corpus_dir, tmp_path, tiny, recurrent, fragment):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"recurrent": recurrent}))
    result = _invoke(["rnn", "train", "--data", str(corpus_dir), "--genotype", str(path), "--out", str(tmp_path / "o"), *tiny])
    _assert_one_line_error(result, "g.json", fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--strategy", "enas"], "unknown search strategy 'enas'"),
    (["--space", "huge"], "unknown RNN search space 'huge'"),
    (["--device", "tpu"], "--device"),
])
def test_bad_search_options(corpus_dir, tmp_path, tiny, extra, fragment):
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--out", str(tmp_path / "o"), *tiny, *extra])
    _assert_one_line_error(result, fragment)


def test_corpus_too_small_for_the_batch(corpus_dir, tmp_path, tiny):
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--out", str(tmp_path / "o"), *tiny,
                      "--batch-size", "100000"])
    _assert_one_line_error(result, "train split has", "too few for batch size 100000")
    assert not (tmp_path / "o").exists()


def test_search_resume_needs_only_out(corpus_dir, tmp_path, tiny):
    out = tmp_path / "s"
    assert _invoke(["rnn", "search", "--data", str(corpus_dir), "--epochs", "1", "--space", "small", "--out", str(out),
                    *tiny]).exit_code == 0
    (out / "summary.json").unlink()
    result = _invoke(["rnn", "search", "--out", str(out), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["space"] == "small"
    _assert_one_line_error(_invoke(["rnn", "search", *tiny]), "--data is required")
    _assert_one_line_error(_invoke(["rnn", "train", "--data", str(corpus_dir), *tiny]), "--genotype is required")


def test_unknown_data_and_genotype_names(tmp_path, tiny):
    result = _invoke(["rnn", "train", "--data", str(tmp_path / "none"), "--genotype", "DARTS_V2", *tiny])
    _assert_one_line_error(result, "no such folder")
    result = _invoke(["rnn", "train", "--data", str(tmp_path), "--genotype", "NOPE", *tiny])
    _assert_one_line_error(result, "neither a file nor a published genotype")


def test_help_lists_contract_options():
    for command, options in {
        "search": ["--strategy", "--resume"],
        "train": ["--genotype"],
    }.items():
        result = _invoke(["rnn", command, "--help"])
        assert result.exit_code == 0
        for opt in ["--data", "--epochs", "--batch-size", "--bptt", "--emb-size", "--hidden-size", "--seed",
                    "--device", "--out", "--json", *options]:
            assert opt in result.output, (command, opt)


def test_search_with_automatic_warmup_and_a_warmup_too_long(corpus_dir, tmp_path, tiny):
    out = tmp_path / "auto"
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--epochs", "2", "--warmup-epochs", "auto",
                      "--out", str(out), "--json", *tiny])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["warmup"] for r in rows] == [True, False]
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--epochs", "2", "--warmup-epochs", "2",
                      "--out", str(tmp_path / "long"), *tiny])
    assert result.exit_code == 1 and "Error: --warmup-epochs (2) must be" in result.output
    assert not (tmp_path / "long").exists()


@pytest.mark.slow  # 20 s a case; make test-all runs them
@pytest.mark.parametrize("unrolled", ["plain", "darts"])
def test_darts2_search_uses_the_unrolled_form_given(unrolled, corpus_dir, tmp_path, tiny, monkeypatch):
    from nasp.strategies import darts

    calls = []
    original = darts.UNROLLED[unrolled]
    monkeypatch.setitem(darts.UNROLLED, unrolled, lambda *a: calls.append(unrolled) or original(*a))
    out = tmp_path / "run"
    result = _invoke(["rnn", "search", "--data", str(corpus_dir), "--epochs", "1", "--strategy", "darts2",
                      "--unrolled", unrolled, "--out", str(out), "--json", *tiny])
    assert result.exit_code == 0, result.output
    assert calls and set(calls) == {unrolled}
    assert json.loads((out / "config.json").read_text())["options"]["unrolled"] == unrolled

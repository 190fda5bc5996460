import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nasp.cli import main


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


FAST = ["--dim", "8", "--batch-size", "128"]


def test_search_train_recommend_end_to_end(tiny_ratings, tmp_path):
    out = tmp_path / "search"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "3", "--warmup-epochs", "1", "--max-epochs", "3",
                *FAST, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    for key in ("valid_rmse", "test_rmse", "test_mae", "seconds", "interaction", "search_seconds"):
        assert key in summary
    for key in ("search_train_ratings_per_second", "train_ratings_per_second", "refit_train_ratings_per_second"):
        assert summary[key] > 0, key
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "arch.json", "summary.json", "model.pt"):
        assert (out / name).exists(), name
    arch = json.loads((out / "arch.json").read_text())
    assert arch["interaction"] in arch["alpha"]
    assert json.loads((out / "summary.json").read_text())["test_rmse"] == summary["test_rmse"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]  # epochs count from 1
    best = min((r for r in rows if not r["warmup"]), key=lambda r: r["valid_rmse"])
    assert arch["interaction"] == best["architecture"]["interaction"] and summary["chosen_at_epoch"] == best["epoch"]

    trained = tmp_path / "train"
    r = _invoke("sif", "train", "--arch", out / "arch.json", "--data", tiny_ratings, "--max-epochs", "2",
                "--batch-size", "128", "--out", trained, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["interaction"] == arch["interaction"]

    r = _invoke("sif", "recommend", "--model", trained, "--user", "3", "-k", "5", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert len(rec["items"]) == 5
    assert rec["items"][0]["title"].startswith("Movie number")
    scores = [item["score"] for item in rec["items"]]
    assert scores == sorted(scores, reverse=True)
    r = _invoke("sif", "recommend", "--model", trained, "--user", "3", "-k", "2")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 3  # a header line, two items


@pytest.mark.parametrize("ifc", ["multiply", "gmf", "mlp", "concat"])
def test_train_fixed_baselines(tiny_ratings, tmp_path, ifc):
    r = _invoke("sif", "train", "--ifc", ifc, "--data", tiny_ratings, "--max-epochs", "2", *FAST,
                "--out", tmp_path / ifc, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["interaction"] == ifc and summary["epochs_trained"] == 2
    rows = [json.loads(line) for line in (tmp_path / ifc / "metrics.jsonl").read_text().splitlines()]
    want = summary["train_ratings"] * len(rows) / sum(row["train_seconds"] for row in rows)
    assert summary["train_ratings_per_second"] == pytest.approx(want, rel=1e-3)


def test_search_strategies_run(tiny_ratings, tmp_path):
    for strategy in ("darts", "random", "no-auto"):
        r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", strategy, "--epochs", "2", "--candidates", "2",
                    "--no-retrain", *FAST, "--out", tmp_path / strategy, "--json")
        assert r.exit_code == 0, (strategy, r.output)
        assert json.loads(r.stdout)["interaction"]
        # --candidates is read by random search only; the others say they ignore it
        assert ("ignores --candidates" in r.stderr) == (strategy != "random"), r.stderr


def test_resume_finishes_an_interrupted_search(tiny_ratings, tmp_path):
    out = tmp_path / "r"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "2", "--no-retrain", *FAST, "--out", out)
    assert r.exit_code == 0
    (out / "summary.json").unlink()  # as if killed before the end
    (out / "search.json").unlink()
    r = _invoke("sif", "search", "--resume", "--out", out, "--json")  # --resume alone: the saved --data
    assert r.exit_code == 0, r.output
    assert (out / "summary.json").exists()


def test_resume_after_the_refit_gives_the_same_summary(tiny_ratings, tmp_path):
    out = tmp_path / "r"
    args = ["sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "2", "--warmup-epochs", "1", "--max-epochs", "3", *FAST]
    r = _invoke(*args, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    (out / "summary.json").unlink()  # as if killed just before the end
    r = _invoke("sif", "search", "--resume", "--out", out, "--json")  # --resume alone: the saved --data
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["test_rmse"] == pytest.approx(first["test_rmse"], abs=1e-6)
    assert again["refit_epochs"] == first["refit_epochs"]


def _error(result):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_inputs_give_one_line_and_no_finished_run(tmp_path):
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t3\t0\n1\t2\tx\t0\n")
    out = tmp_path / "run"
    assert "line 2" in _error(_invoke("sif", "search", "--data", bad, "--out", out))
    assert not out.exists()  # the data is read before the run directory is made
    assert "no such file" in _error(_invoke("sif", "search", "--data", tmp_path / "missing.data", "--out", tmp_path / "r2"))
    assert "unknown data set" in _error(_invoke("sif", "search", "--data", "ml-7k", "--out", tmp_path / "r3"))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04garbage")
    assert "unreadable archive" in _error(_invoke("sif", "train", "--ifc", "multiply", "--data", junk, "--out", tmp_path / "r4"))
    empty = tmp_path / "empty.data"
    empty.write_text("")
    assert "empty file" in _error(_invoke("sif", "train", "--ifc", "plus", "--data", empty, "--out", tmp_path / "r5"))
    two = tmp_path / "two.data"
    two.write_text("1\t2\n3\t4\n")
    assert "no rating column; the rating task needs one" in _error(_invoke("sif", "train", "--ifc", "plus", "--data", two, "--out", tmp_path / "r6"))
    for path in (tmp_path / "r2", tmp_path / "r3", tmp_path / "r4"):
        assert not (path / "summary.json").exists()


def test_bad_arch_and_options(tiny_ratings, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"interaction": "outer_product"}))
    assert "unknown interaction op 'outer_product'" in _error(_invoke("sif", "train", "--arch", arch, "--data", tiny_ratings))
    arch.write_text("{not json")
    assert "not valid JSON" in _error(_invoke("sif", "train", "--arch", arch, "--data", tiny_ratings))
    assert "not found" in _error(_invoke("sif", "train", "--arch", tmp_path / "none.json", "--data", tiny_ratings))
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "enas")
    assert r.exit_code == 2 and "Invalid value for '--strategy'" in r.output and "Traceback" not in r.output
    r = _invoke("sif", "train", "--data", tiny_ratings)
    assert r.exit_code == 2 and "exactly one of --arch" in r.output
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _error(_invoke("sif", "search", "--data", tiny_ratings, "--device", "cuda", "--out", tmp_path / "c"))
        assert not (tmp_path / "c").exists()
    assert "not a device" in _error(_invoke("sif", "search", "--data", tiny_ratings, "--device", "gpu0", "--out", tmp_path / "d"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert "not empty" in _error(_invoke("sif", "search", "--data", tiny_ratings, "--out", busy))
    assert (busy / "keep.txt").read_text() == "x"


def test_recommend_errors(tiny_ratings, tmp_path):
    out = tmp_path / "m"
    assert _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "1", *FAST, "--out", out).exit_code == 0
    assert "unknown user 'nobody'" in _error(_invoke("sif", "recommend", "--model", out, "--user", "nobody", "--fallback", "none"))
    assert "no trained model" in _error(_invoke("sif", "recommend", "--model", tmp_path, "--user", "1"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    assert "cannot be read as a SIF model" in _error(_invoke("sif", "recommend", "--model", broken, "--user", "1"))
    r = _invoke("sif", "recommend", "--model", out, "--user", "1", "-k", "0")
    assert r.exit_code == 2 and "0 is not in the range" in r.output


def test_help_texts():
    for args in (["--help"], ["sif", "--help"], ["sif", "search", "--help"], ["sif", "train", "--help"], ["sif", "recommend", "--help"]):
        r = _invoke(*args)
        assert r.exit_code == 0 and "Usage" in r.output
    r = _invoke("--version")
    assert r.exit_code == 0 and "nasp" in r.output


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--dim", "-3"), ("--batch-size", "0"), ("--lr", "0"),
                                           ("--candidates", "0"), ("--test-ratio", "1.5")])
def test_out_of_range_options(tiny_ratings, tmp_path, option, value):
    r = _invoke("sif", "search", "--data", tiny_ratings, option, value, "--out", tmp_path / "x")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert option in r.output
    assert not (tmp_path / "x" / "summary.json").exists()


def test_warmup_not_shorter_than_search_is_a_one_line_error(tiny_ratings, tmp_path):
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "3", "--warmup-epochs", "3",
                "--out", tmp_path / "w")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: --warmup-epochs (3) must be")
    assert not (tmp_path / "w").exists()  # checked before the run directory is made


def test_strategies_without_a_warmup_ignore_the_option(tiny_ratings, tmp_path):
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "darts", "--epochs", "2", "--warmup-epochs", "3",
                "--no-retrain", *FAST, "--out", tmp_path / "d", "--json")
    assert r.exit_code == 0, r.output


def test_warmup_auto_runs_and_a_bad_warmup_value_is_a_usage_error(tiny_ratings, tmp_path):
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "3", "--warmup-epochs", "auto", "--no-retrain",
                *FAST, "--out", tmp_path / "auto", "--json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["warmup"] is True and rows[-1]["warmup"] is False
    r = _invoke("sif", "search", "--data", tiny_ratings, "--warmup-epochs", "soon", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "'soon' is not a count of epochs (0, 1, ...) or 'auto'" in r.output
    assert not (tmp_path / "bad").exists()


def test_refit_trains_again_on_train_plus_valid(tiny_ratings, tmp_path):
    out = tmp_path / "refit"
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "4", *FAST, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["refit_epochs"] == summary["best_epoch"]
    assert "early_stopped_test_rmse" in summary and summary["test_rmse"] > 0
    refit_rows = (out / "refit" / "metrics.jsonl").read_text().strip().splitlines()
    assert len(refit_rows) == summary["best_epoch"]
    state = torch.load(out / "model.pt", weights_only=True)["state"]
    assert state["user_history.neighbours"].numel() == summary["train_ratings"] + summary["valid_ratings"]
    r = _invoke("sif", "train", "--ifc", "multiply", "--no-refit", "--no-implicit", "--head", "ball", "--data", tiny_ratings,
                "--max-epochs", "2", *FAST, "--out", tmp_path / "plain", "--json")
    assert r.exit_code == 0, r.output
    plain = json.loads(r.stdout)
    assert "refit_epochs" not in plain and plain["params"] < summary["params"]
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["options"]["head"] == "ball"


def test_bad_head_is_rejected(tiny_ratings, tmp_path):
    r = _invoke("sif", "train", "--ifc", "multiply", "--head", "cube", "--data", tiny_ratings, "--out", tmp_path / "h")
    assert r.exit_code == 2 and "Invalid value for '--head'" in r.output and not (tmp_path / "h").exists()
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"interaction": "multiply", "model": {"dim": 4, "head": "cube"}}))
    assert "unknown head 'cube'" in _error(_invoke("sif", "train", "--arch", arch, "--data", tiny_ratings, "--out", tmp_path / "a"))
    assert not (tmp_path / "a").exists()  # the arch file is checked before the run directory is made


def test_warm_started_retrain_and_refit_load_the_searched_weights(tiny_ratings, tmp_path):
    out = tmp_path / "warm"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "2", "--warmup-epochs", "1", "--max-epochs", "2",
                "--warm-start", *FAST, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["refit_epochs"] == summary["best_epoch"]
    assert (out / "retrain" / "metrics.jsonl").exists() and (out / "refit" / "metrics.jsonl").exists()


class Killed(Exception):
    """Stands in for a kill: raised right after a checkpoint was written."""


def _phase(path):
    return path.parent.name if path.parent.name in ("retrain", "refit") else "search"


def _stable(summary):
    return {k: v for k, v in summary.items() if "seconds" not in k and not k.endswith("_per_second") and k != "run_dir"}  # timings vary


def _kill_args(data):
    return ["sif", "search", "--data", data, "--strategy", "nasp", "--epochs", "3", "--warmup-epochs", "1", "--max-epochs", "30",
            "--patience", "1", "--lr", "0.5", "--reg", "0", *FAST, "--json"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted search (+ retrain + refit): its data, summary and the phase of every
    checkpoint it wrote, in order."""
    from nasp.runs import RunDir

    from .conftest import planted_ratings, write_udata

    folder = tmp_path_factory.mktemp("kill")
    data = write_udata(folder / "u.data", planted_ratings("multiply", users=60, items=40, n=1500, seed=1))
    saves = []
    real_save = RunDir.save_checkpoint

    def recording(self, state):
        real_save(self, state)
        saves.append(_phase(self.file("checkpoint.pt")))

    RunDir.save_checkpoint = recording
    try:
        r = _invoke(*_kill_args(data), "--out", folder / "whole")
    finally:
        RunDir.save_checkpoint = real_save
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["epochs_trained"] < 30 and summary["epochs_trained"] == summary["best_epoch"] + 1  # early stopping ended it
    return data, summary, saves


@pytest.mark.parametrize("phase,where", [("search", "middle"), ("retrain", "middle"), ("refit", "middle"), ("retrain", "start")])
def test_a_kill_in_any_phase_resumes_to_the_same_summary(uninterrupted, tmp_path, monkeypatch, phase, where):
    """Killed in the middle of a phase (after a checkpoint) or before a phase's first checkpoint."""
    from nasp.runs import RunDir

    data, first, saves = uninterrupted
    in_phase = [i for i, p in enumerate(saves) if p == phase]
    kill_at = in_phase[len(in_phase) // 2] if where == "middle" else in_phase[0]
    real_save = RunDir.save_checkpoint
    count = []

    def killing(self, state):
        if len(count) == kill_at and where == "start":
            raise Killed  # before this phase wrote anything
        real_save(self, state)
        count.append(1)
        if len(count) == kill_at + 1:
            raise Killed

    monkeypatch.setattr(RunDir, "save_checkpoint", killing)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        _invoke(*_kill_args(data), "--out", out)
    assert not (out / "summary.json").exists()
    monkeypatch.setattr(RunDir, "save_checkpoint", real_save)
    again = _invoke("sif", "search", "--resume", "--out", out, "--json")
    assert again.exit_code == 0, again.output
    assert _stable(json.loads(again.output)) == _stable(first)


def test_runs_without_a_test_split_finish_without_test_keys(tiny_ratings, tmp_path):
    for command, extra in (("search", ["--epochs", "2"]), ("train", ["--ifc", "multiply"])):
        out = tmp_path / command
        r = _invoke("sif", command, "--data", tiny_ratings, *extra, "--max-epochs", "2", *FAST, "--test-ratio", "0",
                    "--out", out, "--json")
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert not [k for k in summary if "rmse" in k and "test" in k or k.startswith("test_ma")], summary
        assert summary["test_ratings"] == 0 and summary["refit_epochs"] >= 1


def test_the_summary_names_where_test_rmse_comes_from_and_the_refit_logs_no_validation(tiny_ratings, tmp_path):
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", *FAST,
                "--out", tmp_path / "refit", "--json")
    summary = json.loads(r.stdout)
    assert summary["test_rmse_source"] == "refit" and "early_stopped_test_rmse" in summary
    rows = [json.loads(line) for line in (tmp_path / "refit" / "refit" / "metrics.jsonl").read_text().splitlines()]
    assert rows and not [k for row in rows for k in row if k.startswith("valid")]  # no empty validation panel
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", *FAST, "--no-refit",
                "--out", tmp_path / "early", "--json")
    summary = json.loads(r.stdout)
    assert summary["test_rmse_source"] == "early-stopped" and "early_stopped_test_rmse" not in summary
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", *FAST, "--valid-ratio", "0",
                "--out", tmp_path / "novalid", "--json")
    summary = json.loads(r.stdout)
    assert summary["test_rmse_source"] == "last epoch" and summary["epochs_trained"] == 2


def _rated(path):
    rated = {}
    for line in path.read_text().splitlines():
        u, i = line.split("\t")[:2]
        rated.setdefault(u, set()).add(i)
    return rated


def test_recommend_never_offers_an_item_rated_in_any_split(tiny_ratings, tmp_path):
    out = tmp_path / "m"
    assert _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "1", *FAST,
                   "--test-ratio", "0.3", "--out", out).exit_code == 0
    rated = _rated(tiny_ratings)
    items = set().union(*rated.values())
    r = _invoke("sif", "recommend", "--model", out, "--users", "all", "-k", "1000", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.output.splitlines()]
    assert {line["user"] for line in lines} == set(rated)  # one line per user
    for line in lines:
        offered = {row["item"] for row in line["items"]}
        assert not offered & rated[line["user"]], line["user"]  # test-split ratings excluded too
        assert offered <= items - rated[line["user"]]


def test_recommend_batch_csv_titles_and_a_user_with_nothing_left(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = [f"{u}\t{i}\t{1 + (u * i) % 5}\t0" for u in range(1, 13) for i in range(1, 9) if u == 1 or (u + i) % 3]
    (folder / "u.data").write_text("\n".join(rows) + "\n")  # user 1 rated every item
    (folder / "u.item").write_text("".join(f"{i}|Film, number {i}|x\n" for i in range(1, 9)), encoding="latin-1")
    out = tmp_path / "m"
    assert _invoke("sif", "train", "--ifc", "multiply", "--data", folder / "u.data", "--max-epochs", "1", *FAST,
                   "--out", out).exit_code == 0
    r = _invoke("sif", "recommend", "--model", out, "--user", "1")
    assert r.exit_code == 0 and r.output.strip() == "user 1: nothing left to recommend (rated every item the model knows)"
    r = _invoke("sif", "recommend", "--model", out, "--user", "2", "-k", "2")
    assert r.output.splitlines()[0].split() == ["rank", "score", "item", "title"] and "Film, number" in r.output
    ids = tmp_path / "users.txt"
    ids.write_text("2\n\n3\n1\n")
    r = CliRunner().invoke(main, ["sif", "recommend", "--model", str(out), "--users", str(ids), "-k", "2"])
    assert r.exit_code == 0, r.output
    import csv
    table = list(csv.reader(r.stdout.splitlines()))
    assert table[0] == ["user", "rank", "item", "score", "title"]
    assert [row[0] for row in table[1:]] == ["2", "2", "3", "3"] and table[1][4].startswith("Film, number")
    assert "user 1: nothing left" in r.stderr
    ids.write_text("nobody\n")  # with --fallback none and no known user: an error (tests/sif/test_api.py: the rest)
    assert "unknown user 'nobody'" in _error(_invoke("sif", "recommend", "--model", out, "--users", ids, "--fallback", "none"))
    assert "exactly one of --user" in _invoke("sif", "recommend", "--model", out).output
    help_text = " ".join(_invoke("sif", "recommend", "--help").output.split())
    assert "training, validation and test ratings alike" in help_text and "--users FILE|all" in help_text


def test_the_summary_says_whose_validation_score_it_is(tiny_ratings, tmp_path):
    from nasp.strategies import STRATEGIES

    expected = {"nasp": "discrete architecture", "random": "discrete architecture", "darts": "supernet"}
    for strategy, score_of in expected.items():
        assert STRATEGIES.get(strategy).validates == score_of
        r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", strategy, "--epochs", "2", "--candidates", "2",
                    "--no-retrain", *FAST, "--out", tmp_path / strategy, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["valid_score_of"] == score_of, strategy


def test_mlp_form_is_saved_in_arch_json_and_used_by_train(tiny_ratings, tmp_path):
    out = tmp_path / "s"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--strategy", "nasp", "--epochs", "2", "--mlp", "paper", "--no-retrain", *FAST, "--out", out)
    assert r.exit_code == 0, r.output
    arch = json.loads((out / "arch.json").read_text())
    assert arch["model"]["mlp"] == "paper"
    r = _invoke("sif", "train", "--arch", out, "--data", tiny_ratings, "--max-epochs", "1", "--batch-size", "128",
                "--no-refit", "--out", tmp_path / "t")
    assert r.exit_code == 0, r.output
    saved = torch.load(tmp_path / "t" / "model.pt", weights_only=True)
    assert saved["config"]["mlp"] == "paper"
    del arch["model"]["mlp"]  # an arch.json without the element-wise MLP's form: a clear error, nothing written
    (out / "arch.json").write_text(json.dumps(arch))
    r = _invoke("sif", "train", "--arch", out, "--data", tiny_ratings, "--max-epochs", "1", "--batch-size", "128",
                "--no-refit", "--out", tmp_path / "old")
    assert r.exit_code == 1 and "'model' has no 'mlp'" in _error(r) and not (tmp_path / "old").exists()
    assert "--mlp" in _invoke("sif", "search", "--data", tiny_ratings, "--mlp", "deep").output


def test_a_model_file_missing_a_key_is_one_line_and_titles_travel_in_the_model(tiny_ratings, tmp_path):
    """Titles are saved in model.pt (the data file may move); a model.pt without a key of this
    version is refused with one line naming it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "u.data").write_bytes(Path(tiny_ratings).read_bytes())
    (data / "u.item").write_bytes(b"".join(f"{i}|Film {i} (1999)|x\n".encode("latin-1") for i in range(1, 200)))
    out = tmp_path / "m"
    assert _invoke("sif", "train", "--ifc", "multiply", "--data", data / "u.data", "--max-epochs", "1", *FAST,
                   "--out", out).exit_code == 0
    (data / "u.item").unlink()  # gone after training: the titles are in the model
    user = _rated(tiny_ratings).popitem()[0]
    r = _invoke("sif", "recommend", "--model", out, "--user", user, "--json")
    assert r.exit_code == 0 and all(row["title"].startswith("Film ") for row in json.loads(r.stdout)["items"]), r.output
    saved = torch.load(out / "model.pt", weights_only=True)
    del saved["seen_split"]
    torch.save(saved, out / "model.pt")
    r = _invoke("sif", "recommend", "--model", out, "--user", user)
    assert r.exit_code == 1 and "not a SIF model of this version (no 'seen_split')" in _error(r)


def test_model_files_keep_rated_pairs_as_int32_and_read_older_int64_ones(tiny_ratings, tmp_path):
    out = tmp_path / "m"
    assert _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "1", *FAST,
                   "--out", out).exit_code == 0
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["seen_users"].dtype == saved["seen_items"].dtype == torch.int32  # half the bytes of int64
    rated = _rated(tiny_ratings)
    for dtype in (torch.int32, torch.int64):  # files written before held int64
        saved["seen_users"], saved["seen_items"] = saved["seen_users"].to(dtype), saved["seen_items"].to(dtype)
        torch.save(saved, out / "model.pt")
        r = _invoke("sif", "recommend", "--model", out, "--users", "all", "-k", "1000", "--json")
        assert r.exit_code == 0, r.output
        for line in map(json.loads, r.output.splitlines()):
            assert not {row["item"] for row in line["items"]} & rated[line["user"]]


def test_history_refreshes_reach_the_model_and_bad_values_are_one_line(tiny_ratings, tmp_path):
    """--history-refreshes N sets the cached sums' refresh count, 0 the exact sums; the two train
    different models (the option is wired), and a negative count is refused before any run."""
    losses = {}
    for count, want in (("0", None), ("2", 2)):
        out = tmp_path / f"refresh{count}"
        r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", *FAST,
                    "--history-refreshes", count, "--out", out, "--json")
        assert r.exit_code == 0, r.output
        assert torch.load(out / "model.pt", weights_only=False)["config"]["history_refreshes"] == want
        assert json.loads((out / "config.json").read_text())["options"]["history_refreshes"] == int(count)
        losses[count] = json.loads(r.stdout)["valid_rmse"]
    assert losses["0"] != losses["2"]
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--history-refreshes", "-1", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "Invalid value for '--history-refreshes'" in r.output and not (tmp_path / "bad").exists()
    from nasp import NaspError
    from sif import SIF

    with pytest.raises(NaspError, match="--history-refreshes 1.5: must be an integer"):
        SIF(ifc="multiply", history_refreshes=1.5).fit(tiny_ratings)
    # the implicit term's settings beside --no-implicit: one line, not silently ignored
    r = _invoke("sif", "train", "--ifc", "multiply", "--no-implicit", "--data", tiny_ratings, "--history-refreshes", "4",
                "--out", tmp_path / "off")
    assert r.exit_code == 1 and not (tmp_path / "off").exists(), r.output
    assert r.output == "Error: --history-refreshes sets the implicit term, which --no-implicit turns off: drop one or the other\n"
    with pytest.raises(NaspError, match="--history-refreshes and --implicit-reg set the implicit term"):
        SIF(ifc="multiply", implicit=False, implicit_reg=0.1, history_refreshes=0).fit(tiny_ratings)


def test_sparse_tables_train_without_torchs_notice(tmp_path):
    """A table large enough for sparse gradients (SPARSE_GRAD_MIN_ROWS users) steps Adagrad on a
    sparse gradient; torch's notice about sparse invariant checks does not reach the user."""
    import subprocess
    import sys
    from pathlib import Path

    from sif.model import SPARSE_GRAD_MIN_ROWS

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, SPARSE_GRAD_MIN_ROWS + 101), 3)
    rows = [f"{u}\t{i}\t{r}\t0" for u, i, r in zip(users, rng.integers(1, 30, len(users)), rng.integers(1, 6, len(users)))]
    (tmp_path / "u.data").write_text("\n".join(rows) + "\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "cli.py"), "-q", "sif", "train", "--ifc", "multiply", "--data",
                          str(tmp_path / "u.data"), "--max-epochs", "1", "--dim", "4", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Sparse invariant" not in out.stderr and "Warning" not in out.stderr, out.stderr
    # the Python API too, with warnings as errors (torch warns once per process: a fresh one)
    code = (f"from sif import SIF; SIF(ifc='multiply', max_epochs=1, dim=4).fit({str(tmp_path / 'u.data')!r}); "
            "print('fitted')")
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "fitted", out.stderr[-2000:]


def test_the_summary_names_the_kept_model_first_and_every_epoch_line_its_stage(tiny_ratings, tmp_path, monkeypatch):
    # issue 25 §5: "interaction multiply / kept baseline" first, five stage blocks without a stage name
    monkeypatch.delenv("NASP_QUIET", raising=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["sif", "search", "--data", str(tiny_ratings), "--epochs", "2", "--max-epochs", "2",
                                  "--baselines", "multiply,item_input=both", *FAST, "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    kept = (f"{summary['best_baseline']} (baseline)" if summary["searched_margin"] < 0
            else f"{summary['searched_interaction']} (searched)")
    assert summary["kept"] == kept and r.stdout.splitlines()[0].split() == ["kept", *kept.split()]
    stages = [m.group(1) for line in r.stderr.splitlines() if (m := re.search(r"nasp: (.*) epoch \d+/\d+  ", line))]
    assert set(stages) <= {"search", "search warm-up", "retrain", "baseline multiply", "baseline item_input=both", "refit"}
    assert stages[0].startswith("search") and stages[-1] == "refit", r.stderr
    assert {"retrain", "baseline multiply", "baseline item_input=both"} <= set(stages), r.stderr
    assert all((out / folder / "curves.png").exists() for folder in (".", "retrain", "refit"))

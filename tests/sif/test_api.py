"""The Python API (``from sif import SIF``): the same path, defaults and results as the commands,
and one clear ``NaspError`` for every user error."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from nasp.cli import main
from nasp.errors import NaspError
from sif import SIF

FAST = {"dim": 8, "batch_size": 128}
VOLATILE = {"run_dir", "world_size"}  # and every time (keys with "second")


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _same(api: dict, cli: dict) -> None:
    keys = {k for k in {*api, *cli} if k not in VOLATILE and "second" not in k}
    assert {k for k in api if k in keys} == {k for k in cli if k in keys}
    for key in keys:
        assert api[key] == cli[key], key


@pytest.mark.parametrize("task", ["rating", "ranking"])
def test_api_equals_cli(tiny_ratings, tmp_path, task):
    """The same options and seed give the same summary to the last digit, both ways; the API
    trains on one thread, as the command, and restores the caller's thread count."""
    torch.set_num_threads(2)
    r = _cli("sif", "search", "--task", task, "--data", tiny_ratings, "--epochs", "2", "--max-epochs", "2", "--dim", "8",
             "--batch-size", "128", "--out", tmp_path / "run", "--json", "--seed", "3")
    assert r.exit_code == 0, r.output
    torch.set_num_threads(2)
    seen = []
    real = torch.set_num_threads
    model = SIF(task=task, epochs=2, max_epochs=2, seed=3, **FAST)
    try:
        torch.set_num_threads = lambda n: (seen.append(n), real(n))[1]
        model.fit(tiny_ratings)
    finally:
        torch.set_num_threads = real
    assert seen[0] == 1 and torch.get_num_threads() == 2
    _same(model.summary_, json.loads(r.stdout))


def test_api_logs_epochs_by_default(tiny_ratings, capfd):
    """Progress by default (one line an epoch on stderr), nothing with verbose=False; the
    caller's logging set-up is left as it was."""
    before = logging.getLogger("nasp").handlers[:]
    SIF(ifc="multiply", max_epochs=2, **FAST).fit(tiny_ratings)
    assert "epoch 1/2" in capfd.readouterr().err
    SIF(ifc="multiply", max_epochs=2, verbose=False, **FAST).fit(tiny_ratings)
    assert "epoch" not in capfd.readouterr().err
    assert logging.getLogger("nasp").handlers == before


@pytest.mark.parametrize("options, message", [
    ({"seed": -1}, "--seed -1: must be in"),
    ({"seed": 10**20}, "--seed 100000000000000000000: must be in"),
    ({"seed": "x"}, "--seed 'x': must be an integer"),
    ({"test_ratio": "0.5"}, "--test-ratio '0.5': must be"),
    ({"epochs": True}, "--epochs True: must be an integer"),
    ({"threads": 0}, "--threads 0: must be in the range x>=1"),
    ({"verbose": "yes"}, "--verbose 'yes': must be True or False"),
])
def test_api_option_types(options, message):
    with pytest.raises(NaspError, match=message):
        SIF(**options)


# unknown users and items: served, marked, counted -------------------------------------------------
@pytest.fixture
def trained(tiny_ratings, tmp_path):
    """A rating model (CLI run directory) and its estimator."""
    out = tmp_path / "m"
    assert _cli("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", "--dim", "8",
                "--out", out).exit_code == 0
    return out, SIF.load(out)


def test_recommend_many_users_serves_the_known_and_falls_back(trained, tmp_path, caplog):
    out, model = trained
    users = tmp_path / "users.txt"
    users.write_text("1\nnosuch\n2\n")
    r = CliRunner().invoke(main, ["sif", "recommend", "--model", str(out), "--users", str(users), "-k", "3"])
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in r.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["1"] * 3 + ["nosuch"] * 3 + ["2"] * 3
    assert "1 user(s) without training interactions in the model's data ('nosuch'): served the most popular" in r.stderr
    popular = model.model.popular(3)
    assert [row[2] for row in rows[3:6]] == [p["item"] for p in popular]
    counts = np.bincount(model.model._seen[1][model.model._seen[2] <= 1].numpy())
    assert [float(row[3]) for row in rows[3:6]] == sorted(counts, reverse=True)[:3]
    # --fallback none: the unknown user left out, the others served; none known at all is an error
    r = CliRunner().invoke(main, ["sif", "recommend", "--model", str(out), "--users", str(users), "--fallback", "none"])
    assert r.exit_code == 0 and {line.split(",")[0] for line in r.stdout.splitlines()[1:]} == {"1", "2"}
    users.write_text("nosuch\n")
    r = CliRunner().invoke(main, ["sif", "recommend", "--model", str(out), "--users", str(users), "--fallback", "none"])
    assert r.exit_code == 1 and r.output.startswith("Error: unknown user 'nosuch'")
    # the API: one id -> its list; many -> a user column; never an already-rated item
    frame = model.recommend(["1", "nosuch"], k=4)
    assert list(frame.columns) == ["user", "rank", "item", "score", "title"] and len(frame) == 8
    rated = {model.model.item_ids[i] for i in model.model.rated("1").tolist()}
    assert not rated & set(frame[frame.user == "1"].item)
    with pytest.raises(NaspError, match="unknown fallback 'most'"):
        model.recommend("1", fallback="most")


def test_predict_marks_unknown_pairs(trained, tmp_path):
    out, model = trained
    frame = model.predict(["1", "nosuch", 2], ["1", "2", "nothing"])
    assert frame.known.tolist() == [True, False, False] and frame.user.tolist() == ["1", "nosuch", "2"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nnosuch,2\n2 nothing\n")
    r = _cli("sif", "predict", "--model", out, "--pairs", pairs)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "user,item,prediction,known" and [ln.split(",")[3] for ln in lines[1:]] == ["true", "false", "false"]
    assert [float(ln.split(",")[2]) for ln in lines[1:]] == pytest.approx(frame.prediction.tolist(), abs=1e-4)
    pairs.write_text("1\t1\t5\n")
    r = _cli("sif", "predict", "--model", out, "--pairs", pairs)
    assert r.exit_code == 1 and r.output == f"Error: --pairs {pairs}:1: 3 field(s); need a user id and an item id\n"


def test_evaluate_counts_rows_and_refuses_none(trained, tiny_ratings, caplog):
    _, model = trained
    given = pd.read_csv(tiny_ratings, sep="\t", names=["user", "item", "rating", "timestamp"]).head(20)
    result = model.evaluate(given)
    assert result["rows"] == 20 and result["rows_scored"] == 20
    assert "were training rows of this model" in caplog.text  # the fitted rows flatter the model: said
    ranking = SIF(task="ranking", ifc="multiply", max_epochs=1, verbose=False, **FAST).fit(tiny_ratings)
    strangers = pd.DataFrame({"user": ["x", "y"], "item": ["1", "2"]})
    with pytest.raises(NaspError, match="none of the 2 row"):
        ranking.evaluate(strangers)
    mixed = pd.concat([given[["user", "item"]].astype(str).head(5), strangers])
    assert ranking.evaluate(mixed)["rows_scored"] == 5


def test_a_new_user_in_the_validation_file_is_served_by_the_biases(tmp_path, tiny_ratings):
    """Rating task: --valid-data with users absent from --data trains and searches (those rows
    are scored from the biases, counted in valid_unseen_users), instead of crashing."""
    rows = tiny_ratings.read_text().splitlines()
    train, valid = tmp_path / "train.data", tmp_path / "valid.data"
    train.write_text("\n".join(rows[:1200]) + "\n")
    valid.write_text("\n".join(rows[1200:]) + "\n99999\t1\t4\t881250949\n")
    for command in (["train", "--ifc", "multiply"], ["search", "--epochs", "2"]):
        r = _cli("sif", *command, "--data", train, "--valid-data", valid, "--max-epochs", "2", "--dim", "8", "--json",
                 "--out", tmp_path / command[0])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["valid_unseen_users"] == 1


# cross-validation ---------------------------------------------------------------------------------
def test_folds_cover_every_row_once(tiny_ratings):
    from sif.readers import read_ratings
    from sif.splits import kfold

    table = read_ratings(tiny_ratings)
    fold = kfold(table, 4, seed=5)
    assert sorted(set(fold)) == [0, 1, 2, 3] and np.array_equal(fold, kfold(table, 4, seed=5))
    assert not np.array_equal(fold, kfold(table, 4, seed=6))
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= len(set(table.users))  # each user's rows dealt evenly
    frame = pd.DataFrame({"user": table.users, "fold": fold})
    many = frame.groupby("user").fold.agg(lambda f: len(f) >= 4 and set(f) == {0, 1, 2, 3})
    counts = frame.groupby("user").size()
    assert many[counts >= 4].all()  # a user with 4+ rows is tested in every fold


def test_cross_validate_api_and_cli(tiny_ratings, tmp_path):
    result = SIF(ifc="multiply", max_epochs=2, verbose=False, **FAST).cross_validate(tiny_ratings, folds=3)
    assert result["folds"] == 3 and len(result["fold_test_rmse"]) == 3
    assert result["test_rmse"] == pytest.approx(np.mean(result["fold_test_rmse"]))
    assert result["test_rmse_std"] == pytest.approx(np.std(result["fold_test_rmse"]))
    r = _cli("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "2", "--dim", "8",
             "--batch-size", "128", "--folds", "3", "--json", "--out", tmp_path / "cv")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["fold_test_rmse"] == result["fold_test_rmse"]  # folds fixed by the seed, both ways
    assert all((tmp_path / "cv" / f"fold-{k}" / "summary.json").exists() for k in (1, 2, 3))


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "Error: --folds 1: must be an integer >= 2 (the number of test parts)"),
    (["--folds", "100000"], "Error: --folds 100000: more folds than the"),
    (["--folds", "3", "--test-ratio", "0.1"], "Error: --test-ratio with --folds"),
])
def test_folds_bad_input(tiny_ratings, tmp_path, args, message):
    r = _cli("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, *args, "--out", tmp_path / "cv")
    assert r.exit_code == 1 and r.output.startswith(message), r.output
    assert not (tmp_path / "cv").exists()


# the probe's Python calls: one NaspError each -----------------------------------------------------
def _frame(tiny_ratings) -> pd.DataFrame:
    return pd.read_csv(tiny_ratings, sep="\t", names=["user", "item", "rating", "timestamp"]).head(300)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.astype({"user": object}).assign(user=[None] + [1] * 299), "row 0: the user id is missing"),
    (lambda f: f.astype({"user": float}).assign(user=[np.nan] + [1.0] * 299), "row 0: the user id is missing"),
    (lambda f: f.set_axis(["user", "user", "rating", "timestamp"], axis=1), "column name.s. user given twice"),
    (lambda f: f.astype({"rating": object}).assign(rating=[[1, 2]] + [3] * 299), r"row 0: rating '\[1, 2\]' is not a finite"),
    (lambda f: f.assign(rating=f.rating.astype(complex)), "holds complex128 values"),
    (lambda f: f.assign(rating=pd.Series([1 + 2j] + [3] * 299, dtype=object)), r"row 0: rating '\(1\+2j\)' is not a finite"),
    (lambda f: f.assign(rating=pd.to_datetime(f.timestamp, unit="s")), "holds datetime64"),
])
def test_bad_frames(tiny_ratings, change, message):
    with pytest.raises(NaspError, match=message):
        SIF(ifc="multiply").fit(change(_frame(tiny_ratings)))


def test_bad_calls(trained, tmp_path):
    _, model = trained
    with pytest.raises(NaspError, match="users: give a list of raw ids, got NoneType"):
        model.predict(None, None)
    with pytest.raises(NaspError, match="-k '3': must be an integer >= 1"):
        model.recommend("1", k="3")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NaspError, match="exists and is not a folder"):
        model.save(tmp_path / "file")
    with pytest.raises(NaspError, match="call cross_validate"):
        SIF(folds=3).fit("x")


# fixed models of the autocf space ----------------------------------------------------------------
def test_train_choices_equals_the_fixed_arch_file(tiny_ratings, tmp_path):
    """``--choices`` trains the same model as its arch.json (``fixed_arch``) and names it."""
    from sif.groundtruth import full_choices
    from sif.pipeline import fixed_arch

    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(fixed_arch(full_choices({"item_input": "both", "op": "max"}))))
    common = ["--data", tiny_ratings, "--max-epochs", "2", "--dim", "8", "--batch-size", "128", "--json"]
    by_choices = _cli("sif", "train", "--choices", "item_input=both+op=max", *common, "--out", tmp_path / "a")
    by_file = _cli("sif", "train", "--arch", arch, *common, "--out", tmp_path / "b")
    assert by_choices.exit_code == 0 and by_file.exit_code == 0, by_choices.output + by_file.output
    a, b = json.loads(by_choices.output), json.loads(by_file.output)
    assert a["valid_rmse"] == b["valid_rmse"] and a["test_rmse"] == b["test_rmse"]
    assert a["fixed_model"] == "item_input=both+op=max" and a["choices"]["op"] == "max"


@pytest.mark.parametrize("spec, message", [
    ("op=nope", "unknown op 'nope'"),
    ("item_input=both+item_input=id", "the row item_input is given twice"),
    ("foo=1", "a fixed model of the autocf space is ROW=NAME"),
])
def test_train_choices_bad_input(tiny_ratings, tmp_path, spec, message):
    r = _cli("sif", "train", "--choices", spec, "--data", tiny_ratings, "--out", tmp_path / "x")
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
    with pytest.raises(NaspError, match="--space applies to a search"):
        SIF(choices="op=max", space="autocf")


def test_a_movielens_file_without_titles_is_said(tiny_ratings, tmp_path, caplog):
    """u.data without its u.item: recommendations work, and one warning says titles are missing."""
    (tiny_ratings.parent / "u.item").unlink()
    out = tmp_path / "m"
    assert _cli("sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "1", "--dim", "8",
                "--out", out).exit_code == 0
    caplog.clear()
    model = SIF.load(out)
    assert "beside" not in caplog.text  # said when recommending, not when a model is loaded or fitted
    model.recommend("1", k=2)
    model.recommend("2", k=2)
    assert caplog.text.count("no u.item / movies.dat / movies.csv beside") == 1


# no validation row in a trained weight ------------------------------------------------------------
def _weights_moved_outside_weight_steps(monkeypatch, tiny_ratings, **options) -> list[str]:
    """Runs a short search and returns the names of the weights (element-wise MLPs included)
    that changed between two weight steps, i.e. in the architecture's steps on validation data."""
    from nasp.strategies.base import Strategy

    moved: set = set()
    last: dict = {}
    real = Strategy.weight_step

    def watched(self, batch, rule):
        net = self.network
        skip = {id(p) for p in net.arch_parameters()}
        now = {name: p.detach().clone() for name, p in net.named_parameters() if id(p) not in skip}
        if last.get("net") is net:
            moved.update(name for name, value in now.items() if not torch.equal(value, last["weights"][name]))
        out = real(self, batch, rule)
        last.update(net=net, weights={name: p.detach().clone() for name, p in net.named_parameters() if id(p) not in skip})
        return out

    monkeypatch.setattr(Strategy, "weight_step", watched)
    SIF(epochs=2, warmup_epochs=0, max_epochs=1, baselines="none", verbose=False, **FAST, **options).fit(tiny_ratings)
    return sorted(moved)


@pytest.mark.parametrize("strategy", ["nasp", "no-auto", "darts", "darts2", "gdas", "asap", "drnas", "rsws", "bayesnas"])
@pytest.mark.parametrize("space", ["sif", "autocf"])
def test_no_validation_row_trains_a_weight(monkeypatch, tiny_ratings, strategy, space):
    """Every strategy with an architecture step, both spaces: between two weight steps (on
    training batches) no weight moves, the element-wise MLPs included: validation data only steer
    the architecture. (Random search has no architecture step: it trains each candidate on
    training batches and only scores it on validation; its weights change between steps when a
    candidate starts afresh or the best one is restored.)"""
    assert _weights_moved_outside_weight_steps(monkeypatch, tiny_ratings, strategy=strategy, space=space) == []


def test_the_papers_mlp_training_on_validation_is_an_option(monkeypatch, tiny_ratings):
    """--mlp-on-valid (the paper's): the element-wise MLPs move in the architecture steps."""
    moved = _weights_moved_outside_weight_steps(monkeypatch, tiny_ratings, strategy="nasp", mlp_on_valid=True)
    assert moved and all(name.startswith(("mlp_u.", "mlp_v.")) for name in moved)


def test_every_command_option_is_a_keyword():
    """Each option of `nasp sif search` and `train` is a SIF keyword, except the data (fit's
    arguments) and what belongs to one invocation of a command."""
    from sif import SIFOptions

    fit_arguments = {"data", "valid_data", "test_data"}
    invocation = {"out", "as_json", "resume", "quiet"}
    for name in ("search", "train"):
        command = main.commands["sif"].commands[name]
        assert {p.name for p in command.params} - set(SIFOptions.field_names()) == fit_arguments | invocation, name


def test_a_user_without_training_rows_is_served_by_the_fallback(tmp_path, tiny_ratings):
    """A user whose only rating went to validation or test is in the id map, but the model knows
    nothing of them: recommend falls back (and says so), predict marks them unknown."""
    data = tmp_path / "u.data"
    data.write_text(tiny_ratings.read_text() + "".join(f"lonely{k}\t{k % 40 + 1}\t4\t881250949\n" for k in range(30)))
    model = SIF(ifc="multiply", max_epochs=1, verbose=False, **FAST).fit(data)
    lonely = [u for u in model.model.user_ids if u.startswith("lonely") and not model.model.knows(u)]
    assert lonely  # some single ratings fell into validation or test
    assert model.recommend(lonely[0], k=3).item.tolist() == [p["item"] for p in model.model.popular(3)]
    assert not model.predict([lonely[0]], ["1"]).known[0]
    with pytest.raises(NaspError, match=f"unknown user '{lonely[0]}': no training interactions"):
        model.recommend(lonely[0], fallback="none")


def test_numpy_values_are_the_numbers_they_hold(tiny_ratings):
    """Options from NumPy loops (np.int64 seeds, np.float32 rates, arrays of cut-offs) and NumPy
    ids and k are accepted, as their Python values; the caller's determinism is restored."""
    model = SIF(task="ranking", ifc="multiply", seed=np.int64(3), lr=np.float32(0.05), max_epochs=np.int32(1),
                topk=np.array([10, 20]), deterministic=True, verbose=False, **FAST).fit(tiny_ratings)
    assert model.options.seed == 3 and type(model.options.seed) is int and model.options.topk == [10, 20]
    assert not torch.are_deterministic_algorithms_enabled()
    assert len(model.recommend(np.int64(1), k=np.int64(2))) == 2
    assert model.predict([1.0], [np.int64(2)]).user.tolist() == ["1"]


def test_a_cross_validation_resumes_with_its_finished_folds(tiny_ratings, tmp_path, monkeypatch):
    """Killed in its second fold, `--folds 3 --resume` keeps the first fold's summary, finishes
    the rest and reports what an uninterrupted run reports."""
    from nasp.runs import RunDir

    args = ["sif", "train", "--ifc", "multiply", "--data", tiny_ratings, "--max-epochs", "3", "--dim", "8", "--batch-size",
            "128", "--folds", "3", "--json"]
    whole = json.loads(_cli(*args, "--out", tmp_path / "whole").output)
    real, saves = RunDir.save_checkpoint, []

    def dies_in_fold_two(self, *a, **k):
        real(self, *a, **k)
        if self.path.name == "fold-2":
            saves.append(1)
            if len(saves) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", dies_in_fold_two)
    _cli(*args, "--out", tmp_path / "cv")
    assert (tmp_path / "cv" / "fold-1" / "summary.json").exists() and not (tmp_path / "cv" / "summary.json").exists()
    monkeypatch.setattr(RunDir, "save_checkpoint", real)
    r = _cli("sif", "train", "--resume", "--out", tmp_path / "cv", "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["fold_test_rmse"] == whole["fold_test_rmse"] and again["test_rmse"] == whole["test_rmse"]


def test_a_fold_without_test_rows_is_refused(tmp_path):
    data = tmp_path / "u.data"
    data.write_text("1\t1\t4\t1\n1\t2\t3\t2\n" + "".join(f"{u}\t1\t4\t3\n" for u in range(2, 30)))  # one user with 2 rows
    r = _cli("sif", "train", "--ifc", "multiply", "--data", data, "--folds", "3", "--out", tmp_path / "cv")
    assert r.exit_code == 1 and "would test no row" in r.output and not (tmp_path / "cv").exists()


def test_the_default_search_is_the_one_that_measured_best_for_each_task():
    """Both tasks: the local search of the autocf space (benchmarks/sif_search.py: on ratings it
    beat the default model on every seed; on ranking it beat NASP in the paper's space on every
    seed, benchmarks/sif_baselines.py), retrained warm. An explicit strategy keeps the paper's
    space unless --space says otherwise."""
    from sif.job import searches

    for task in ("rating", "ranking"):
        options = SIF(task=task, verbose=False).options
        assert (options.get("strategy"), options.get("space"), options.get("warm_start")) == ("local", "autocf", True)
        assert searches(options)
    assert SIF(strategy="nasp").options.get("warm_start") is False
    assert SIF(strategy="nasp").options.get("space") == "sif"
    assert SIF(task="ranking", strategy="local").options.get("space") == "autocf"
    with pytest.raises(NaspError, match="--implicit: the autocf space searches the input encodings"):
        SIF(implicit=False)
    SIF(implicit=False, strategy="nasp")  # the paper's space takes it
    SIF(implicit=False, ifc="multiply")  # a fixed model is not a search

"""``nasp cnn search`` under a hard budget, end to end on digits (tiny settings): every iterate
fits, the exported cell's evaluation network has at most the budget's parameters, every strategy
obeys it, latency tables from ``profile-ops`` drive it, and a budgeted run resumes."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp import prox
from nasp.cnn.costs import CostNetwork, cell_budget
from nasp.cnn.genotypes import Genotype
from nasp.cnn.model import MODELS, count_flops, count_params
from nasp.cnn.spaces import SPACES

TINY = ["--data", "digits", "--layers", "2", "--channels", "4", "--subset", "96", "--batch-size", "16",
        "--eval-layers", "3", "--eval-channels", "8", "--device", "cpu", "--threads", "1"]
EVAL = CostNetwork("eval", "cifar", 3, 8, 1, 10, (8, 8))


def _invoke(*args):
    return CliRunner().invoke(main, ["cnn", *map(str, args)])


def _summary(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _limit(metric: str, fraction: float, table=None) -> float:
    """A budget ``fraction`` of the way from the cheapest cell to the most expensive one."""
    limits = {"params": None, "madds": None, "latency": None, metric: 1e300}
    span = cell_budget(SPACES.get("darts"), EVAL, limits, table).projection
    return span.cheapest + fraction * (span.most_expensive - span.cheapest)


def _eval_params(out) -> int:
    genotype = Genotype.from_json(json.loads((out / "arch.json").read_text()))
    return count_params(MODELS.get("cifar")(genotype, channels=8, layers=3, num_classes=10, in_channels=1))


@pytest.fixture
def projections(monkeypatch):
    """The cost of every budgeted projection and sample made while the test runs."""
    costs: list[tuple[float, float]] = []
    call, sample = prox.BudgetedCellProjection.__call__, prox.BudgetedCellProjection.sample

    def recording_call(self, alphas):
        out = call(self, alphas)
        costs.append((self.cost(out), self.limit))
        return out

    def recording_sample(self, shapes, generator):
        out = sample(self, shapes, generator)
        costs.append((self.cost(out), self.limit))
        return out

    monkeypatch.setattr(prox.BudgetedCellProjection, "__call__", recording_call)
    monkeypatch.setattr(prox.BudgetedCellProjection, "sample", recording_sample)
    return costs


def test_every_nasp_iterate_fits_and_the_evaluation_network_is_within_the_budget(tmp_path, projections):
    limit = int(_limit("params", 0.2))
    out = tmp_path / "nasp"
    s = _summary(_invoke("search", *TINY, "--epochs", 2, "--max-params", limit, "--warmup-epochs", 1,
                         "--out", out, "--json"))
    steps = 2 * (48 // 16)  # warm-up steps sample cells, search steps project twice
    assert len(projections) >= steps and all(cost <= lim for cost, lim in projections)
    b = s["budget"]
    assert b["limit"] == limit and b["fits"] and b["binding"] and b["metric"] == "params"
    assert _eval_params(out) == s["cost"]["params"] == b["cost"] <= limit
    genotype = Genotype.from_json(json.loads((out / "arch.json").read_text()))
    model = MODELS.get("cifar")(genotype, channels=8, layers=3, num_classes=10, in_channels=1)
    assert s["cost"]["madds"] == count_flops(model, (1, 8, 8))
    rows = _rows(out)
    assert len(rows) == 2 and all(r["params"] <= limit and r["madds"] > 0 for r in rows)
    assert (out / "pareto.png").stat().st_size > 1000


@pytest.mark.parametrize("strategy", ["random", "darts", "gdas"])
def test_other_strategies_export_a_cell_within_the_budget(strategy, tmp_path, projections):
    limit = _limit("madds", 0.25)
    out = tmp_path / strategy
    s = _summary(_invoke("search", *TINY, "--strategy", strategy, "--epochs", 2, "--candidates", 2,
                         "--max-madds", f"{limit / 1e6:.4f}M", "--out", out, "--json"))
    assert projections and all(cost <= lim for cost, lim in projections)
    assert s["budget"]["fits"] and s["cost"]["madds"] <= s["budget"]["limit"]
    assert all(r["madds"] <= s["budget"]["limit"] for r in _rows(out))
    if strategy == "random":  # the budget excluded the expensive cells from the sampling
        assert s["budget"]["binding"] is True


def test_profile_ops_then_a_latency_budget(tmp_path):
    table = tmp_path / "ops.json"
    result = _invoke("profile-ops", "--data", "digits", "--layers", 3, "--channels", 8, "--repeats", 2,
                     "--warmup", 0, "--device", "cpu", "--out", table, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    assert info["entries"] == len(json.loads(table.read_text())["ops"]) and info["cheapest_cell_ms"] < info["most_expensive_cell_ms"]
    limit = _limit("latency", 0.3, table)
    out = tmp_path / "lat"
    s = _summary(_invoke("search", *TINY, "--epochs", 1, "--max-latency-ms", limit, "--latency-table", table,
                         "--out", out, "--json"))
    assert s["cost"]["latency_ms"] <= limit and s["budget"]["metric"] == "latency"
    assert _rows(out)[0]["latency_ms"] <= limit


def test_eta_and_a_budget_together_and_a_search_network_budget(tmp_path):
    s = _summary(_invoke("search", *TINY, "--epochs", 1, "--eta", 0.5, "--max-params", "20K",
                         "--cost-network", "search", "--out", tmp_path / "r", "--json"))
    assert s["eta"] == 0.5 and s["budget"]["limit"] == 20_000 and s["cost"]["params"] <= 20_000
    assert s["cost_network"].startswith("search network, 2 cells x 4 channels")


def test_a_killed_budgeted_search_resumes_to_the_same_result(tmp_path, monkeypatch):
    from nasp.runs import RunDir

    args = ["search", *TINY, "--epochs", 2, "--max-params", "95K"]
    full = _summary(_invoke(*args, "--out", tmp_path / "full", "--json"))
    save = RunDir.save_checkpoint

    def save_then_die(self, state):
        save(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_checkpoint", save_then_die)
    cut = tmp_path / "cut"
    assert _invoke(*args, "--out", cut).exit_code == 130
    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    resumed = _summary(_invoke("search", "--out", cut, "--resume", "--json"))
    assert resumed["genotype"] == full["genotype"] and resumed["budget"] == full["budget"]
    assert json.loads((cut / "config.json").read_text())["options"]["max_params"] == 95_000


@pytest.mark.parametrize("extra, message", [
    (["--space", "huge"], "unknown search space 'huge'"),
    (["--layers", "0"], "--layers 0"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--out", "/nonexistent-dir/ops.json"], "--out /nonexistent-dir/ops.json: the folder /nonexistent-dir does not exist"),
])
def test_profile_ops_bad_input_is_one_line(extra, message, tmp_path):
    args = ["profile-ops", "--data", "digits", "--layers", 2, "--channels", 4, "--repeats", 1, "--warmup", 0,
            "--device", "cpu", "--out", tmp_path / "ops.json", *extra]
    result = _invoke(*args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


def test_profile_ops_overwrites_a_latency_table_but_no_other_file_unless_forced(tmp_path):
    args = ["profile-ops", "--data", "digits", "--layers", 2, "--channels", 4, "--repeats", 1, "--warmup", 0,
            "--device", "cpu", "--json", "--out"]
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    result = _invoke(*args, notes)
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: --out {notes}: exists and is not a latency table; choose another file (or pass --force)"]
    assert notes.read_text() == '{"mine": true}\n'
    table = tmp_path / "ops.json"
    assert _invoke(*args, table).exit_code == 0
    assert _invoke(*args, table).exit_code == 0  # a latency table is replaced
    assert _invoke(*args, notes, "--force").exit_code == 0
    assert json.loads(notes.read_text())["type"] == json.loads(table.read_text())["type"]

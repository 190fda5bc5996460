"""benchmarks/equal_time.py --domain cnn|rnn: every strategy at NASP's search time, smoke sizes
(``--quick``). The measurements themselves are in docs/results/equal_time.md."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "equal_time.py"


def _run(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _check_rows(runs: list[dict], strategies: list[str]) -> None:
    """Every strategy has a row per seed; each run's budget is respected (the epoch that reaches it
    finishes: at most about one epoch over), its curve grows in time and passes, its cell is retrained."""
    assert sorted({r["strategy"] for r in runs}) == sorted(strategies)
    budget = next(r["search_seconds"] for r in runs if r["strategy"] == "nasp")
    for r in runs:
        if "refused" in r:
            continue
        assert "failed" not in r, r
        assert r["epochs_run"] >= 1 and len(r["curve"]) == r["epochs_run"]
        if r["strategy"] != "nasp":
            assert r["budget_seconds"] == budget
            assert r["search_seconds"] <= budget + 2 * r["pilot_seconds"] + 0.5, r
        for key in ("seconds", "cpu_seconds", "fwd_bwd"):
            values = [p[key] for p in r["curve"]]
            assert all(b > a for a, b in zip(values, values[1:])), (key, values)
        assert r["memory"]["extra_mb"] is not None and r["memory"]["peak_mb"] >= r["memory"]["before_mb"]
        assert r["retrained"] is not None


# the RNN smoke run is marked slow to keep the default suite under 10 minutes; make test-all runs it
@pytest.mark.parametrize("domain, key", [("cnn", "test_acc"), pytest.param("rnn", "test_ppl", marks=pytest.mark.slow)])
def test_equal_time_runs_a_cell_domain_and_writes_json_and_page(tmp_path, domain, key):
    out, page = tmp_path / f"equal_{domain}.json", tmp_path / "equal.md"
    done = _run("--domain", domain, "--quick", "--seeds", 0, "--strategies", "nasp", "darts", "random", "--out", out, "--page", page)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["domain"] == domain
    _check_rows(result["runs"], ["nasp", "darts", "random"])
    assert all(r["retrained"][key] > 0 for r in result["runs"])
    text = page.read_text()
    assert "## CNN cells" in text and "## RNN cells" in text and "| nasp | 1 |" in text
    assert (tmp_path / f"equal_time_{domain}.png").stat().st_size > 0


@pytest.mark.slow
def test_equal_time_rnn_gives_every_strategy_a_row(tmp_path):
    """The default list: every search strategy, pcdarts (CNN cells only) as a refused row."""
    out, page = tmp_path / "equal_rnn.json", tmp_path / "equal.md"
    done = _run("--domain", "rnn", "--quick", "--seeds", 0, "--out", out, "--page", page, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    sys.path.insert(0, str(ROOT))
    from nasp.strategies import search_strategy_names

    runs = json.loads(out.read_text())["runs"]
    _check_rows(runs, search_strategy_names())
    (refused,) = [r for r in runs if "refused" in r]
    assert refused["strategy"] == "pcdarts" and "cannot run in nasp rnn search" in refused["refused"]
    assert "| pcdarts | seed 0: refused |" in page.read_text()


@pytest.mark.parametrize("args, message", [
    (["--domain", "speech"], "invalid choice: 'speech'"),
    (["--domain", "rnn", "--strategies", "pcdarts"], "--strategy pcdarts cannot run in nasp rnn search"),
    (["--domain", "cnn", "--strategies", "nosuch"], "unknown search strategy 'nosuch'"),
])
def test_bad_domain_or_strategy_is_one_line_and_exit_2(tmp_path, args, message):
    done = _run(*args, "--out", tmp_path / "x.json", "--page", tmp_path / "x.md", timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("equal_time.py: error:")
    assert not (tmp_path / "x.json").exists()


def test_page_reports_refused_and_failed_rows_and_the_memory_ratio():
    spec = importlib.util.spec_from_file_location("equal_time_page", ROOT / "benchmarks" / "equal_time_page.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)

    def row(strategy: str, acc: float, memory: float) -> dict:
        return {"seed": 0, "strategy": strategy, "epochs_run": 2, "search_seconds": 1.0, "budget_seconds": None, "fwd_bwd": 4,
                "score": 0.5, "retrained": {"test_acc": acc}, "memory": {"extra_mb": memory}, "curve": []}

    sizes = {"layers": 2, "channels": 4, "batch_size": 8, "subset": 64, "train_layers": 2, "train_channels": 4,
             "train_epochs": 1, "nasp_epochs": 2}
    result = {"sizes": sizes, "runs": [row("nasp", 0.9, 30.0), row("darts", 0.8, 90.0),
                                       {"seed": 0, "strategy": "gdas", "failed": "RuntimeError: boom"}]}
    text = page.render({"cnn": result})
    assert "| darts | 1 | 2.0 | 1.0 | 4 | 0.500 | 0.800 ± 0.000 | -0.100 | 90 | 3.00 |" in text
    assert "| gdas | seed 0: failed | RuntimeError: boom |" in text
    assert "NASP / DARTS (first order): 30 / 90 MB = 0.33" in text
    assert "## RNN cells (a small PTB-format corpus)\n\nNot run yet." in text

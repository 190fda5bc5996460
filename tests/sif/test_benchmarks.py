"""Smoke tests of the SIF benchmark scripts: each runs end to end (``--quick``) on a tiny
planted data set and writes the JSON its docs read. The real measurements are in docs/sif.md."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the scripts' numbers are measured by hand (docs/results/), not here; rehearsals of benchmarks: make test-all
pytestmark = [pytest.mark.smoke, pytest.mark.slow]


def _run(script: str, *args) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *map(str, args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("script", [pytest.param("sif_movielens.py", marks=pytest.mark.slow),
                                    pytest.param("sif_search_pick.py", marks=pytest.mark.slow), "sif_mf_ceiling.py"])
def test_sif_benchmark_runs_and_writes_json(tiny_ratings, tmp_path, script):
    out = tmp_path / "result.json"
    extra = {"sif_movielens.py": ["--extra-seeds", "1", "--candidates", "2"], "sif_search_pick.py": ["--dims", "2"],
             "sif_mf_ceiling.py": ["--members", "2"]}[script]
    _run(script, "--data", tiny_ratings, *extra, "--out", out)
    result = json.loads(out.read_text())
    assert result["quick"] is True
    if script == "sif_movielens.py":
        methods = [row["method"] for row in result["rows"]]
        assert methods[0].startswith("SIF") and "fixed IFC: multiply" in methods
        assert all(row["test_rmse"] > 0 for row in result["rows"])
        assert result["repeats"]["SIF"]["seeds"] == [0, 1]
    elif script == "sif_search_pick.py":
        assert result["results"][0]["dim"] == 2 and result["results"][0]["searches"]
    else:
        assert [row["method"] for row in result["rows"]][0].startswith("biased MF")


def test_full_ranking_speed_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    _run("sif_full_ranking_speed.py", "--out", out)
    result = json.loads(out.read_text())
    assert result["quick"] is True
    models = [row["model"] for row in result["rows"]]
    assert "neumf" in models and models[-1].startswith("supernet")
    assert all(row["seconds_median"] >= 0 and 0 < row["metrics"]["ndcg@20"] <= 1 for row in result["rows"])


def test_ranking_benchmark_runs_without_recbole_and_writes_json(tiny_ratings, tmp_path):
    out = tmp_path / "ranking.json"
    _run("sif_ranking.py", "--data", tiny_ratings, "--no-recbole", "--out", out)
    result = json.loads(out.read_text())
    models = [row["model"] for row in result["rows"]]
    assert models[0].startswith("SIF") and "pop" in models and not any(m.startswith("RecBole") for m in models)
    assert all(0 <= row["ndcg@10"] <= 1 for row in result["rows"]) and result["sif_seconds_over_one_fixed_training"] > 0


def _throughput(ml100k_path, out: Path, *surprise: str) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sif_throughput.py"), "--sizes", "100k", "--steps", "5",
                             "--data-dir", str(ml100k_path.parent.parent), "--out", str(out), *surprise],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    return row


def test_throughput_benchmark_runs_on_ml100k_and_writes_json(ml100k_path, tmp_path):
    row = _throughput(ml100k_path, tmp_path / "throughput.json", "--no-surprise")
    assert row["size"] == "100k" and row["ratings"] == 100_000 and row["peak_rss_mib"] > 0
    assert set(row["phases"]) == {"warm-up", "search", "retraining", "SIF plain MF", "minimal MF", "min. MF sparse"}
    assert all(ph["ratings_per_cpu_s"] > 0 and ph["x_minimal_mf"] > 0 for ph in row["phases"].values())
    assert min(row["phases"][k]["x_fastest_minimal_mf"] for k in ("minimal MF", "min. MF sparse")) == 1.0


def test_throughput_benchmark_times_surprise_on_the_training_split(ml100k_path, tmp_path):
    """The Surprise rows come from the given venv's python, fed the training split (a stand-in
    python here that reports 1 CPU-microsecond per line it was given, as surprise_speed.py's JSON)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\n" + "\n".join([
        "import json, sys",
        "script, train, _, models, _, scale = sys.argv[1:]",
        "assert script.endswith('surprise_speed.py') and scale == '1,5'",
        "n = sum(1 for line in open(train) if len(line.split('\\t')) == 3)",
        "print(json.dumps({'ratings': n, 'build_cpu_s': 0.0, 'models': {m: {'cpu_s': n * 1e-6} for m in models.split(',')}}))",
    ]) + "\n")
    fake.chmod(0o755)
    row = _throughput(ml100k_path, tmp_path / "throughput.json", "--surprise-python", str(fake))
    svd, svdpp = row["phases"]["Surprise SVD"], row["phases"]["Surprise SVD++"]
    assert svd["us_per_rating"] == pytest.approx(1.0) and svdpp["us_per_rating"] == pytest.approx(1.0)
    assert svd["ratings"] == row["train_ratings"] == 70_000
    search = row["phases"]["search"]
    assert search["x_surprise_svd"] == pytest.approx(search["us_per_rating"])


def test_host_sync_benchmark_rehearses_every_phase_on_the_cpu(tiny_ratings, tmp_path):
    out = tmp_path / "syncs.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sif_host_syncs.py"), "--data", str(tiny_ratings),
                             "--device", "cpu", "--steps", "3", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["counted"] is False and set(got["phases"]) == {"warm-up", "search", "retraining", "SIF plain MF"}
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sif_host_syncs.py"), "--data", str(tmp_path / "none")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("Error:") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_space_and_planted_benchmarks_run_and_write_json(tiny_ratings, tmp_path):
    out = tmp_path / "space.json"
    _run("sif_space.py", "--data", tiny_ratings, "--tasks", "rating", "--seeds", "0", "1", "--top", "1",
         "--surprise-python", tmp_path / "none", "--out", out)
    result = json.loads(out.read_text())["tasks"]["rating"]
    assert len(result["screen"]) == 19 and {"search autocf", "search sif", "default (SVD++)"} <= {r["model"] for r in result["rows"]}
    assert set(result["verdicts"]) == {"search autocf", "search sif"}
    out = tmp_path / "planted.json"
    _run("sif_planted.py", "--out", out)
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3 and all(r["of"] == 1 for r in result["rows"])


def test_search_benchmark_places_the_found_architectures_in_the_ground_truth(tiny_ratings, tmp_path):
    """sif_search.py: one row per strategy with the found architecture, its time as a multiple of
    one fixed training, and its place in a ground-truth file (or measured: false)."""
    from sif.groundtruth import all_architectures, arch_key

    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"task": "rating", "seed": 0, "arch": arch_key(c), "group": "all", "valid": 1.0 + k / 1e4,
                                         "test": 1.0, "epochs": 1, "seconds": 1.0}) + "\n" for k, c in enumerate(all_architectures())))
    out = tmp_path / "search.json"
    _run("sif_search.py", "--data", tiny_ratings, "--tasks", "rating", "--seeds", "0", "--strategies", "local", "nasp",
         "--truth", truth, "--out", out)
    runs = json.loads(out.read_text())["runs"]
    assert [r["strategy"] for r in runs] == ["local", "nasp"]
    for r in runs:
        assert r["measured"] and r["of"] == 3024 and 1 <= r["valid_rank"] <= 3024 and r["x_one_fixed_training"] > 0


@pytest.mark.slow
def test_equal_time_benchmark_gives_every_strategy_the_budget_of_nasp(tiny_ratings, tmp_path):
    """equal_time.py: NASP's search time is the budget; each other strategy gets the epochs that
    fit in it (at least one), searches, retrains, and gets a row of the report."""
    out, page = tmp_path / "equal.json", tmp_path / "equal.md"
    _run("equal_time.py", "--data", tiny_ratings, "--seeds", "0", "--strategies", "nasp", "snas", "tpe", "--out", out, "--page", page)
    runs = json.loads(out.read_text())["runs"]
    assert [r["strategy"] for r in runs] == ["nasp", "snas", "tpe"] and all(r["epochs"] >= 1 for r in runs)
    assert all(r["test_rmse"] is not None and r["choices"] for r in runs)
    assert "| snas | 1 |" in page.read_text()


def test_tensor_benchmark_runs_and_writes_json(tmp_path, ratings_writer):
    """benchmarks/sif_tensor.py --data ml100k-dow --task rating --quick on a tiny u.data."""
    out = tmp_path / "tensor.json"
    _run("sif_tensor.py", "--data", "ml100k-dow", "--task", "rating", "--source", ratings_writer(tmp_path / "u.data"),
         "--seeds", 0, "--out", out)
    result = json.loads(out.read_text())
    models = [row["model"] for row in result["runs"]]
    assert result["quick"] is True and models[0] == "search (local)" and "cp" in models and "distmult" not in models
    assert all(row["test_rmse"] > 0 and row["seconds"] >= 0 for row in result["runs"])


KINSHIPS = ROOT.parent / "shared" / "data" / "kinships"


@pytest.mark.skipif(not KINSHIPS.is_dir(), reason="the Kinships data is absent")
def test_tensor_settings_benchmark_runs_and_writes_json(tmp_path):
    """benchmarks/sif_tensor_settings.py --quick: two settings of the grid on seed 0, the best on
    the other seeds; every row a ComplEx training with its validation and test MRR."""
    out = tmp_path / "settings.json"
    _run("sif_tensor_settings.py", "--kinships", KINSHIPS, "--out", out)
    runs = json.loads(out.read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 0, 1, 2] and all(0 < r["valid_mrr"] <= 1 for r in runs)

"""Data-parallel runs under torchrun (gloo, 2 CPU processes): the collectives, SIF/CNN/RNN commands
on two processes, the match with one process, a killed 2-process run resumed, and bad input.

The 2-process runs start torchrun as a user does (``torchrun --standalone --nproc-per-node 2
--no-python nasp ...``), a few seconds each; the one-process runs go through Click's runner."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nasp.cli import main
from nasp.cnn.data import write_synthetic_cifar
from nasp.distributed import World, check_shards, launched_size
from nasp.errors import NaspError

NASP = shutil.which("nasp", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(NASP is None, reason="the nasp command is not installed next to this Python")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory, ratings_writer, corpus_writer) -> dict:
    folder = tmp_path_factory.mktemp("data")
    return {"sif": ratings_writer(folder / "u.data"), "cnn": write_synthetic_cifar(folder / "cifar", per_batch=16),
            "rnn": corpus_writer(folder / "corpus", (30, 10, 10))}


def _torchrun(*args, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "NASP_QUIET": "1"}
    return subprocess.run([*TORCHRUN, "--no-python", NASP, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _points_to(fd: Path, target: Path) -> bool:
    try:
        return Path(os.readlink(fd)) == target.resolve()
    except OSError:
        return False


def _one(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _close(a: dict, b: dict, rel: float) -> None:
    """Two metrics rows agree: every number within ``rel`` (relative), everything else equal."""
    for key, value in a.items():
        if "seconds" in key or "per_second" in key:
            continue
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, rel=rel, abs=rel), key
        else:
            assert b[key] == value, key


# the world of one process and the checks made before a run ------------------------------------
def test_one_process_is_the_world_of_one_and_every_collective_a_no_op():
    world = World()
    assert (world.main, world.parallel, world.bounds(7)) == (True, False, (0, 7))
    x = torch.arange(6.0)
    assert world.shard(x) is x and torch.equal(world.sum(x), x)
    grads = [torch.ones(2), None]
    assert world.average(grads, [torch.zeros(2), torch.zeros(3)], 5) == grads
    world.agree({"a": 1}, "anything")  # nothing to disagree with


@pytest.mark.parametrize("n", [0, 1, 5, 8, 513])
def test_the_shards_of_a_batch_cover_it_once_in_order(n):
    parts = [World(rank, 3).bounds(n) for rank in range(3)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_a_batch_too_small_for_the_processes_is_one_line_before_any_run(monkeypatch, data, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_size() == 2
    with pytest.raises(NaspError, match="needs at least 4"):
        check_shards(3, "--batch-size", 2)
    for args in (["sif", "search", "--data", data["sif"], "--batch-size", "1"],
                 ["cnn", "search", "--data", data["cnn"], "--batch-size", "3", "--device", "cpu"],
                 ["rnn", "search", "--data", data["rnn"], "--batch-size", "4", "--eval-batch-size", "1", "--device", "cpu"]):
        out = tmp_path / args[0]
        result = _one(*args, "--out", out)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and "torchrun --nproc-per-node" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert not out.exists()  # nothing written, nothing that looks finished


# the collectives on two processes --------------------------------------------------------------
def test_the_collectives_on_two_gloo_processes():
    """Weighted gradient averages (dense, sparse, missing), sums, shared values, and a
    disagreement that is one error on every rank (distributed_worker.py asserts each)."""
    result = subprocess.run([*TORCHRUN, str(WORKER)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("collectives ok") == 2


# whole runs on two processes -------------------------------------------------------------------
#: the cached history sums refresh every 5 steps of 2 x 64 ratings: a refresh counted from one
#: rank's rows alone would come at other steps than one process's
SIF_SEARCH = ["sif", "search", "--epochs", "3", "--warmup-epochs", "1", "--dim", "4", "--batch-size", "128",
              "--baselines", "", "--no-refit", "--max-epochs", "2", "--history-refreshes", "2"]


def test_a_sif_search_on_two_processes_matches_one_process(data, tmp_path):
    two = _torchrun(*SIF_SEARCH, "--data", data["sif"], "--out", tmp_path / "two", "--json")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _one(*SIF_SEARCH, "--data", data["sif"], "--out", tmp_path / "one", "--json")
    assert one.exit_code == 0, one.output
    summary_two, summary_one = json.loads(two.stdout), json.loads(one.stdout)  # rank 0 prints it, once
    assert (summary_two["world_size"], summary_one["world_size"]) == (2, 1)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    # the same global batches: the same architecture every epoch, the numbers within float noise
    for a, b in zip(_rows(tmp_path / "one"), _rows(tmp_path / "two")):
        _close(a, b, 1e-5)
    assert summary_two["interaction"] == summary_one["interaction"]
    assert summary_two["test_rmse"] == pytest.approx(summary_one["test_rmse"], rel=1e-5)
    # rank 0 wrote the run, as one process does (no second copy, no stray temporary file)
    files = sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*"))
    assert sorted(str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*")) == files


def test_sparse_table_gradients_on_two_processes_match_one_process(ratings_writer, tmp_path):
    """Tables large enough for sparse gradients (SPARSE_GRAD_MIN_ROWS users) are gathered row by
    row, not densified: a 2-process training matches 1 process within float noise. The cached
    history sums refresh every 5 steps, across the epoch's last batch (5 ratings, split 3 + 2):
    each rank's pending gradient is weighted by its share of every step."""
    from sif.model import SPARSE_GRAD_MIN_ROWS

    path = ratings_writer(tmp_path / "u.data", users=SPARSE_GRAD_MIN_ROWS + 100, items=20, n=3 * SPARSE_GRAD_MIN_ROWS)
    args = ["sif", "train", "--ifc", "multiply", "--dim", "4", "--batch-size", "537", "--max-epochs", "2", "--no-refit",
            "--history-refreshes", "2", "--data", path]
    two = _torchrun(*args, "--out", tmp_path / "two", "--json")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _one(*args, "--out", tmp_path / "one", "--json")
    assert one.exit_code == 0, one.output
    for a, b in zip(_rows(tmp_path / "one"), _rows(tmp_path / "two")):
        _close(a, b, 1e-5)  # train_loss too: each step's loss is the whole batch's, weighted 3 + 2
    assert "Sparse invariant" not in two.stderr  # the gathered sparse gradients warn no rank
    assert json.loads(two.stdout)["test_rmse"] == pytest.approx(json.loads(one.stdout)["test_rmse"], rel=1e-5)


@pytest.mark.slow  # 35 s; make test-all runs it
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(data, tmp_path):
    # the local search (the default), killed after its first trial: the history encoders' share of
    # a step's rows is checkpointed (a trial without a side's history still regularizes its factors)
    args = ["sif", "search", "--data", data["sif"], "--strategy", "local", "--epochs", "20", "--warmup-epochs", "1", "--dim", "4",
            "--batch-size", "128", "--no-retrain"]
    out = tmp_path / "killed"
    env = {**os.environ, "NASP_QUIET": "1"}
    proc = subprocess.Popen([*TORCHRUN, "--no-python", NASP, *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    # both ranks and torchrun, mid-run (torchrun starts each rank in a session of its own)
    # (a rank may be the child of any of torchrun's threads: read every thread's children)
    workers = [pid for task in Path(f"/proc/{proc.pid}/task").iterdir() for pid in (task / "children").read_text().split()]
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)
    proc.kill()
    proc.wait()
    # the kernel drops the run's lock once the killed ranks are gone
    with open(out / ".lock") as fh:
        deadline = time.time() + 60
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    holders = [p.parent.parent.name for p in Path("/proc").glob("[0-9]*/fd/*") if _points_to(p, out / ".lock")]
                    raise AssertionError(f"the run's lock is still held by {holders}") from None
                time.sleep(0.05)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    assert not (out / "summary.json").exists(), "the run ended before the kill: make it longer"
    # one process cannot continue a run of two
    wrong = _one("sif", "search", "--resume", "--out", out)
    assert wrong.exit_code == 1 and "started on 2 process(es)" in wrong.output and "Traceback" not in wrong.output
    resumed = _torchrun("sif", "search", "--resume", "--out", out, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full = _torchrun(*args, "--out", tmp_path / "full", "--json")
    assert full.returncode == 0, full.stderr[-3000:]
    same = lambda s: {k: v for k, v in json.loads(s).items() if "seconds" not in k and "per_second" not in k and k != "run_dir"}  # noqa: E731
    assert same(resumed.stdout) == same(full.stdout)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(_rows(out)) == strip(_rows(tmp_path / "full"))


def test_a_cnn_search_on_two_processes(data, tmp_path):
    out = tmp_path / "cnn"
    result = _torchrun("cnn", "search", "--data", data["cnn"], "--strategy", "nasp", "--epochs", "2", "--layers", "1",
                       "--channels", "4", "--nodes", "1", "--batch-size", "8", "--subset", "32", "--device", "cpu",
                       "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["world_size"] == 2 and 0.0 <= summary["valid_acc"] <= 1.0
    rows = _rows(out)
    assert len(rows) == 2 and all(r["architecture"] for r in rows)  # the ranks agreed on it every epoch
    assert json.loads((out / "arch.json").read_text()) == rows[-1]["architecture"]


RNN_TINY = ["--batch-size", "4", "--bptt", "5", "--emb-size", "4", "--hidden-size", "4", "--eval-batch-size", "4",
            "--device", "cpu"]


@pytest.mark.slow  # 17 s; the RNN's data-parallel path stays in the default suite through the training test below
def test_an_rnn_search_on_two_processes(data, tmp_path):
    out = tmp_path / "rnn"
    result = _torchrun("rnn", "search", "--data", data["rnn"], *RNN_TINY, "--strategy", "darts2", "--space", "small",
                       "--epochs", "2", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["world_size"] == 2 and np.isfinite(summary["valid_ppl"])
    assert json.loads((out / "arch.json").read_text())["type"] == "rnn-genotype"


def test_an_rnn_training_on_two_processes_matches_one_process(data, tmp_path):
    """Without dropout (and at a learning rate at which the run is not chaotic) the retraining,
    which has no batch norm, is the one-process run up to float rounding."""
    args = ["rnn", "train", "--data", data["rnn"], "--genotype", "DARTS_V2", *RNN_TINY, "--epochs", "2", "--lr", "1",
            *[x for flag in ("--dropout", "--dropouth", "--dropoutx", "--dropouti", "--dropoute") for x in (flag, "0")]]
    two = _torchrun(*args, "--out", tmp_path / "two", "--json")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _one(*args, "--out", tmp_path / "one", "--json")
    assert one.exit_code == 0, one.output
    for a, b in zip(_rows(tmp_path / "one"), _rows(tmp_path / "two")):
        _close(a, b, 1e-4)
    assert json.loads(two.stdout)["test_ppl"] == pytest.approx(json.loads(one.stdout)["test_ppl"], rel=1e-4)


FROZEN = """
import time
import torch
from nasp import distributed
world = distributed.init(torch.device("cpu"))
if world.rank == 1:
    time.sleep(120)  # a rank that stopped answering
try:
    world.barrier()
except RuntimeError as exc:
    print("lost:", distributed.lost_peer(exc), flush=True)
    raise SystemExit(1)
"""


def test_a_frozen_rank_stops_the_other_after_the_process_group_timeout(tmp_path):
    script = tmp_path / "frozen.py"
    script.write_text(FROZEN)
    env = {**os.environ, "NASP_DIST_TIMEOUT": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.monotonic()
    result = subprocess.run([*TORCHRUN, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert result.returncode != 0 and time.monotonic() - start < 60
    assert ("lost: rank 0: another process of this run stopped or did not answer within 3 s ($NASP_DIST_TIMEOUT)"
            in result.stdout), result.stdout + result.stderr

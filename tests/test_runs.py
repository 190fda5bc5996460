import json

import pytest
import torch
from torch import nn

from nasp import NaspError
from nasp.devices import resolve_device
from nasp.loop import run_search
from nasp.runs import RunDir, read_json
from nasp.strategies import SearchProblem, build_strategy


class Stop(Exception):
    pass


def _search(ft, name, out, epochs, stop_after=None, resume=False, warmup=0):
    torch.manual_seed(0)
    x, y = ft.make_data(600, 2, seed=0)
    (xt, yt), (xv, yv) = (x[:400], y[:400]), (x[400:], y[400:])
    net = ft.TransformNet(xt)
    problem = SearchProblem(
        network=net,
        loss=lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        scheduler=lambda opt, n: torch.optim.lr_scheduler.CosineAnnealingLR(opt, n),
        arch_lr=0.01,
        metric="valid_mse",
        options={"candidates": 3, "seed": 0, "warmup_epochs": warmup},
    )
    strategy = build_strategy(name, problem, epochs)

    def batches(x, y, size):
        def make(i):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(i))
            return [(x[order[j : j + size]], y[order[j : j + size]]) for j in range(0, len(x), size)]

        return make

    def evaluate(model):
        return {"valid_mse": nn.functional.mse_loss(model(xv), yv).item()}

    def on_epoch(epoch, row):
        # perturb the global RNG as a dropout layer would, so resume must restore it
        torch.rand(3)
        if epoch == stop_after:
            raise Stop

    run = RunDir(out, resume=resume)
    if not resume:
        run.write_config({"strategy": name})
    try:
        rows = run_search(strategy, batches(xt, yt, 50), batches(xv, yv, 50), evaluate, epochs, run, on_epoch=on_epoch)
    except Stop:
        return None
    return net.state_dict(), strategy.state_dict(), rows


@pytest.mark.parametrize("name, warmup", [("nasp", 0), ("darts", 0), ("random", 0), ("nasp", "auto")])
def test_resume_after_kill_gives_the_same_result(feature_transform, tmp_path, name, warmup):
    full = _search(feature_transform, name, tmp_path / "full", epochs=6, warmup=warmup)
    assert _search(feature_transform, name, tmp_path / "killed", epochs=6, stop_after=2, warmup=warmup) is None
    # a row for the killed epoch may exist beyond the checkpoint; resume must drop it
    resumed = _search(feature_transform, name, tmp_path / "killed", epochs=6, resume=True, warmup=warmup)
    for key, value in full[0].items():
        assert torch.equal(value, resumed[0][key]), key
    assert [r["epoch"] for r in resumed[2]] == list(range(1, 7))  # epochs count from 1
    assert [r["valid_mse"] for r in resumed[2]] == [r["valid_mse"] for r in full[2]]
    assert [r.get("warmup") for r in resumed[2]] == [r.get("warmup") for r in full[2]]
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))


def test_run_dir_refuses_to_overwrite_and_checks_resume(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(NaspError, match="not empty; pass --resume"):
        RunDir(tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    with pytest.raises(NaspError, match="not a run directory"):
        RunDir(tmp_path / "busy", resume=True)
    done = RunDir(tmp_path / "done")
    done.write_config({})
    done.finish({"ok": 1})
    with pytest.raises(NaspError, match="already finished"):
        RunDir(tmp_path / "done", resume=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(NaspError, match="not a directory"):
        RunDir(tmp_path / "file")


def test_read_json_reports_file_and_line(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{\n  "epochs": 3,\n  oops\n}')
    with pytest.raises(NaspError, match=r"config.json: line 3: not valid JSON"):
        read_json(bad)
    with pytest.raises(NaspError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path / "r")
    run.write_config({})
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    run.close()
    with pytest.raises(NaspError, match="cannot be read as a checkpoint"):
        RunDir(tmp_path / "r", resume=True).load_checkpoint()


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(NaspError, match="not a device"):
        resolve_device("gpu!")
    with pytest.raises(NaspError, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(NaspError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resume_tolerates_stateless_hooks_coming_and_going_and_rows_read_as_written(tmp_path):
    """Hook states are keyed by hook, stateless hooks (on_epoch) may differ on resume, and rows
    in memory are the rows of metrics.jsonl (null for NaN) whether the run was resumed or not."""
    import math

    from nasp.loop import EarlyStopping, OnEpoch, RunLoop
    from nasp.strategies import SearchProblem, build_strategy

    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    x, y = torch.randn(64, 2), torch.randn(64)
    problem = SearchProblem(network=net, loss=lambda m, b: torch.nn.functional.mse_loss(m(b[0]).squeeze(-1), b[1]),
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    calls = []

    def loop(run, hooks):
        strategy = build_strategy("fixed", problem, 3)
        return RunLoop(strategy, lambda e: [(x, y)], lambda m: {"valid_loss": float("nan")}, 3, run, hooks=hooks)

    run = RunDir(tmp_path / "r")
    run.write_config({})

    def die_after_first(epoch, row):
        calls.append(epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop(run, [OnEpoch(die_after_first), EarlyStopping("train_loss", patience=10)])()
    run.close()
    rows = loop(RunDir(tmp_path / "r", resume=True), [EarlyStopping("train_loss", patience=10)])()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and calls == [0]
    assert all(r["valid_loss"] is None for r in rows)  # NaN is null in memory too
    assert all(math.isfinite(r["train_loss"]) for r in rows)

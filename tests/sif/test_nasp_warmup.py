"""NASP's warm-up on the default model (``--warmup-path default``) and the architecture steps'
own validation batch size (``--arch-batch-size``): what the warm-up trains and evaluates, where
the search starts, the checkpointed state, and the one-line errors and warnings."""
import json

import pytest
import torch

from nasp.errors import NaspError
from nasp.strategies import SearchProblem, build_strategy
from nasp.strategies.proximal import DEFAULT_LEAD
from sif import SIF
from sif.joint import DEFAULT_CHOICES, ROWS, JointConfig, JointNetwork
from sif.model import ModelConfig
from sif.space import LinearHead

from .test_cli import _invoke
from .test_local_search import HISTORY, PAIRS


def _nasp(net: JointNetwork, warmup_path: str):
    problem = SearchProblem(network=net, loss=lambda n, b: n(*b[:2]).sub(b[2]).pow(2).mean(),
                            weight_optimizer=lambda ps: torch.optim.Adagrad(ps, lr=0.1),
                            options={"seed": 0, "warmup_epochs": 1, "warmup_path": warmup_path})
    return build_strategy("nasp", problem, 3)


def _network() -> JointNetwork:
    torch.manual_seed(0)
    net = JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=4, global_mean=3.0), "residual"))
    net.set_history(*HISTORY)
    return net


def _choices(net: JointNetwork, architecture) -> dict:
    return net.export(architecture)["choices"]


def test_the_warmup_trains_the_default_model_and_the_search_starts_from_it():
    net = _network()
    strategy = _nasp(net, "default")
    assert _choices(net, net.project()) == {**_choices(net, net.default_architecture())}  # evaluated during the warm-up
    batch = (*PAIRS, torch.ones(8) * 3)
    strategy.begin_epoch(0)
    assert strategy.warming
    for _ in range(3):
        assert _choices(net, strategy.warmup_architecture()) == _choices(net, net.default_architecture())
        strategy.step(batch, batch)
    default_op = net.config.ops.index(DEFAULT_CHOICES["op"])
    start = [p.detach().clone() for p in net.heads[1][0].parameters()]
    strategy.end_epoch(0, {"valid_rmse": 1.0})
    strategy.begin_epoch(1)
    assert not strategy.warming and strategy.started
    copied = 0
    for k in range(len(net.ops)):  # every op starts from the default op's trained output vectors where shapes match
        for head, trained in zip(net.heads[k], net.heads[default_op]):
            if isinstance(head, LinearHead) and head.weight.shape == trained.weight.shape:
                assert torch.allclose(head.vector(), trained.vector())
                copied += 1
    assert copied >= len(net.ops) - 1
    assert not all(torch.equal(a, b) for a, b in zip(start, net.heads[1][0].parameters()))  # the trained values came
    for alpha, name in zip(net.arch_parameters(), ROWS):  # the default leads each row
        names = net.config.rows()[name]
        if len(names) > 1:
            assert alpha[0].argmax() == names.index(DEFAULT_CHOICES[name])
            others = [float(alpha[0, j].detach()) for j in range(len(names)) if names[j] != DEFAULT_CHOICES[name]]
            assert float(alpha[0, names.index(DEFAULT_CHOICES[name])].detach()) - max(others) > DEFAULT_LEAD / 2
    state = strategy.state_dict()
    again = _nasp(_network(), "default")
    again.load_state_dict(state)
    assert again.started  # a resumed search does not copy the weights a second time


def test_the_sampled_warmup_samples_paths():
    net = _network()
    strategy = _nasp(net, "sampled")
    drawn = {json.dumps(_choices(net, strategy.warmup_architecture()), sort_keys=True) for _ in range(10)}
    assert len(drawn) > 1
    assert not strategy.started


def test_a_search_warmed_up_on_the_default_validates_the_default_during_its_warmup(tiny_ratings, tmp_path):
    model = SIF(space="autocf", strategy="nasp", warmup_path="default", arch_batch_size=4096, epochs=3, warmup_epochs=2,
                baselines="none", max_epochs=1, seed=0, device="cpu", verbose=False).fit(tiny_ratings, run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    warm = [r for r in rows if r.get("warmup")]
    assert len(warm) == 2
    default = {row: DEFAULT_CHOICES[row] for row in ROWS}
    assert all(r["architecture"]["choices"] == default for r in warm)
    assert model.summary_["test_rmse"] > 0


def test_bad_warmup_paths_and_ignored_options(tiny_ratings, tmp_path, capfd):
    with pytest.raises(NaspError, match="warmup-path"):
        SIF(space="autocf", strategy="nasp", warmup_path="uniform", verbose=False).fit(tiny_ratings)
    result = _invoke(["sif", "search", "--data", str(tiny_ratings), "--warmup-path", "bogus", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "bogus" in result.output and not (tmp_path / "x").exists()
    capfd.readouterr()
    SIF(space="autocf", strategy="local", arch_batch_size=100, epochs=2, warmup_epochs=1, baselines="none", max_epochs=1,
        seed=0, device="cpu", verbose=False).fit(tiny_ratings)
    err = capfd.readouterr().err
    assert "ignores --arch-batch-size" in err and "ignores --warmup-path" not in err
    SIF(space="autocf", strategy="random", warmup_path="default", candidates=1, epochs=1, baselines="none", max_epochs=1,
        seed=0, device="cpu", verbose=False).fit(tiny_ratings)
    assert "strategy 'random' ignores --warmup-path (read by: nasp, no-auto)" in capfd.readouterr().err

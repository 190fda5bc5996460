"""``--strategy local``: the warm-started, function-preserving local search (nasp/strategies/local.py)
on SIF's spaces: every swap it makes preserves the network's function exactly where the space
says so (``FUNCTION_PRESERVING``) and changes it everywhere else, it recovers a planted one-row
change, a killed search resumes to the uninterrupted result, and options it ignores warn."""
import json

import numpy as np
import pytest
import torch

from nasp.errors import NaspError
from nasp.strategies import SearchProblem, build_strategy
from sif import SIF
from sif.joint import DEFAULT_CHOICES, FUNCTION_PRESERVING, ROWS, JointConfig, JointNetwork
from sif.model import ModelConfig, SIFNetwork
from sif.space import GRAPH_INPUTS, SEARCH_SPACE, SPACES

from .conftest import Killed, kill_at_checkpoint, planted_frame, planted_joint, training_mask
from .test_cli import FAST, _invoke
from .test_ranking_task import log_file  # noqa: F401 (a fixture)

HISTORY = (torch.tensor([0, 0, 1, 2, 2, 2, 3, 5]), torch.tensor([1, 4, 0, 2, 3, 8, 8, 6]))
PAIRS = (torch.tensor([0, 1, 2, 3, 4, 5, 0, 3]), torch.tensor([0, 2, 4, 6, 8, 1, 3, 5]))

#: what "its initial weights" are for each candidate that starts preserving the function
RESET = {("user_input", "both"): lambda n: n.user_history.reset_parameters(),
         ("item_input", "both"): lambda n: n.item_history.reset_parameters(),
         ("user_function", "mlp"): lambda n: n.mlp_u.reset_parameters(),
         ("item_function", "mlp"): lambda n: n.mlp_v.reset_parameters(),
         ("op", "weighted"): lambda n: n.ops[n.config.ops.index("weighted")].reset_parameters(),
         ("head", "free"): lambda n: None,  # swap_in gives it the box head's vector
         ("user_input", "id"): lambda n: None,  # swap_in adds the history term to the id embedding
         ("item_input", "id"): lambda n: None,
         **{(f"{side}_input", name): (lambda n, gate=f"{side}_{name}": n.graph.gates[gate].data.zero_())
            for side, names in GRAPH_INPUTS.items() for name in names}}


def _local(net: torch.nn.Module):
    problem = SearchProblem(network=net, loss=lambda n, b: n(*b).pow(2).mean(),
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    return build_strategy("local", problem, 2)


def _trained(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in double precision with every weight away from its start values (as after training)."""
    torch.manual_seed(5)
    net = net.double()
    net.set_history(*HISTORY)
    with torch.no_grad():
        for name, w in net.named_parameters():
            if not name.startswith("alpha"):
                w.normal_()
    return net


def _output(strategy) -> torch.Tensor:
    with torch.no_grad(), strategy.network.using(strategy.single_path()):
        return strategy.network(*PAIRS)


def _one_hot(names: tuple, chosen: str, like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    out[0, names.index(chosen)] = 1
    return out


def test_every_swap_preserves_the_function_exactly_where_the_space_says_so():
    assert set(RESET) == set(FUNCTION_PRESERVING)
    rows = list(ROWS)
    cases = {(row, new, DEFAULT_CHOICES[row]) for row, names in SPACES["autocf-graph"].items() for new in names
             if new != DEFAULT_CHOICES[row]} | {(row, new, old) for (row, new), old in FUNCTION_PRESERVING.items()}
    for row, new, old in sorted(cases):
        net = _trained(JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=5, global_mean=3.5), "residual", "autocf-graph")))
        RESET.get((row, new), lambda n: None)(net)
        local = _local(net)
        local.incumbent = [_one_hot(names, {**DEFAULT_CHOICES, row: old}[r], a)
                           for (r, names), a in zip(net.config.rows().items(), net.arch_parameters())]
        local.move((rows.index(row), 0), None)
        before = _output(local)
        local.move((rows.index(row), 0), net.config.rows()[row].index(new))
        after = _output(local)
        assert net.export(net.project())["choices"] == {**DEFAULT_CHOICES, row: new}
        if FUNCTION_PRESERVING.get((row, new)) == old:
            assert torch.allclose(after, before, rtol=0, atol=1e-12), (row, new, old)
        else:  # docs/sif.md says why these cannot start as the candidate they replace
            assert (after - before).abs().max() > 1e-6, (row, new, old)
    # the paper's space: every op computes another function of the same vectors
    net = _trained(SIFNetwork(ModelConfig(6, 9, dim=5, implicit=True)))
    local = _local(net)
    assert net.derive(local.incumbent)["interaction"] == "multiply"
    before = _output(local)
    for k, name in enumerate(SEARCH_SPACE):
        if name != "multiply":
            local.move((0, 0), k)
            assert (_output(local) - before).abs().max() > 1e-6, name
            if net.ops[k].head.shape == net.ops[0].head.shape:  # the new op took multiply's output vector
                assert torch.equal(net.ops[k].head, net.ops[0].head)


def test_a_copied_weight_brings_its_optimizer_state_along():
    net = _trained(JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=5, global_mean=3.5), "residual")))
    local = _local(net)
    local.weight_optimizer = torch.optim.Adagrad(local.weight_params, lr=0.1)
    local.weight_step(PAIRS, local.single_path())  # the default model (multiply, box) has Adagrad sums now
    ops, heads = net.config.ops, net.config.heads
    box, free = net.heads[ops.index("multiply")][heads.index("box")], net.heads[ops.index("multiply")][heads.index("free")]
    state = local.weight_optimizer.state
    assert not state[free.weight]["sum"].any() and state[box.weight]["sum"].any()
    local.move((list(ROWS).index("head"), 0), heads.index("free"))
    assert torch.equal(free.weight, box.vector())
    assert torch.equal(state[free.weight]["sum"], state[box.weight]["sum"])
    assert state[free.weight]["sum"] is not state[box.weight]["sum"]


def test_planted_histories_are_the_training_splits():
    """A planted model with histories computes them from the pairs the searched models train on:
    the training split of the frame (7:1:2 of 9,000 pairs), not every pair."""
    planted = {**DEFAULT_CHOICES, "item_input": "history"}
    frame = planted_frame(planted, seed=1)
    mask = training_mask(frame, SIF(space="autocf", strategy="local", dim=8, batch_size=128, seed=1, verbose=False))
    assert mask.sum() == 6300
    assert np.array_equal(frame["rating"], planted_joint(planted, seed=1, history=mask)[:, 2])
    assert not np.array_equal(frame["rating"], planted_frame(planted, seed=1, training_histories=False)["rating"])
    assert mask.sum() != training_mask(frame, SIF(seed=1, valid_ratio=0.2, verbose=False)).sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_local_search_recovers_a_planted_one_row_change(seed):
    """Ratings of the default model with item histories (``item_input=both``): one pass over the
    rows (3 warm-up epochs + 24 trials) finds it. Not a test of specificity: on these small,
    dense planted sets the default model is still far from converged after the warm-up, and
    candidates that add capacity from a preserved start (``both``, ``mlp``, ``weighted``) win
    their one-epoch trials on data planted without them too (docs/sif.md, "Local search")."""
    planted = {**DEFAULT_CHOICES, "item_input": "both"}
    m = SIF(space="autocf", strategy="local", epochs=30, dim=8, batch_size=128, retrain=False, baselines="none",
            seed=seed, verbose=False).fit(planted_frame(planted, seed))
    assert m.arch_["choices"]["item_input"] == "both", m.arch_["choices"]
    assert m.arch_["strategy"] == "local"


def test_an_epoch_of_too_few_steps_for_the_local_search_is_one_warning(caplog):
    """6,300 training ratings in batches of 128 are 50 steps an epoch, under the local search's
    ``MIN_EPOCH_STEPS``: one warning names a batch size that gives enough; NASP needs none, and
    data too small for enough steps at batch 32 get no advice."""
    from nasp.strategies.local import MIN_EPOCH_STEPS
    from sif.pipeline import SMALLEST_SUGGESTED_BATCH, warn_few_steps

    with caplog.at_level("WARNING", logger="nasp"):
        warn_few_steps("local", 6300, 128)
        warn_few_steps("local", 6300, 6300 // MIN_EPOCH_STEPS)
        warn_few_steps("nasp", 6300, 128)
        warn_few_steps("local", MIN_EPOCH_STEPS * SMALLEST_SUGGESTED_BATCH - 1, 512)
    assert [r.getMessage() for r in caplog.records] == [
        f"Warning: an epoch is 50 steps (6300 training rows, --batch-size 128); strategy 'local' decides on parts of epochs "
        f"and needs about {MIN_EPOCH_STEPS}: try --batch-size {6300 // MIN_EPOCH_STEPS}"]


def test_a_killed_local_search_resumes_to_the_uninterrupted_result(tiny_ratings, tmp_path, monkeypatch):
    args = ["sif", "search", "--space", "autocf", "--strategy", "local", "--data", tiny_ratings, "--epochs", "9",
            "--warmup-epochs", "2", "--max-epochs", "2", *FAST, "--baselines", "none", "--json"]
    first = _invoke(*args, "--out", tmp_path / "whole")
    assert first.exit_code == 0, first.output
    revive = kill_at_checkpoint(monkeypatch, 5)  # in the middle of the second row step
    with pytest.raises(Killed):
        _invoke(*args, "--out", tmp_path / "killed")
    revive()
    again = _invoke("sif", "search", "--resume", "--out", tmp_path / "killed", "--json")
    assert again.exit_code == 0, again.output
    volatile = ("seconds", "per_second", "run_dir")
    stable = lambda row: {k: v for k, v in row.items() if not any(w in k for w in volatile)}  # noqa: E731
    assert stable(json.loads(again.stdout)) == stable(json.loads(first.stdout))
    rows = [[stable(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]
            for out in (tmp_path / "whole", tmp_path / "killed")]
    assert rows[0] == rows[1] and [r.get("trial") for r in rows[0][2:5]] == ["stay", "row 0 candidate 0", "row 0 candidate 1"]
    arch = [json.loads((out / "arch.json").read_text()) for out in (tmp_path / "whole", tmp_path / "killed")]
    assert arch[0] == arch[1] and arch[0]["strategy"] == "local"


def test_local_search_in_the_papers_space_on_the_ranking_task(log_file, tmp_path):  # noqa: F811
    out = tmp_path / "s"
    r = _invoke("sif", "search", "--task", "ranking", "--strategy", "local", "--space", "sif", "--data", log_file, "--epochs", "6",
                "--warmup-epochs", "1", "--max-epochs", "2", *FAST, "--baselines", "none", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row.get("trial") for row in rows] == [None, "stay"] + [f"row 0 candidate {k}" for k in range(1, 5)]
    assert [row["architecture"]["interaction"] for row in rows] == ["multiply", "multiply", *SEARCH_SPACE[1:]]
    assert rows[-1]["kept"] and json.loads((out / "arch.json").read_text())["strategy"] == "local"


def test_local_search_warns_about_options_it_ignores_and_refuses_a_bad_margin(tiny_ratings, tmp_path, caplog):
    net = JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=5), "residual"))
    problem = SearchProblem(network=net, loss=lambda n, b: n(*b).pow(2).mean(),
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), options={"candidates": 3, "margin": 0.01})
    with caplog.at_level("WARNING", logger="nasp"):
        build_strategy("local", problem, 4)
    assert [r.getMessage() for r in caplog.records] == ["Warning: strategy 'local' ignores --candidates (read by: random, reinforce, tpe, rsws)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="nasp"):
        build_strategy("random", problem, 4)
    assert [r.getMessage() for r in caplog.records] == ["Warning: strategy 'random' ignores --margin (read by: local)"]
    with pytest.raises(NaspError, match="--margin"):
        SIF(strategy="local", margin=-0.5)
    r = _invoke("sif", "search", "--strategy", "local", "--margin", "-1", "--data", tiny_ratings, "--out", tmp_path / "x")
    assert r.exit_code == 2 and "--margin" in r.output


def _decide(scores_by_row: list[list[float]]) -> list[str]:
    """The local search's decision of each row step given the validation RMSE of its trials (the stay first)."""
    net = JointNetwork(JointConfig.search_space(ModelConfig(6, 9, dim=5, global_mean=3.5), "residual"))
    net.set_history(*HISTORY)
    problem = SearchProblem(network=net, loss=lambda n, b: n(*b).pow(2).mean(), metric="valid_rmse", higher_is_better=False,
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), options={"warmup_epochs": 0})
    local, epoch, kept = build_strategy("local", problem, 100), 0, []
    for scores in scores_by_row:
        for score in scores:
            local.begin_epoch(epoch)
            local.end_epoch(epoch, {"valid_rmse": score})
            epoch += 1
        kept.append(local.kept)
    return [net.export(local.incumbent)["choices"], *kept]


def test_of_two_candidates_that_score_alike_the_local_search_keeps_the_simpler():
    # user_input (stay: both, then id, history); item_input (stay: id, then history, both)
    choices, *kept = _decide([[1.0, 1.0005, 1.2], [1.0, 0.99, 0.985]])
    assert kept == ["row 0 candidate 0 (simpler than stay, within the margin)", "row 1 candidate 2"]
    assert (choices["user_input"], choices["item_input"]) == ("id", "both")
    # history is a special case of both and within the margin of it, and beats the stay: it is kept
    choices, *kept = _decide([[1.0, 1.002, 1.2], [1.0, 0.99, 0.9895]])
    assert kept == ["stay", "row 1 candidate 1 (simpler than row 1 candidate 2, within the margin)"]
    assert (choices["user_input"], choices["item_input"]) == ("both", "history")
    # a simpler candidate that does not beat the stay is not kept, however close to the best
    choices, *kept = _decide([[1.0, 1.2, 1.3], [1.0, 0.9992, 0.9985]])
    assert kept[1] == "row 1 candidate 2" and choices["item_input"] == "both"


class _Stop(Exception):
    pass


@pytest.mark.parametrize("task, given, expected", [("rating", None, 0.001), ("ranking", None, 0.01), ("ranking", 0.002, 0.002)])
def test_the_margin_and_trial_fraction_default_to_the_tasks_and_reach_only_the_strategies_that_read_them(tiny_ratings, monkeypatch, task, given,
                                                                                          expected):
    """Ranking's default margin is 1% (about two standard errors of the paired per-user NDCG@10
    difference of neighbouring models on ml-100k), rating's 0.1%; a given --margin wins. Rating's
    trials train half an epoch, ranking's a whole one."""
    import sif.pipeline

    seen, fractions = {}, {}

    def capture(strategy, problem, epochs):
        seen[strategy] = problem.options.get("margin")
        fractions[strategy] = problem.options.get("trial_fraction")
        raise _Stop

    monkeypatch.setattr(sif.pipeline, "build_strategy", capture)
    for strategy in ("local", "nasp"):
        with pytest.raises(_Stop):
            SIF(task=task, strategy=strategy, margin=given, dim=8, batch_size=128, baselines="none").fit(tiny_ratings)
    assert seen == {"local": expected, "nasp": given}  # nasp warns about a margin only when one is given
    assert fractions == {"local": {"rating": 0.5, "ranking": 1.0}[task], "nasp": None}  # rating's trials: half an epoch

"""The larger SIF space (``--space autocf``): every candidate's shapes and gradients, all-item
scores equal to ``forward``, the joint mixing under every rule, and arch files of the space
through ``search`` -> ``train --arch`` -> ``recommend``. Whether the search recovers planted
choices is measured over seeds by ``benchmarks/sif_planted.py`` (docs/sif.md: at chance level),
not asserted here: a single seed's outcome flipped with the last digits of the arithmetic."""
import json

import pytest
import torch

from nasp.errors import NaspError
from nasp.mixing import Mixing
from sif.joint import DEFAULT_CHOICES, ROWS, JointConfig, JointNetwork, config_from_dict, network_for
from sif.model import ModelConfig, SIFNetwork
from sif.space import PREDICTION_HEADS, SPACES, VECTOR_OPS

from .test_cli import FAST, _invoke

DEFAULT = DEFAULT_CHOICES
#: every fixed model one choice away from the default (one per non-default candidate)
VARIANTS = [{**DEFAULT, row: name} for row, names in SPACES["autocf"].items() for name in names if name != DEFAULT[row]]
HISTORY = (torch.tensor([0, 0, 1, 2, 2, 2, 3, 5]), torch.tensor([1, 4, 0, 2, 3, 8, 8, 6]))  # user 4, items 5, 7 have none


def _net(config: JointConfig) -> JointNetwork:
    torch.manual_seed(3)
    net = JointNetwork(config).double()
    net.set_history(*HISTORY)
    with torch.no_grad():
        for w in net.parameters():
            w.normal_()  # away from the start values (zero history factors, identity weights, zero heads)
    return net


def _space(**rows) -> JointConfig:
    return JointConfig.search_space(ModelConfig(6, 9, dim=5, global_mean=3.5), "paper") if not rows else \
        JointConfig(6, 9, dim=5, global_mean=3.5, mlp="paper", **{ROWS[r]: v for r, v in rows.items()})


def test_the_space_has_every_row_the_issue_names():
    rows = SPACES["autocf"]
    assert rows["user_input"] == rows["item_input"] == ("id", "history", "both")
    assert {"identity", "mlp", "tanh", "relu"} <= set(rows["user_function"]) == set(rows["item_function"])
    assert {"multiply", "plus", "min", "max", "concat", "weighted", "concat_mlp"} <= set(rows["op"])
    assert {"box", "free", "mlp"} <= set(rows["head"])
    assert len(VARIANTS) == sum(len(v) - 1 for v in rows.values())


@pytest.mark.parametrize("choices", VARIANTS + [DEFAULT], ids=lambda c: "-".join(c.values()))
def test_every_candidate_has_the_right_shape_and_gradient(choices):
    net = _net(_space().fixed(choices))
    users, items = torch.tensor([0, 1, 4, 2]), torch.tensor([1, 7, 2, 8])
    out = net(users, items)
    assert out.shape == (4,) and torch.isfinite(out).all()
    out.sum().backward()
    weights = [w for w in net.weights() if w.requires_grad]
    got = {name for name, w in net.named_parameters() if w.grad is not None and w.grad.abs().sum() > 0}
    # the chosen op's chosen head and the tables the chosen inputs use get a gradient
    assert "ops.0.weight" in got or choices["op"] != "weighted"
    assert "ops.0.layer.weight" in got or choices["op"] != "concat_mlp"
    assert any(n.startswith("heads.0.0.") for n in got)
    if choices["user_input"] in ("id", "both"):
        assert "user_emb.weight" in got
    if choices["user_input"] in ("history", "both"):
        assert "user_history.factors.weight" in got
    if choices["item_input"] in ("history", "both"):
        assert "item_history.factors.weight" in got
    assert ("item_emb.weight" in got) == (choices["item_input"] in ("id", "both"))
    if "mlp" in (choices["user_function"], choices["item_function"]):
        assert any(n.startswith(("mlp_u", "mlp_v", "user_functions", "item_functions")) for n in got)
    assert weights and all(torch.isfinite(w.grad).all() for w in net.parameters() if w.grad is not None)


@pytest.mark.parametrize("rule", Mixing.ALL, ids=lambda r: r.name)
def test_all_item_scores_equal_forward_on_every_pair_under_every_rule(rule):
    net = _net(_space())
    with torch.no_grad():
        for a in net.arch_parameters():  # a mixed (not one-hot) architecture: every candidate counts
            a.copy_(torch.rand_like(a) + 0.1)
    users = torch.tensor([0, 4, 2, 5])
    with net.using(rule), torch.no_grad():
        got = net.score_all(users, max_elements=7)
        expected = net(users.repeat_interleave(9), torch.arange(9).repeat(4)).view(4, 9)
    assert torch.allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("choices", VARIANTS, ids=lambda c: "-".join(c.values()))
def test_all_item_scores_of_each_fixed_model(choices):
    net = _net(_space().fixed(choices))
    users = torch.arange(6)
    with torch.no_grad():
        expected = net(users.repeat_interleave(9), torch.arange(9).repeat(6)).view(6, 9)
        assert torch.allclose(net.score_all(users, max_elements=11), expected, atol=1e-9)


def test_every_op_and_head_is_registered_with_its_width():
    for name in VECTOR_OPS.names():
        op = VECTOR_OPS.get(name)(4)
        z = op(torch.randn(3, 4), torch.randn(3, 4))
        assert z.shape == (3, 4 * op.width_factor)
        for head in PREDICTION_HEADS.names():
            assert PREDICTION_HEADS.get(head)(z.shape[-1])(z).shape == (3,)


def test_the_architecture_step_reaches_every_row_and_the_weight_step_only_the_chosen_candidates():
    net = _net(_space())
    discrete = net.project()
    net.set_architecture(discrete)
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 8])
    with net.using(Mixing.ACTIVE):
        net(users, items).pow(2).sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())
    net.zero_grad(set_to_none=True)
    with net.using(Mixing.SINGLE):
        net(users, items).pow(2).sum().backward()
    assert all(a.grad is None for a in net.arch_parameters())
    k = int(discrete[list(ROWS).index("op")].argmax())
    assert all(w.grad is None for j, op in enumerate(net.ops) if j != k for w in op.parameters())


def test_derive_and_export_name_one_candidate_per_row_and_the_logged_values_round_trip():
    net = _net(_space())
    arch = net.export(net.project(), net.arch_parameters())
    assert set(arch["choices"]) == set(ROWS) and arch["interaction"] == arch["choices"]["op"]
    back = net.logged_alphas(arch)
    assert net.derive(back)["choices"] == arch["choices"]
    assert len(arch["alpha"]) == sum(len(v) for v in SPACES["autocf"].values())


def test_configs_round_trip_and_bad_choices_are_clear_errors():
    config = _space().fixed(VARIANTS[3])
    assert config_from_dict(config.to_dict()) == config
    assert isinstance(network_for(config), JointNetwork)
    assert isinstance(network_for(config_from_dict(ModelConfig(2, 2).to_dict())), SIFNetwork)
    with pytest.raises(NaspError, match="unknown op 'dot'"):
        _space().fixed({**DEFAULT, "op": "dot"})
    with pytest.raises(NaspError, match="missing: head"):
        _space().fixed({k: v for k, v in DEFAULT.items() if k != "head"})
    with pytest.raises(NaspError, match="unknown search space"):
        config_from_dict({"space": "nope"})


def test_cli_search_train_arch_and_recommend_in_the_larger_space(tiny_ratings, tmp_path):
    out = tmp_path / "s"
    r = _invoke("sif", "search", "--space", "autocf", "--data", tiny_ratings, "--epochs", "2", *FAST, "--baselines", "none",
                "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    arch = json.loads((out / "arch.json").read_text())
    assert set(arch["choices"]) == set(ROWS) and summary["choices"] == arch["choices"]
    assert arch["model"]["space"] == "autocf"
    # the arch file retrains the same fixed model, which recommends
    r = _invoke("sif", "train", "--arch", out, "--data", tiny_ratings, *FAST, "--max-epochs", "2", "--out", tmp_path / "t", "--json")
    assert r.exit_code == 0, r.output
    saved = torch.load(tmp_path / "t" / "model.pt", weights_only=True)["config"]
    assert {row: saved[field][0] for row, field in ROWS.items()} == arch["choices"]
    assert all(len(saved[field]) == 1 for field in ROWS.values())
    r = _invoke("sif", "recommend", "--model", tmp_path / "t", "--user", "1", "--top", "3")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) >= 3, r.output


def test_cli_refuses_what_the_larger_space_searches(tiny_ratings, tmp_path):
    for extra in (["--no-implicit"], ["--head", "ball"]):
        r = _invoke("sif", "search", "--space", "autocf", "--data", tiny_ratings, *extra, "--out", tmp_path / "x")
        assert r.exit_code != 0 and "autocf space searches" in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "x").exists()


def test_a_broken_arch_file_of_the_larger_space_is_one_line(tiny_ratings, tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"interaction": "multiply", "model": {"space": "autocf"}, "choices": {**DEFAULT, "head": "wide"}}))
    r = _invoke("sif", "train", "--arch", path, "--data", tiny_ratings, "--out", tmp_path / "t")
    assert r.exit_code != 0 and "unknown head 'wide'" in r.output and "Traceback" not in r.output, r.output


def test_a_searched_mlp_function_is_an_architecture_weight_and_a_fixed_one_a_weight():
    """A searched mlp function is exported with the architecture; a weight trained on training
    data by default, an architecture extra (trained on validation) with the paper's mlp_on_valid."""
    search = JointNetwork(_space())
    assert {id(w) for w in search.mlp_u.parameters()} <= {id(w) for w in search.exported_weights()}
    assert search.arch_extra_parameters() == [] and {id(w) for w in search.mlp_u.parameters()} <= {id(w) for w in search.weights()}
    paper = JointNetwork(JointConfig.from_dict({**_space().to_dict(), "mlp_on_valid": True}))
    assert {id(w) for w in paper.mlp_u.parameters()} <= {id(w) for w in paper.arch_extra_parameters()}
    fixed = JointNetwork(_space().fixed({**DEFAULT, "user_function": "mlp"}))
    assert fixed.arch_extra_parameters() == []
    assert {id(w) for w in fixed.mlp_u.parameters()} <= {id(w) for w in fixed.weights()}


def test_fixed_arch_files_train_through_the_cli(tiny_ratings, tmp_path):
    from sif.pipeline import fixed_arch

    path = tmp_path / "arch.json"
    path.write_text(json.dumps(fixed_arch({**DEFAULT, "item_input": "both", "user_function": "mlp"}, dim=8)))
    r = _invoke("sif", "train", "--arch", path, "--data", tiny_ratings, *FAST, "--max-epochs", "2", "--out", tmp_path / "t", "--json")
    assert r.exit_code == 0, r.output
    state = torch.load(tmp_path / "t" / "model.pt", weights_only=True)["state"]
    assert "item_history.factors.weight" in state and "user_functions.0.outer.weight" in state
    assert state["user_functions.0.outer.weight"].abs().sum() > 0  # trained from its zero start
    with pytest.raises(NaspError, match="unknown op"):
        fixed_arch({**DEFAULT, "op": "dot"})


def test_fixed_models_of_the_larger_space_are_baselines_of_any_search(tiny_ratings, tmp_path):
    out = tmp_path / "s"
    r = _invoke("sif", "search", "--data", tiny_ratings, "--epochs", "2", *FAST, "--max-epochs", "2",
                "--baselines", "multiply,item_input=both+head=free", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert set(summary["baseline_valid_rmse"]) == {"multiply", "item_input=both+head=free"}
    assert (out / "baseline-item_input-both_head-free" / "metrics.jsonl").exists()
    for bad, message in (("item_input=sum", "unknown item input 'sum'"), ("colour=red", "ROW=NAME")):
        r = _invoke("sif", "search", "--data", tiny_ratings, "--baselines", bad, "--out", tmp_path / "bad")
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "bad").exists()


def test_the_default_baselines_are_the_tasks():
    from sif import SIF
    from sif.job import baseline_names

    assert baseline_names(SIF().options) == ("multiply", "item_input=both")
    assert baseline_names(SIF(task="ranking").options) == ("multiply", "ease")
    assert baseline_names(SIF(baselines="none").options) == ()


# review findings ----------------------------------------------------------------------------------
def _frame(n: int = 900, seed: int = 0):
    import pandas as pd

    from .conftest import planted_ratings

    rows = planted_ratings("multiply", users=40, items=30, n=n, seed=seed)
    return pd.DataFrame({"user": rows[:, 0].astype(int).astype(str), "item": rows[:, 1].astype(int).astype(str), "rating": rows[:, 2]})


def test_random_search_keeps_the_best_candidates_trained_mlp():
    from sif import SIF

    frame = _frame()
    for seed in (0, 1, 3):
        m = SIF(space="autocf", strategy="random", epochs=3, candidates=3, dim=4, batch_size=64, retrain=False,
                baselines="none", seed=seed).fit(frame)
        for side, row in (("user", "user_function"), ("item", "item_function")):
            if m.arch_["choices"][row] == "mlp":  # trained, not the reset state (zeros) of a later candidate
                assert any(abs(x) > 0 for x in m.arch_["elementwise_mlp"][side]["outer.weight"][0]), (seed, side)


def test_python_fits_repeat_and_darts2_keeps_histories_exact():
    from sif import SIF

    frame = _frame()
    a, b = (SIF(space="autocf", epochs=2, dim=4, batch_size=64, retrain=False, baselines="none").fit(frame) for _ in range(2))
    assert a.arch_["choices"] == b.arch_["choices"] and a.arch_["alpha"] == b.arch_["alpha"]
    m = SIF(space="autocf", strategy="darts2", epochs=1, dim=4, batch_size=64, retrain=False, baselines="none").fit(frame)
    assert m.arch_["model"]["history_refreshes"] is None


def test_more_bad_architectures_and_options_are_one_line(tiny_ratings, tmp_path):
    from sif import SIF

    cases = [({"interaction": "multiply", "model": {"dim": 4}, "choices": DEFAULT}, "autocf space"),
             ({"interaction": "multiply", "model": {"space": "autocf"}, "choices": {**DEFAULT, "bogus": "x"}}, "unknown row(s) bogus"),
             ({"interaction": "multiply", "model": {"space": "autocf", "dim": "a"}, "choices": DEFAULT}, "malformed 'model'")]
    for k, (arch, message) in enumerate(cases):
        path = tmp_path / f"arch{k}.json"
        path.write_text(json.dumps(arch))
        r = _invoke("sif", "train", "--arch", path, "--data", tiny_ratings, "--out", tmp_path / f"t{k}")
        assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output, r.output
    with pytest.raises(NaspError, match="--space applies to a search"):
        SIF(space="autocf", ifc="multiply")


def test_no_biases_is_honoured_by_an_arch_of_the_larger_space(tmp_path):
    from sif import SIF
    from sif.pipeline import fixed_arch

    path = tmp_path / "arch.json"
    path.write_text(json.dumps(fixed_arch(DEFAULT, dim=4)))
    m = SIF(arch=str(path), biases=False, max_epochs=1, batch_size=64).fit(_frame())
    assert m.model.net.config.biases is False

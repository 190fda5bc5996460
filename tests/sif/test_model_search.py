import dataclasses

import pytest
import torch

from nasp.mixing import Mixing
from nasp.runs import RunDir
from sif import pipeline

from sif.options import SIFOptions
from sif.model import ModelConfig, SIFNetwork
from sif.space import INTERACTION_FUNCTIONS, SEARCH_SPACE

from .conftest import planted_ratings, write_udata


@pytest.mark.parametrize("name", INTERACTION_FUNCTIONS.names())
def test_every_interaction_scores_one_value_per_pair(name):
    op = INTERACTION_FUNCTIONS.get(name)(8)
    p, q = torch.randn(5, 8), torch.randn(5, 8)
    assert op(p, q).shape == (5,)


@pytest.mark.parametrize("mixing", Mixing.ALL)
def test_network_forward_shapes_under_every_mixing(mixing):
    net = SIFNetwork(ModelConfig(7, 9, dim=4))
    net.mixing = mixing
    users, items = torch.tensor([0, 3, 6]), torch.tensor([8, 1, 0])
    assert net(users, items).shape == (3,)
    assert set(net.derive()["alpha"]) == set(SEARCH_SPACE)


def test_unseen_users_and_items_get_biases_only_and_predictions_are_clipped():
    net = SIFNetwork(ModelConfig(3, 3, dim=4, global_mean=3.0))
    with torch.no_grad():
        net.user_emb.weight.normal_()
        net.item_emb.weight.normal_()
        net.item_bias.weight.fill_(0.5)
        net.known_users[2] = False
        net.rating_range.copy_(torch.tensor([1.0, 3.2]))
    pred = net.predict(torch.tensor([2, -1, 0]), torch.tensor([0, 1, 1]))
    assert pred[0].item() == pytest.approx(3.2)  # 3 + 0 + 0.5, clipped to the training range
    assert pred[1].item() == pytest.approx(3.2)
    assert 1.0 - 1e-6 <= pred[2].item() <= 3.2 + 1e-6


def _search(tmp_path, op):
    """Search on 40,000 ratings planted with ``op`` on 1-d embeddings (an identifiable setting:
    with wider embeddings and biases, multiply can absorb additive and max/min effects)."""
    folder = tmp_path / op
    folder.mkdir()
    write_udata(folder / "u.data", planted_ratings(op, users=400, items=300, n=40000, dim=1, noise=0.05))
    splits, _ = pipeline.load_splits(pipeline.DataOptions(str(folder / "u.data")))
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=1, elementwise=False,
                         global_mean=float(splits.train.ratings.mean()))
    settings = dataclasses.replace(SIFOptions().train_settings(), lr=0.05, batch_size=512, arch_lr=1e-3, reg=0.0)
    arch, _ = pipeline.search(RunDir(folder / "run"), splits, config, dataclasses.replace(settings, seed=0),
                              torch.device("cpu"), strategy="nasp", epochs=10, warmup_epochs=3)
    return arch


@pytest.mark.parametrize("op", ["multiply", "max"])
def test_search_recovers_the_planted_interaction(tmp_path, op):
    torch.manual_seed(0)
    arch = _search(tmp_path, op)
    assert arch["interaction"] == op, arch["alpha"]
    assert arch["alpha"][op] == max(arch["alpha"].values())


def test_short_real_run_beats_the_global_mean(ml100k_path, tmp_path):
    splits, _ = pipeline.load_splits(pipeline.DataOptions(str(ml100k_path)))
    mean = splits.train.ratings.mean()
    global_rmse = float((splits.test.ratings - mean).pow(2).mean().sqrt())
    config = ModelConfig(splits.ids.num_users, splits.ids.num_items, dim=32, ops=("multiply",), elementwise=False,
                         global_mean=float(mean))
    run = RunDir(tmp_path / "r")
    run.write_config({})
    _, summary = pipeline.train(run, splits, config, dataclasses.replace(SIFOptions().train_settings(), max_epochs=3, patience=3, seed=0),
                                torch.device("cpu"))
    assert summary["test_rmse"] < global_rmse - 0.1, (summary["test_rmse"], global_rmse)
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count("\n") == 3


def _net_with_history():
    """A 4-user, 5-item network with the implicit term; user 0 rated items 1, 3, 4."""
    net = SIFNetwork(ModelConfig(4, 5, dim=3, implicit=True))
    users, items = torch.tensor([0, 0, 0, 2, 1]), torch.tensor([1, 3, 4, 0, 2])
    net.set_history(users, items)
    with torch.no_grad():
        net.user_history.factors.weight.normal_()
    return net, users, items


def test_implicit_term_is_svdpp_sum_over_rated_items():
    net, _, _ = _net_with_history()
    y = net.user_history.factors.weight
    got = net.implicit(torch.tensor([0, 3, 2, 0]))
    assert torch.allclose(got[0], (y[1] + y[3] + y[4]) / 3 ** 0.5, atol=1e-6)
    assert torch.allclose(got[1], torch.zeros(3))  # user 3 rated nothing in training
    assert torch.allclose(got[2], y[0], atol=1e-6)
    assert torch.allclose(got[3], got[0])
    u, _ = net.embed(torch.tensor([0]), torch.tensor([0]))
    assert torch.allclose(u[0], net.user_emb.weight[0] + got[0], atol=1e-6)
    # only the batch items' implicit factors are penalised
    expected = (y[1].pow(2).sum() + y[2].pow(2).sum()) / 2
    assert torch.allclose(net.implicit_regularization(torch.tensor([0, 1]), torch.tensor([1, 2])), expected)


def test_saved_model_with_another_history_length_loads():
    net, _, _ = _net_with_history()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = SIFNetwork(net.config)  # empty history, as recommend builds it
    fresh.load_model_state(state)
    assert torch.equal(fresh.user_history.neighbours, net.user_history.neighbours)
    pairs = (torch.tensor([0, 1, 2]), torch.tensor([4, 4, 1]))
    assert torch.allclose(fresh.predict(*pairs), net.predict(*pairs))
    old = SIFNetwork(ModelConfig(4, 5, dim=3))  # no implicit term: no history buffers
    old_state = {k: v for k, v in old.state_dict().items() if not k.startswith(("history_", "user_history."))}
    SIFNetwork(ModelConfig(4, 5, dim=3)).load_model_state(old_state)


def test_box_head_bounds_every_coordinate_and_ball_head_the_norm():
    for head, check in (("box", lambda w: bool((w.abs() <= 0.5 + 1e-6).all())), ("ball", lambda w: float(w.norm()) <= 1 + 1e-6)):
        op = INTERACTION_FUNCTIONS.get("multiply")(4, head)
        with torch.no_grad():
            op.head.copy_(torch.tensor([3.0, -0.2, 0.1, 0.0]))
        w = op.bound(op.head).detach()
        assert check(w), (head, w)
        p = torch.ones(1, 4)
        assert torch.allclose(op(p, p), w.sum().reshape(1))
    assert SIFNetwork(ModelConfig(2, 2, dim=4)).ops[0].head.tolist() == [0.5] * 4  # both start as the plain sum / sqrt(k)
    saved = ModelConfig(2, 2, dim=4, ops=("multiply",), head="ball")
    assert ModelConfig.from_dict(saved.to_dict()) == saved  # the saved form reads back as written


def test_the_search_keeps_the_architecture_that_validated_best():
    rows = [{"epoch": 0, "warmup": True, "valid_rmse": 0.5, "architecture": {"interaction": "plus"}},
            {"epoch": 1, "warmup": False, "valid_rmse": 0.92, "architecture": {"interaction": "multiply"}},
            {"epoch": 2, "warmup": False, "valid_rmse": 0.95, "architecture": {"interaction": "max"}}]
    assert pipeline.best_search_epoch(rows)["epoch"] == 1  # warm-up epochs never count
    assert pipeline.best_search_epoch(rows, higher_is_better=True)["epoch"] == 2
    assert pipeline.best_search_epoch(rows[:1]) is None


def test_the_best_epoch_keeps_its_logged_interaction_even_when_rounded_alphas_tie():
    ops = ("multiply", "plus", "max")
    net = SIFNetwork(ModelConfig(2, 2, dim=4, ops=ops))
    row = {"interaction": "max", "alpha": {"multiply": 0.612345, "plus": 0.1, "max": 0.612345}}
    (alphas,) = net.logged_alphas(row)
    assert ops[int(alphas.argmax())] == "max"  # the rounded values alone give multiply
    assert net.derive([alphas])["interaction"] == "max"
    row["interaction"] = "multiply"
    assert ops[int(net.logged_alphas(row)[0].argmax())] == "multiply"
    row = {"interaction": "plus", "alpha": {"multiply": 0.3, "plus": 0.9, "max": 0.2}}
    assert net.logged_alphas(row)[0][0].tolist() == pytest.approx([0.3, 0.9, 0.2])  # untouched without a tie


def test_elementwise_mlp_forms_residual_and_paper():
    from sif.space import ElementwiseMLP

    x = torch.linspace(-2, 2, 9)
    residual, paper = ElementwiseMLP(8), ElementwiseMLP(8, residual=False)
    assert torch.equal(residual(x), x)  # starts as the identity
    with torch.no_grad():
        expected = paper.outer(torch.tanh(paper.inner(x.unsqueeze(-1)))).squeeze(-1)
    assert torch.allclose(paper(x), expected) and not torch.allclose(paper(x), x)  # the plain MLP, random start
    assert residual.state_dict().keys() == paper.state_dict().keys()
    net = SIFNetwork(ModelConfig(3, 3, dim=4, mlp="paper"))
    assert net.mlp_u.residual is False and net.config.to_dict()["mlp"] == "paper"
    old = ModelConfig.from_dict({"num_users": 2, "num_items": 2, "dim": 4, "ops": ["multiply"]})
    assert old.mlp == "residual"  # files written before --mlp
    with pytest.raises(Exception, match="unknown element-wise MLP form 'deep'"):
        SIFNetwork(ModelConfig(3, 3, dim=4, mlp="deep"))


def test_ncf_baselines_take_no_head_argument():
    import inspect

    for name in ("gmf", "mlp"):
        assert list(inspect.signature(INTERACTION_FUNCTIONS.get(name)).parameters) == ["dim"]
    assert SIFNetwork(ModelConfig(3, 3, dim=4, ops=("gmf",), head="ball")).ops[0].head.shape == (4,)


@pytest.mark.parametrize("strategy", ["nasp", "darts", "gdas"])
def test_freezing_what_a_step_does_not_differentiate_changes_no_result(monkeypatch, strategy):
    """The strategies freeze the parameters a forward pass is not differentiated for
    (``differentiating_only``: SIF's element-wise MLPs then skip their input gradient in an
    architecture step and keep only their slope in a weight step, the history encoder reads its
    cache without a graph): five steps with and without it end with the same parameters."""
    import contextlib

    import nasp.strategies.base as base
    import nasp.strategies.darts as darts
    import nasp.strategies.gdas as gdas
    import nasp.strategies.proximal as proximal
    from nasp.strategies import build_strategy
    from sif.engine import make_problem

    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (600,), generator=g), torch.randint(0, 20, (600,), generator=g)
    ratings = torch.randint(1, 6, (600,), generator=g).float()

    def run() -> list[torch.Tensor]:
        torch.manual_seed(0)
        # the paper's MLPs, searched with alpha: frozen in the weight steps, where they keep their slope
        net = SIFNetwork(ModelConfig(30, 20, dim=4, implicit=True, global_mean=3.0, history_refreshes=8, mlp_on_valid=True))
        net.set_history(users, items)
        with torch.no_grad():
            for p in net.mlp_u.parameters():
                p.normal_(0, 0.5)
        problem = make_problem(net, dataclasses.replace(SIFOptions().train_settings(), batch_size=100), {"seed": 0, "warmup_epochs": 0})
        stepper = build_strategy(strategy, problem, 2)
        stepper.begin_epoch(1)
        for k in range(5):
            s = slice(100 * k, 100 * k + 100)
            v = slice(100 * k + 50, 100 * k + 150)
            stepper.step((users[s], items[s], ratings[s]), (users[v], items[v], ratings[v]))
        return [p.detach().clone() for p in net.parameters()]

    from sif.space import ElementwiseMLPFunction

    slopes: list[bool] = []
    forward = ElementwiseMLPFunction._forward
    monkeypatch.setattr(ElementwiseMLPFunction, "_forward",
                        staticmethod(lambda ctx, *args: slopes.append(args[-1]) or forward(ctx, *args)))
    frozen = run()
    assert any(slopes), "the weight steps' frozen MLPs kept only their slope"
    slopes.clear()
    for module in (base, darts, gdas, proximal):
        monkeypatch.setattr(module, "differentiating_only", lambda *a: contextlib.nullcontext())
    plain = run()
    assert slopes and not any(slopes)  # nothing frozen: the full path everywhere
    for a, b in zip(frozen, plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)

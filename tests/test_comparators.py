"""The comparators of the NASP paper in the same framework: SNAS, random search with weight
sharing (rsws), ASNG, ASAP, DrNAS, BayesNAS (PC-DARTS, a CNN cell's: tests/cnn/test_pcdarts.py).
Each solves the feature-transform example and resumes exactly (tests/test_strategies.py,
tests/test_resume_kills.py); here, what makes each the method it is."""
import copy

import pytest
import torch
from torch import nn

from nasp.mixing import Mixing, MixPlan
from nasp.strategies import build_strategy
from nasp.strategies.asng import LAMBDA
from nasp.strategies.base import sample_architecture
from nasp.strategies.rsws import RANK_BATCHES
from nasp.strategies.snas import GumbelSoft

from .test_strategies import TinyNet, _batches, _epoch, _mse, _problem


def _weights(net):
    return {n: p.detach().clone() for n, p in net.named_parameters() if n != "alpha"}


@pytest.mark.parametrize("name, steps", [("snas", 3), ("rsws", 3), ("asng", 1)])
def test_no_validation_batch_trains_a_weight(name, steps):
    """The same steps with two different validation batches leave the same weights (ASNG: one
    step; later its sampled paths, hence which weights train, follow the validation ranking).
    ASAP and DrNAS, whose weight steps follow an architecture step as DARTS', are checked with
    the others in tests/sif/test_api.py: no weight moves outside their weight steps."""
    train, valid = _batches()
    other = (valid[0].flip(0) * 3.0, -valid[1])
    after = []
    for batch in (valid, other):
        torch.manual_seed(0)
        net = TinyNet()
        strategy = build_strategy(name, _problem(net), epochs=2)
        strategy.begin_epoch(0)
        for _ in range(steps):
            strategy.step(train, batch)
        after.append(_weights(net))
    for key in after[0]:
        assert torch.equal(after[0][key], after[1][key]), key


def test_snas_mixes_every_candidate_with_a_soft_sample_and_moves_every_alpha():
    g = torch.Generator().manual_seed(0)
    alpha = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    p: MixPlan = GumbelSoft(0.5, g).plan(alpha)
    assert p.dense and torch.allclose(p.weights.sum(-1), torch.ones(2, dtype=torch.float64))
    assert (p.weights > 0).all() and not torch.allclose(p.weights, torch.full_like(p.weights, 1 / 3))  # noisy, soft
    net = TinyNet()
    before, weights = net.alpha.detach().clone(), _weights(net)
    strategy = build_strategy("snas", _problem(net), epochs=3)
    train, _ = _batches()
    strategy.begin_epoch(0)
    strategy.step(train, None)
    assert (net.alpha.detach() != before).all()  # single level: every alpha descends the training loss
    assert all(not torch.equal(weights[k], v) for k, v in _weights(net).items())  # every candidate trains
    strategy.begin_epoch(2)
    assert strategy.tau == pytest.approx(strategy.tau_min) and strategy.tau_min < strategy.tau_max


def test_rsws_trains_only_the_sampled_path_and_keeps_the_best_ranked_sample():
    net = TinyNet()
    strategy = build_strategy("rsws", _problem(net, options={"candidates": 6, "seed": 3}), epochs=1)
    train, valid = _batches()
    strategy.begin_epoch(0)
    weights = _weights(net)
    strategy.step(train, valid)
    chosen = net.alpha.detach().argmax(-1).tolist()  # the sample this step trained
    for name, value in _weights(net).items():
        edge, k = (0 if name.startswith("ops1") else 1), int(name.split(".")[1])
        assert (not torch.equal(weights[name], value)) == (k == chosen[edge]), name
    for _ in range(RANK_BATCHES + 2):
        strategy.step(train, valid)
    assert len(strategy.held) == RANK_BATCHES
    rng = copy.deepcopy(strategy.generator.get_state())
    with strategy.evaluation():
        pass
    assert len(strategy.ranking) == 6
    # the kept architecture is the sample with the lowest mean loss on the held batches
    g = torch.Generator()
    g.set_state(rng)
    losses = []
    with torch.no_grad(), net.using(Mixing.SINGLE):
        for _ in range(6):
            sample = sample_architecture(net, g)
            net.alpha.copy_(sample[0])
            losses.append((sum(float(_mse(net, b)) for b in strategy.held) / RANK_BATCHES, sample[0].argmax(-1).tolist()))
    assert strategy.export() == min(losses)[1]


def test_asng_keeps_a_distribution_trains_sampled_paths_and_learns_the_better_op():
    """theta stays a distribution above its floor; on data that only op 2 of the first edge can
    fit, the probability of op 2 rises."""
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():  # op 2 of edge 1 the only useful one: the others output zeros
        for k in (0, 1):
            net.ops1[k].weight.zero_()
            net.ops1[k].bias.zero_()
            net.ops1[k].weight.requires_grad_(False)
            net.ops1[k].bias.requires_grad_(False)
    strategy = build_strategy("asng", _problem(net), epochs=1)
    assert torch.allclose(net.alpha.detach(), torch.full((2, 3), 1 / 3, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    target = nn.Linear(3, 1).double()
    y = (target(torch.tanh(x)).squeeze(-1) * 3).detach()
    strategy.begin_epoch(0)
    for _ in range(150):
        strategy.step((x, y), (x, y))
    theta = net.alpha.detach()
    floor = 1.0 / (2 * (3 - 1))
    assert torch.allclose(theta.sum(-1), torch.ones(2, dtype=torch.float64)) and (theta >= floor - 1e-9).all()
    assert int(theta[0].argmax()) == 2 and strategy.export()[0] == 2
    assert LAMBDA == 2


def test_drnas_mixes_with_dirichlet_samples_whose_gradient_reaches_the_alphas():
    from nasp.strategies.drnas import DirichletSample, concentration

    torch.manual_seed(0)
    alpha = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    p = DirichletSample().plan(alpha)
    assert p.dense and torch.allclose(p.weights.sum(-1), torch.ones(2, dtype=torch.float64)) and (p.weights > 0).all()
    (p.weights[:, 0].sum()).backward()  # pathwise: the sample is differentiable in alpha
    assert alpha.grad is not None and (alpha.grad != 0).any()
    assert torch.allclose(concentration(torch.zeros(1)), torch.ones(1))
    net = TinyNet()
    strategy = build_strategy("drnas", _problem(net), epochs=2)
    train, valid = _batches()
    strategy.begin_epoch(0)
    strategy.step(train, valid)
    mean = strategy.projected_values(net.arch_parameters())[0]
    assert strategy.export() == mean.argmax(-1).tolist()


def test_asap_anneals_prunes_and_ends_with_one_candidate_per_row():
    from nasp.strategies.asap import THETA_END, T_END, T_START

    torch.manual_seed(0)
    net = TinyNet()
    strategy = build_strategy("asap", _problem(net, arch_lr=0.05), epochs=4)
    train, valid = _batches()
    alive = []
    for epoch in range(4):
        strategy.begin_epoch(epoch)
        for _ in range(15):
            strategy.step(train, valid)
        alive.append(sum(int(m.sum()) for m in strategy.alive))
    assert strategy.temperature == pytest.approx(T_END) and T_END < T_START
    assert strategy.threshold(3) == pytest.approx(THETA_END)
    assert alive == sorted(alive, reverse=True) and alive[-1] == 2  # pruned as it went, one op per row left
    kept = [m.nonzero()[:, 1].tolist() for m in strategy.alive][0]
    assert strategy.export() == kept


def test_reinforce_learns_the_choice_of_the_better_candidates():
    """The controller's probability of an op rises when the candidates using it score better."""
    net = TinyNet()
    strategy = build_strategy("reinforce", _problem(net, options={"candidates": 4, "seed": 0}), epochs=4)
    before = torch.softmax(strategy.logits[0], -1).clone()
    for score in (1.0, 0.2, 0.9, 0.1):  # lower is better (valid_loss): reward the second and the last
        strategy.propose(0)
        chosen = [c.clone() for c in strategy.chosen]
        strategy.observe([], score)
        if score < 0.5:
            good = chosen
    after = torch.softmax(strategy.logits[0], -1)
    picked = good[0].bool()
    assert (after[picked] > before[picked]).all()


def test_tpe_proposals_depend_only_on_the_seed_and_the_finished_trials(monkeypatch):
    pytest.importorskip("optuna")
    from nasp.errors import NaspError

    def proposals():
        net = TinyNet()
        strategy = build_strategy("tpe", _problem(net, options={"candidates": 6, "seed": 2}), epochs=6)
        out = []
        for index, score in enumerate([0.5, 0.4, 0.3, 0.9, 0.2, 0.1]):
            arch = strategy.propose(index)
            out.append([a.argmax(-1).tolist() for a in arch])
            strategy.observe(arch, score)
        return out, strategy

    first, strategy = proposals()
    again, _ = proposals()
    assert first == again and len(strategy.trials) == 6
    state = strategy.state_dict()
    restored = build_strategy("tpe", _problem(TinyNet(), options={"candidates": 6, "seed": 2}), epochs=6)
    restored.load_state_dict(state)
    assert [a.argmax(-1).tolist() for a in restored.propose(6)] == [a.argmax(-1).tolist() for a in strategy.propose(6)]
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError())
                        if name == "optuna" else real_import(name, *a, **k))
    with pytest.raises(NaspError, match="needs Optuna: pip install optuna"):
        build_strategy("tpe", _problem(TinyNet()), epochs=2)


def _useful_op_two(net):
    """Only op 2 of the first edge can fit the data below: the others output zeros."""
    with torch.no_grad():
        for k in (0, 1):
            net.ops1[k].weight.zero_()
            net.ops1[k].bias.zero_()
            net.ops1[k].weight.requires_grad_(False)
            net.ops1[k].bias.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = (nn.Linear(3, 1).double()(torch.tanh(x)).squeeze(-1) * 3).detach()
    return x, y


def _bayesnas_epochs(strategy, epochs, steps, batch, start=0):
    for epoch in range(start, epochs):
        _epoch(strategy, epoch, steps, (batch, batch))


def test_bayesnas_updates_the_ard_hyperparameters_prunes_and_ends_with_one_candidate_per_row():
    """The switches start at 1/K with no penalty (omega 0: no data yet); each epoch end applies the
    Laplace update to (gamma, omega) from the epoch's curvature and prunes small switches; the
    last keeps one candidate per row, which is what the export reads and the evaluation runs."""
    from nasp.strategies.bayesnas import LAMBDA, PRUNE

    torch.manual_seed(0)
    net = TinyNet()
    strategy = build_strategy("bayesnas", _problem(net, arch_lr=0.05), epochs=4)
    assert torch.allclose(net.alpha.detach(), torch.full((2, 3), 1 / 3, dtype=torch.float64))
    assert all((o == 0).all() for o in strategy.omega) and strategy.describe() == {"alive": 6}
    batch = _useful_op_two(net)
    strategy.begin_epoch(0)
    for _ in range(10):
        strategy.step(batch, batch)
    fisher, steps = strategy.fisher[0].clone(), strategy.fisher_steps
    gamma, w = strategy.gamma[0].clone(), net.alpha.detach().abs().clone()
    strategy.end_epoch(0, {"valid_loss": 1.0})
    h = fisher / steps / LAMBDA  # the empirical Fisher of the epoch's architecture gradients, over lambda
    c = 1 / (1 / gamma + h)
    omega = (1 / gamma - c / gamma**2).sqrt()
    alive = strategy.alive[0]
    assert steps == 10 and (fisher[1] > 0).all() and (fisher[0, :2] == 0).all()  # ops 0, 1 of edge 1 output zeros
    assert torch.allclose(strategy.cov[0], c)  # the Laplace posterior variance of every switch
    # every candidate was alive at the update (it comes before the pruning)
    assert torch.allclose(strategy.omega[0], omega) and torch.allclose(omega, torch.sqrt(h / (1 + gamma * h)))
    assert torch.allclose(strategy.gamma[0], w / omega.clamp_min(1e-12))
    assert strategy.fisher_steps == 0 and not strategy.fisher[0].any()
    relevance = w / c.sqrt()  # the posterior mean in posterior standard deviations
    assert torch.equal(alive, relevance >= PRUNE * relevance.amax(-1, keepdim=True))
    assert (net.alpha.detach()[~alive] == 0).all()
    alive_counts = [int(alive.sum())]
    for epoch in range(1, 4):
        _bayesnas_epochs(strategy, epoch + 1, 10, batch, start=epoch)
        alive_counts.append(sum(int(m.sum()) for m in strategy.alive))
    assert alive_counts == sorted(alive_counts, reverse=True) and alive_counts[-1] == 2  # one candidate per row
    kept = [int(m.nonzero()[0, 0]) for m in strategy.alive[0]]
    assert strategy.export() == kept and kept[0] == 2  # the useful op of edge 1 won
    assert ((net.alpha.detach() != 0) == strategy.alive[0]).all()


def test_bayesnas_resumes_to_the_uninterrupted_search():
    """Its state (Adam of the switches, gamma, omega, the Fisher sums, the pruned candidates) goes
    into the checkpoint: a search stopped after epoch 2 and loaded into a fresh strategy ends as
    the uninterrupted one."""
    def fresh():
        torch.manual_seed(0)
        net = TinyNet()
        return net, build_strategy("bayesnas", _problem(net, arch_lr=0.05), epochs=4), _useful_op_two(net)

    net, full, batch = fresh()
    _bayesnas_epochs(full, 4, 6, batch)
    net, first, batch = fresh()
    _bayesnas_epochs(first, 2, 6, batch)
    model, state = copy.deepcopy(net.state_dict()), copy.deepcopy(first.state_dict())
    assert {"arch_optimizer", "alive", "gamma", "omega", "fisher", "fisher_steps"} <= set(state)
    net2, resumed, _ = fresh()
    net2.load_state_dict(model)
    resumed.load_state_dict(state)
    _bayesnas_epochs(resumed, 4, 6, batch, start=2)
    assert resumed.export() == full.export()
    for a, b in zip(net2.state_dict().values(), full.network.state_dict().values()):
        assert torch.allclose(a, b)
    assert all(torch.equal(a, b) for a, b in zip(resumed.alive, full.alive))
    assert all(torch.allclose(a, b) for a, b in zip(resumed.gamma, full.gamma))

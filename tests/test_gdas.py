"""GDAS: a mixing rule and a strategy added in one file, without editing the core."""
import torch
from torch import nn

from nasp.mixing import mix
from nasp.strategies import SearchProblem, build_strategy
from nasp.strategies.gdas import GDAS, GumbelHard


def test_gumbel_rule_runs_one_candidate_per_row_with_a_gradient_to_every_entry():
    alpha = nn.Parameter(torch.tensor([[0.1, 0.5, -0.2], [0.0, 0.0, 0.3]]))
    rule = GumbelHard(tau=1.0, generator=torch.Generator().manual_seed(0))
    p = rule.plan(alpha)
    calls = []
    outputs = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)]

    def candidate(k):
        def run():
            calls.append(k)
            return outputs[k]
        return run

    total = sum(mix([candidate(k) for k in range(3)], p, row) for row in range(2))
    assert len(calls) == 2 and [len(a) for a in p.active] == [1, 1]  # one op per row runs
    assert total.item() == sum(float(outputs[a[0]]) for a in p.active)  # straight-through: weight 1 forward
    total.backward()
    assert (alpha.grad != 0).all()  # ...and the soft probabilities' gradient backward


def test_gumbel_samples_depend_on_the_generator_only():
    alpha = torch.zeros(50, 4)
    a = GumbelHard(1.0, torch.Generator().manual_seed(3)).plan(alpha).active
    b = GumbelHard(1.0, torch.Generator().manual_seed(3)).plan(alpha).active
    assert a == b and len({r[0] for r in a}) == 4  # reproducible, and every op gets sampled


def test_gdas_state_round_trip_continues_the_same_samples(feature_transform):
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, y = feature_transform.make_data(400, 2, 0)

    def build():
        torch.manual_seed(0)
        net = feature_transform.TransformNet(x)
        problem = SearchProblem(network=net, loss=lambda m, b: F.mse_loss(m(b[0]), b[1]),
                                weight_optimizer=lambda ps: torch.optim.Adam(ps, lr=0.05), arch_lr=0.01,
                                options={"seed": 4})
        return net, build_strategy("gdas", problem, 4)

    net_a, a = build()
    net_b, b = build()
    for strat in (a, b):
        strat.begin_epoch(0)
        strat.step((x[:200], y[:200]), (x[200:], y[200:]))
    b2_net, b2 = build()
    b2_net.load_state_dict(net_b.state_dict())
    b2.load_state_dict(b.state_dict())
    for strat in (a, b2):
        strat.begin_epoch(1)
        strat.step((x[:200], y[:200]), (x[200:], y[200:]))
    assert torch.equal(net_a.alpha, b2_net.alpha)
    assert a.tau < GDAS.tau_max  # the temperature anneals


def test_gdas_temperature_falls_linearly_to_its_minimum(feature_transform):
    net = feature_transform.TransformNet(torch.rand(10, 2) + 0.5)
    problem = SearchProblem(network=net, loss=lambda m, b: m(b).sum(), weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    strat = build_strategy("gdas", problem, 5)
    taus = []
    for epoch in range(5):
        strat.begin_epoch(epoch)
        taus.append(strat.tau)
    assert taus[0] == GDAS.tau_max and abs(taus[-1] - GDAS.tau_min) < 1e-12
    assert all(abs((b - a) - (taus[1] - taus[0])) < 1e-9 for a, b in zip(taus, taus[1:]))

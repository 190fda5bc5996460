"""The architecture gradient of a whole ``NASP.step`` (projection, backward at the discrete point,
model-size penalty) equals full autograd through every candidate, in every domain: the
no-autograd shortcut for unselected ops changes no gradient (REFERENCE §1)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nasp.mixing import MixingRule, MixPlan
from nasp.regularizers import ModelSize
from nasp.strategies import SearchProblem, build_strategy


class EveryCandidateWithAutograd(MixingRule):
    """Reference rule: weights = the values as they are, every candidate with autograd."""

    def plan(self, alpha):
        return MixPlan(alpha, None, False, self)


def _step_gradient_matches_full_autograd(problem, train_batch, valid_batch, seed=0):
    strategy = build_strategy("nasp", problem, 2)
    strategy.begin_epoch(0)
    net, arch = problem.network, strategy.architect
    params = arch.parameters()
    torch.manual_seed(seed)  # same dropout masks in both forwards
    with arch.discrete(), net.using(EveryCandidateWithAutograd()):
        loss = problem.loss(net, valid_batch) + arch.penalty()
        reference = torch.autograd.grad(loss, params, allow_unused=True)
    seen = {}
    step = arch.step

    def record_then_step():
        seen.update({id(p): None if p.grad is None else p.grad.clone() for p in params})
        step()

    arch.step = record_then_step
    torch.manual_seed(seed)
    strategy.step(train_batch, valid_batch)
    assert seen, "NASP.step took no architecture step"
    for p, ref in zip(params, reference):
        got = seen[id(p)]
        ref = torch.zeros_like(p) if ref is None else ref
        got = torch.zeros_like(p) if got is None else got
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (tuple(p.shape), (got - ref).abs().max())
    alpha_grads = [seen[id(a)] for a in arch.alphas]
    assert all(g is not None and (g != 0).any() for g in alpha_grads)  # unselected ops get gradients too
    return alpha_grads


def test_sif_step_with_elementwise_mlps_and_implicit_term():
    from sif.options import SIFOptions
    from sif.engine import make_problem
    from sif.model import ModelConfig, SIFNetwork

    torch.manual_seed(0)
    net = SIFNetwork(ModelConfig(6, 5, dim=3, elementwise=True, mlp_on_valid=True)).double()  # the paper's MLPs
    with torch.no_grad():
        for emb in (net.user_emb, net.item_emb):
            emb.weight.normal_()
    problem = make_problem(net, dataclasses.replace(SIFOptions().train_settings(), lr=0.05, batch_size=8, arch_lr=1e-2, reg=1e-3))
    batch = lambda g: (torch.randint(0, 6, (8,), generator=g), torch.randint(0, 5, (8,), generator=g),
                       1 + 4 * torch.rand(8, generator=g, dtype=torch.float64))
    grads = _step_gradient_matches_full_autograd(problem, batch(torch.Generator().manual_seed(1)),
                                                 batch(torch.Generator().manual_seed(2)))
    assert (grads[0] != 0).sum() == len(net.config.ops)  # every vector-wise op
    assert any(p.grad is not None for p in net.arch_extra_parameters())  # the MLPs are searched too (--mlp-on-valid)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_cnn_step_with_the_model_size_penalty(eta):
    from nasp.cnn.search_net import CNNSearchNetwork

    torch.manual_seed(0)
    net = CNNSearchNetwork("darts", channels=2, layers=3, num_classes=3, in_channels=1).double()  # a normal cell and two reductions
    g = torch.Generator().manual_seed(0)
    batch = lambda: (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (4,), generator=g))
    problem = SearchProblem(network=net, loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01), arch_lr=1e-2,
                            regularizer=ModelSize([net.op_params(False), None]) if eta else None, eta=eta)
    _step_gradient_matches_full_autograd(problem, batch(), batch())


def test_rnn_step_with_dropout():
    from nasp.rnn.corpus import Segment
    from nasp.rnn.model import LMLoss, RNNSearchNetwork
    from nasp.rnn.spaces import SPACES

    torch.manual_seed(0)
    net = RNNSearchNetwork(20, SPACES.get("small"), emb_size=6, hidden_size=6).double()
    g = torch.Generator().manual_seed(0)
    seg = lambda stream: Segment(stream, 0, torch.randint(0, 20, (4, 3), generator=g), torch.randint(0, 20, (4, 3), generator=g))
    problem = SearchProblem(network=net, loss=LMLoss(), weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=1.0),
                            arch_lr=1e-2)
    _step_gradient_matches_full_autograd(problem, seg("train"), seg("valid"))


def test_a_nasp_step_reads_the_choice_on_the_host_once_per_projection(monkeypatch):
    """The forwards of a step take the projection's Selection: no host copy of their own."""
    import nasp.mixing as mixing
    from nasp.cnn.search_net import CNNSearchNetwork

    torch.manual_seed(0)
    net = CNNSearchNetwork("darts", channels=2, layers=3, num_classes=3, in_channels=1)
    g = torch.Generator().manual_seed(0)
    batch = lambda: (torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g))
    problem = SearchProblem(network=net, loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    strategy = build_strategy("nasp", problem, 2)
    strategy.begin_epoch(0)
    calls, plans = [], []
    original_rows, original_plan = mixing.nonzero_rows, mixing._Discrete.plan
    monkeypatch.setattr(mixing, "nonzero_rows", lambda v: calls.append(v.device) or original_rows(v))
    monkeypatch.setattr(mixing._Discrete, "plan", lambda self, a: plans.append(1) or original_plan(self, a))
    strategy.step(batch(), batch())
    assert len(plans) == 2 * 2  # two forwards (architecture, weights) x two cell types
    assert len(calls) == 2 * 2 and all(d.type == "cpu" for d in calls)  # two projections x two alphas, on host copies

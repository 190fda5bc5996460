import pytest
import torch
from torch import nn

import nasp.cnn.search_net as search_net
from nasp.cnn.search_net import CNNSearchNetwork, edges_per_node
from nasp.mixing import Mixing, plan
from nasp.strategies import SearchProblem, build_strategy


def _net(**kw):
    torch.manual_seed(0)
    kw = {"channels": 4, "layers": 3, "num_classes": 4, **kw}
    return CNNSearchNetwork("darts", **kw)


def _loss(net, batch):
    return nn.functional.cross_entropy(net(batch[0]), batch[1])


def _batch(seed=0, n=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def test_projection_keeps_top2_edges_per_node_one_op_each():
    net = _net()
    for alpha, project in net.iter_arch():
        d = project(alpha.detach())
        assert ((d == 0) | (d == 1)).all()
        start = 0
        for n in edges_per_node(4):
            rows = d[start : start + n]
            assert int(rows.sum()) == 2 and (rows.sum(-1) <= 1).all()
            start += n


def test_dropped_edges_contribute_zero_and_an_empty_node_is_zeros():
    net = _net(layers=1)
    net.eval()
    x, _ = _batch()
    cell = net.cells[0]  # a reduction cell
    s = net.stem(x)
    with torch.no_grad():
        alpha = torch.zeros(14, 7)
        alpha[0, 6] = 1.0  # node 0: only skip from input 0
        p = plan(alpha, Mixing.SINGLE)
        out = cell(s, s, p)
    states = out.chunk(4, dim=1)
    assert cell.reduction and out.shape == (4, 32, 4, 4)
    for node in states[1:]:
        assert torch.equal(node, torch.zeros_like(node))
    assert states[0].abs().sum() > 0


def _ops_touched(net, before):
    changed = set()
    for name, p in net.named_parameters():
        if ".edges." in name and not torch.equal(before[name], p.detach()):
            cell, edge, op = name.split(".")[1], name.split(".")[3], name.split(".")[5]
            changed.add((int(cell), int(edge), int(op)))
    return changed


def test_nasp_weight_step_touches_only_selected_ops():
    net = _net()
    problem = SearchProblem(network=net, loss=_loss, weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    strategy = build_strategy("nasp", problem, epochs=1)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    strategy.step(_batch(0), _batch(1))
    chosen = strategy.architect.chosen()  # discrete point of the (updated) continuous alphas
    expected = set()
    for i, cell in enumerate(net.cells):
        rows = chosen[1 if cell.reduction else 0].tolist()
        for edge, op in enumerate(rows):
            if op >= 0 and any(p.numel() for p in cell.edges[edge].ops[op].parameters()):
                expected.add((i, edge, op))
    assert _ops_touched(net, before) == expected
    assert expected  # some parametrised op was selected


def test_nasp_arch_gradient_equals_full_autograd_gradient(monkeypatch):
    net = _net().double()
    batch = _batch(2, dtype=torch.float64)
    with torch.no_grad():
        for a, project in net.iter_arch():
            a.copy_(project(a))
    net.mixing = Mixing.ACTIVE
    fast = torch.autograd.grad(_loss(net, batch), net.arch_parameters())

    def full_mix(candidates, p, row, like=None):  # every op with autograd, weights = alpha as they are
        return sum(p.weights[row][k] * fn() for k, fn in enumerate(candidates))

    monkeypatch.setattr(search_net, "mix", full_mix)
    full = torch.autograd.grad(_loss(net, batch), net.arch_parameters())
    for f, g in zip(fast, full):
        assert torch.allclose(f, g, atol=1e-10, rtol=1e-7)
        assert (f != 0).sum() > f.shape[0]  # unselected ops and dropped edges get gradients too


def test_derive_picks_top2_edges_by_softmax_and_argmax_op():
    net = _net()
    with torch.no_grad():
        net.alpha_normal.fill_(0.0)
        net.alpha_normal[0, 0] = 3.0  # node 0: edge 0 sep_conv_3x3
        net.alpha_normal[1, 6] = 2.0  # node 0: edge 1 skip
        net.alpha_normal[4, 2] = 5.0  # node 1: edge from node 0 (state 2), dil_conv_3x3
    g = net.genotype()
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert ("dil_conv_3x3", 2) in g.normal[2:4]
    assert g.normal_concat == (2, 3, 4, 5)


@pytest.mark.parametrize("mixing", [Mixing.SOFTMAX, Mixing.ACTIVE, Mixing.SINGLE])
def test_forward_under_every_mixing(mixing):
    net = _net()
    net.mixing = mixing
    with torch.no_grad():
        for a, project in net.iter_arch():
            a.copy_(project(a))
    out = net(_batch()[0])
    assert out.shape == (4, 4) and torch.isfinite(out).all()


def test_model_size_term_regularizes_only_the_normal_cell_by_op_size():
    from nasp import ModelSize
    from nasp.cnn.ops import OPS

    net = _net()
    counts = net.op_params(False)
    assert counts == [OPS.get(n).params(4) for n in net.space.normal]
    assert counts[net.space.normal.index("skip_connect")] == 0
    reg = ModelSize([counts, None])
    with torch.no_grad():
        discrete = [project(a) for a, project in net.iter_arch()]
    alphas = [d.clone().requires_grad_() for d in discrete]
    grads = torch.autograd.grad(reg(alphas), alphas, allow_unused=True)
    assert grads[1] is None  # the reduction cell is not regularized
    big = net.space.normal.index("sep_conv_5x5")
    rows = discrete[0][:, big] == 1
    if rows.any():
        assert (grads[0][rows, big] > 0).all()
    assert (grads[0][discrete[0] == 0] == 0).all()

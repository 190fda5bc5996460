"""Second-order DARTS: one RNG state for the training-batch passes (dropout), and both unrolled forms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nasp import NaspError, SearchNetwork, mix, plan
from nasp.mixing import Mixing
from nasp.strategies import SearchProblem, build_strategy


class DropoutNet(SearchNetwork):
    """Two mixed edges with dropout between them (float64); records the dropout masks it draws."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ops1 = nn.ModuleList(nn.Linear(3, 8).double() for _ in range(3))
        self.ops2 = nn.ModuleList(nn.Linear(8, 1).double() for _ in range(3))
        self.alpha = nn.Parameter(torch.rand(2, 3, generator=g, dtype=torch.float64))
        self.p = p
        self.masks: list[torch.Tensor] = []

    def arch_parameters(self):
        return [self.alpha]

    def forward(self, x):
        pl = plan(self.alpha, self.mixing)
        h = mix([lambda op=op: torch.tanh(op(x)) for op in self.ops1], pl, 0)
        if self.training and self.p > 0:
            mask = torch.empty_like(h).bernoulli_(1 - self.p) / (1 - self.p)
            self.masks.append(mask)
            h = h * mask
        return mix([lambda op=op: op(h) for op in self.ops2], pl, 1).squeeze(-1)

    def derive(self, alphas=None):
        return (alphas or self.arch_parameters())[0].argmax(-1).tolist()


def _mse(net, batch):
    return nn.functional.mse_loss(net(batch[0]), batch[1])


def _batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, generator=g, dtype=torch.float64)
    y = torch.randn(32, generator=g, dtype=torch.float64)
    return (x[:16], y[:16]), (x[16:], y[16:])


def _strategy(net, unrolled=None, momentum=0.0, weight_decay=0.0):
    options = {} if unrolled is None else {"unrolled": unrolled}
    problem = SearchProblem(network=net, loss=_mse, options=options,
                            weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=momentum, weight_decay=weight_decay))
    strategy = build_strategy("darts2", problem, epochs=1)
    net.mixing = Mixing.SOFTMAX
    return strategy


def test_two_calls_at_the_same_state_give_the_same_gradient_under_dropout():
    torch.manual_seed(0)
    net = DropoutNet()
    strategy = _strategy(net)
    train, valid = _batches()
    first, _ = strategy.arch_gradients(train, valid)
    second, _ = strategy.arch_gradients(train, valid)
    assert torch.equal(first[0], second[0])


def test_unrolled_and_finite_difference_passes_share_their_dropout_masks():
    torch.manual_seed(0)
    net = DropoutNet()
    strategy = _strategy(net)
    train, valid = _batches()
    strategy.arch_gradients(train, valid)
    unrolled, validation, w_plus, w_minus = net.masks
    assert torch.equal(unrolled, w_plus) and torch.equal(unrolled, w_minus)
    assert not torch.equal(unrolled, validation)


def test_hessian_term_under_dropout_is_as_small_as_without():
    """With fresh masks per pass, (g+ - g-) / 2r compares two random functions and explodes."""
    train, valid = _batches()

    def hessian_term(p: float) -> float:
        torch.manual_seed(0)
        net = DropoutNet(p)
        strategy = _strategy(net)
        second, _ = strategy.arch_gradients(train, valid)
        torch.manual_seed(0)
        net.masks.clear()
        first = torch.autograd.grad(_mse(net, valid), [net.alpha])[0]
        return float((second[0] - first).norm())

    assert hessian_term(0.5) < 20 * max(hessian_term(0.0), 1e-3)


def _unrolled_numeric_gradient(net, train, valid, xi, direction):
    """d/d alpha of L_val(w - xi * direction(w, grad_w), alpha), by central differences (no dropout)."""
    weights = net.weights()
    w0 = [w.detach().clone() for w in weights]
    a0 = net.alpha.detach().clone()

    def unrolled_val_loss(alpha_value):
        with torch.no_grad():
            net.alpha.copy_(alpha_value)
            for w, b in zip(weights, w0):
                w.copy_(b)
        gw = torch.autograd.grad(_mse(net, train), weights)
        with torch.no_grad():
            for w, b, g in zip(weights, w0, gw):
                w.sub_(xi * direction(w, b, g))
            return _mse(net, valid).item()

    numeric = torch.zeros_like(a0)
    eps = 1e-6
    for idx in range(a0.numel()):
        d = torch.zeros_like(a0).view(-1)
        d[idx] = eps
        d = d.view_as(a0)
        numeric.view(-1)[idx] = (unrolled_val_loss(a0 + d) - unrolled_val_loss(a0 - d)) / (2 * eps)
    with torch.no_grad():
        net.alpha.copy_(a0)
        for w, b in zip(weights, w0):
            w.copy_(b)
    return numeric


@pytest.mark.parametrize("unrolled", ["plain", "darts"])
def test_unrolled_forms_match_finite_differences(unrolled):
    torch.manual_seed(0)
    net = DropoutNet(p=0.0)
    strategy = _strategy(net, unrolled, momentum=0.9, weight_decay=0.05)
    train, valid = _batches()
    strategy.weight_step(train, Mixing.SOFTMAX)  # fills the momentum buffers
    net.mixing = Mixing.SOFTMAX
    buffers = {id(w): strategy.weight_optimizer.state[w]["momentum_buffer"].clone() for w in net.weights()}
    grad, _ = strategy.arch_gradients(train, valid)
    if unrolled == "plain":
        def direction(w, b, g):
            return g
    else:
        def direction(w, b, g):
            return 0.9 * buffers[id(w)] + g + 0.05 * b
    numeric = _unrolled_numeric_gradient(net, train, valid, 0.1, direction)
    assert torch.allclose(grad[0], numeric, rtol=1e-3, atol=1e-7), (grad[0], numeric)
    first = torch.autograd.grad(_mse(net, valid), [net.alpha])[0]  # (the helper restored the state)
    assert not torch.allclose(first, numeric, rtol=1e-3)  # the second-order term matters here


def test_unrolled_forms_differ_with_momentum_and_default_is_plain():
    train, valid = _batches()
    grads = {}
    for unrolled in (None, "plain", "darts"):
        torch.manual_seed(0)
        net = DropoutNet(p=0.0)
        strategy = _strategy(net, unrolled, momentum=0.9, weight_decay=0.05)
        strategy.weight_step(train, Mixing.SOFTMAX)
        net.mixing = Mixing.SOFTMAX
        grads[unrolled] = strategy.arch_gradients(train, valid)[0][0]
    assert torch.equal(grads[None], grads["plain"])
    assert not torch.allclose(grads["plain"], grads["darts"], rtol=1e-3)


def test_unknown_unrolled_form_is_an_error():
    with pytest.raises(NaspError, match="--unrolled 'exact'"):
        _strategy(DropoutNet(), "exact")

import copy

import pytest
import torch

from nasp import Architect, ModelSize, prox


def _quadratic_loss(alpha, target):
    return ((alpha * target).sum(-1) - 1.0).pow(2).sum() + (alpha**3).sum()


def test_discrete_gradient_matches_hand_computation_and_values_are_restored():
    torch.manual_seed(0)
    alpha = torch.nn.Parameter(torch.tensor([[0.2, 0.6, 0.4], [0.9, 0.1, 0.3]]))
    target = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    arch = Architect([alpha], lr=0.1)
    before = alpha.detach().clone()
    with arch.discrete() as projected:
        assert torch.equal(alpha.detach(), prox.onehot(before))
        assert torch.equal(projected[0], prox.onehot(before))
        _quadratic_loss(alpha, target).backward()
    assert torch.equal(alpha.detach(), before)
    # by hand at the discrete point d: dL/dd = 2 (d.t - 1) t + 3 d^2
    d = prox.onehot(before)
    resid = (d * target).sum(-1, keepdim=True) - 1.0
    expected = 2 * resid * target + 3 * d**2
    assert torch.allclose(alpha.grad, expected)


def test_step_uses_discrete_gradient_then_clamps():
    alpha = torch.nn.Parameter(torch.tensor([[0.95, 0.05]]))
    opt = torch.optim.SGD([alpha], lr=1.0)
    arch = Architect([alpha], optimizer=opt)
    with arch.discrete():
        # at the discrete point [1, 0]: gradient (-1, +1) by construction
        (alpha * torch.tensor([[-1.0, 1.0]])).sum().backward()
    arch.step()
    assert alpha.detach().tolist() == [[1.0, 0.0]]  # 1.95 -> 1, -0.95 -> 0


def test_backward_matches_loss_backward():
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(3))
    alpha = torch.nn.Parameter(torch.rand(2, 3))
    arch = Architect([alpha])
    with arch.discrete():
        arch.backward(((alpha @ w) ** 2).sum())
    g1 = alpha.grad.clone()
    assert w.grad is None  # no gradient computed for non-architecture parameters
    arch.zero_grad()
    with arch.discrete():
        ((alpha @ w) ** 2).sum().backward()
    assert torch.allclose(alpha.grad, g1)


def test_default_optimizer_is_adam_with_authors_settings():
    arch = Architect([torch.nn.Parameter(torch.rand(2, 2))])
    group = arch.optimizer.param_groups[0]
    assert isinstance(arch.optimizer, torch.optim.Adam)
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)


def test_state_round_trip():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.rand(3, 4))
    arch = Architect([a], lr=0.01)
    for _ in range(3):
        with arch.discrete():
            (a * torch.randn(3, 4)).sum().backward()
        arch.step()
        arch.zero_grad()
    state = copy.deepcopy(arch.state_dict())  # as after a save and load
    b = torch.nn.Parameter(torch.rand(3, 4))
    arch2 = Architect([b], lr=0.01)
    arch2.load_state_dict(state)
    assert torch.equal(a.detach(), b.detach())
    g = torch.randn(3, 4)
    for x, ar in ((a, arch), (b, arch2)):
        with ar.discrete():
            (x * g).sum().backward()
        ar.step()
    assert torch.equal(a.detach(), b.detach())
    with pytest.raises(ValueError):
        Architect([torch.nn.Parameter(torch.rand(2, 4))]).load_state_dict(state)


def test_chosen_marks_dropped_edges():
    a = torch.nn.Parameter(torch.tensor([[0.2, 0.6], [0.7, 0.1], [0.3, 0.4], [0.9, 0.2], [0.1, 0.8]]))
    arch = Architect([a], discretize=prox.CellProjection([2, 3], k=1))
    assert arch.chosen()[0].tolist() == [-1, 0, -1, 0, -1]
    assert Architect([a]).chosen()[0].tolist() == [1, 0, 1, 0, 1]


def test_penalty_model_size_at_discrete_point_reaches_selected_ops_only():
    a = torch.nn.Parameter(torch.tensor([[0.3, 0.8, 0.1], [0.6, 0.2, 0.5]]))
    params = [10.0, 30.0, 60.0]
    arch = Architect([a], regularizer=ModelSize([params]), eta=2.0)
    with arch.discrete():
        pen = arch.penalty()
        pen.backward()
    # selected ops: 1 (p=0.3) and 0 (p=0.1): R = 0.3 + 0.1; grad = eta * 2 * a * p/P at a=1
    assert pen.item() == pytest.approx(2.0 * 0.4)
    expected = torch.tensor([[0.0, 2 * 2 * 0.3, 0.0], [2 * 2 * 0.1, 0.0, 0.0]])
    assert torch.allclose(a.grad, expected)
    assert Architect([a]).penalty().item() == 0.0


def test_discrete_is_not_reentrant_and_step_inside_is_an_error():
    arch = Architect([torch.nn.Parameter(torch.rand(2, 2))])
    with arch.discrete():
        with pytest.raises(RuntimeError):
            with arch.discrete():
                pass
        with pytest.raises(RuntimeError):
            arch.step()

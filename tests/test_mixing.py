"""``nasp.mixing.mix`` under NASP's ``Active`` rule: the forward pass runs the selected
candidates only; each other candidate runs once, in the backward pass, without autograd; the
gradient of every weight equals the dense rule's (REFERENCE §1)."""
import torch

from nasp.mixing import Active, MixingRule, MixPlan, mix, plan


class Dense(MixingRule):
    """Every candidate with autograd, weights as they are: the reference gradient."""

    def plan(self, alpha):
        return MixPlan(alpha, None, False, self)


def _candidates(x, weights, log):
    def make(k, w):
        def run():
            log.append((k, torch.is_grad_enabled()))
            return torch.tanh(x @ w) * (k + 1)
        return run
    return [make(k, w) for k, w in enumerate(weights)]


def test_active_runs_unselected_candidates_in_backward_only_with_the_dense_gradient():
    torch.manual_seed(0)
    x = torch.randn(5, 4, requires_grad=True)
    weights = [torch.randn(4, 3, requires_grad=True) for _ in range(4)]
    alpha = torch.tensor([[0.0, 1.0, 0.0, 0.0]], requires_grad=True)
    target = torch.randn(5, 3)

    log = []
    out = mix(_candidates(x, weights, log), plan(alpha, Active()), 0)
    assert log == [(1, True)]  # the forward: the selected candidate only
    ((out - target) ** 2).sum().backward()
    assert sorted(log[1:]) == [(0, False), (2, False), (3, False)]  # each other one once, no autograd
    got = [alpha.grad.clone(), x.grad.clone()] + [w.grad for w in weights]

    for t in [alpha, x, *weights]:
        t.grad = None
    reference = mix(_candidates(x, weights, []), plan(alpha, Dense()), 0)
    ((reference - target) ** 2).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(got[0], alpha.grad)
    torch.testing.assert_close(got[1], x.grad)
    assert got[2] is None and got[4] is None and got[5] is None  # unselected weights get no gradient
    torch.testing.assert_close(got[3], weights[1].grad)


def test_active_row_without_a_selected_candidate_adds_zero_and_still_gets_gradients():
    torch.manual_seed(1)
    x = torch.randn(5, 4)
    weights = [torch.randn(4, 3) for _ in range(3)]
    alpha = torch.zeros(1, 3, requires_grad=True)
    log = []
    out = mix(_candidates(x, weights, log), plan(alpha, Active()), 0, like=torch.empty(5, 3))
    assert log == [] and torch.count_nonzero(out) == 0
    out.sum().backward()
    expected = torch.stack([(torch.tanh(x @ w) * (k + 1)).sum() for k, w in enumerate(weights)])
    torch.testing.assert_close(alpha.grad[0], expected)

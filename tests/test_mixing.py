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


def test_active_under_autocast_runs_the_unselected_candidates_as_the_forward_did():
    """The unselected convolutions run in the backward pass under the forward's autocast state
    (without it a bfloat16 input meets float32 weights and the backward fails)."""
    torch.manual_seed(2)
    stem = torch.nn.Conv2d(3, 3, 1)
    convs = [torch.nn.Conv2d(3, 4, 3, padding=1) for _ in range(3)]
    x0 = torch.randn(2, 3, 5, 5)
    alpha = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = stem(x0)  # bfloat16, as inside a network
        out = mix([lambda c=c: c(x) for c in convs], plan(alpha, Active()), 0)
        loss = out.float().square().sum()
    loss.backward()
    got = alpha.grad.clone()
    alpha.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = stem(x0)
        reference = mix([lambda c=c: c(x) for c in convs], plan(alpha, Dense()), 0).float().square().sum()
    reference.backward()
    torch.testing.assert_close(got, alpha.grad, rtol=0.02, atol=0.02)
    assert (got[0, :2] != 0).all()


def test_active_backward_twice_with_a_retained_graph_gives_the_same_gradient():
    torch.manual_seed(3)
    x = torch.randn(5, 4)
    weights = [torch.randn(4, 3) for _ in range(3)]
    alpha = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    out = mix(_candidates(x, weights, []), plan(alpha, Active()), 0).sum()
    first = torch.autograd.grad(out, alpha, retain_graph=True)[0]
    second = torch.autograd.grad(out, alpha)[0]
    torch.testing.assert_close(first, second)

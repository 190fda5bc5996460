"""The element-wise MLP's hand-written autograd function against the plain module."""
from __future__ import annotations

import pytest
import torch

from sif.space import ElementwiseMLP, ElementwiseMLPFunction


@pytest.mark.parametrize("residual", [True, False])
def test_gradcheck_in_float64(residual):
    torch.manual_seed(0)
    mlp = ElementwiseMLP(5, residual).double()
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()  # the residual form starts its output layer at zero
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    inputs = (x, mlp.inner.weight, mlp.inner.bias, mlp.outer.weight, mlp.outer.bias, residual)
    assert torch.autograd.gradcheck(ElementwiseMLPFunction.apply, inputs)
    # a frozen MLP's path: the input's gradient from the slope kept in forward
    frozen = (x, *(w.detach() for w in inputs[1:5]), residual, True)
    assert torch.autograd.gradcheck(ElementwiseMLPFunction.apply, frozen)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("shape", [(7, 4), (2, 3, 4), (5,)])
def test_same_values_and_gradients_as_the_plain_module(residual, shape):
    torch.manual_seed(1)
    mlp = ElementwiseMLP(8, residual).double()
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*shape, dtype=torch.float64)
    results = []
    for fn in (mlp, mlp.reference):
        out = fn(x)
        grads = torch.autograd.grad((out * w).sum(), [x, *mlp.parameters()])
        results.append((out, grads))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    for u, v in zip(ga, gb):
        assert u.shape == v.shape and torch.allclose(u, v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("residual", [True, False])
def test_a_frozen_mlp_passes_gradients_to_its_input_only(residual):
    torch.manual_seed(2)
    mlp = ElementwiseMLP(4, residual).double().requires_grad_(False)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, dtype=torch.float64)
    (mlp(x) * w).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in mlp.parameters())
    (want,) = torch.autograd.grad((mlp.reference(x) * w).sum(), [x])
    assert torch.allclose(x.grad, want, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(mlp(x), mlp.reference(x))


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_under_autocast_the_mlp_computes_in_float32(frozen, residual):
    """--amp: bfloat16 autocast around the MLP and a bfloat16 op after it. The MLP computes in
    float32, so the input's gradient is the float32 module's through the same bfloat16 op."""
    torch.manual_seed(3)
    mlp = ElementwiseMLP(8, residual)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_()
    mlp.requires_grad_(not frozen)
    x = torch.randn(64, 16, requires_grad=True)
    head = torch.randn(16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(x)
        score = out @ head
    assert out.dtype == torch.float32 and score.dtype == torch.bfloat16
    (got,) = torch.autograd.grad(score.float().sum(), [x])
    plain = mlp.reference(x)  # float32, outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain_score = plain @ head
    (want,) = torch.autograd.grad(plain_score.float().sum(), [x])
    assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=1e-5, atol=1e-5)

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


def test_a_frozen_mlp_passes_gradients_to_its_input_only():
    mlp = ElementwiseMLP(4).requires_grad_(False)
    x = torch.randn(6, 3, requires_grad=True)
    mlp(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in mlp.parameters())
    with torch.no_grad():
        assert torch.allclose(mlp(x), mlp.reference(x))

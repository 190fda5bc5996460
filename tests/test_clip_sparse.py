"""``clip_grad_norm``: the dense clip, for sparse gradients too."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nasp.strategies.base import clip_grad_norm

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _params(device: str, scale: float) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The same three parameters twice: with sparse (uncoalesced, a row twice) and dense gradients."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(10, 3, generator=g, dtype=torch.float64)
    rows = torch.tensor([1, 4, 1, 7])  # row 1 twice: its gradient rows sum
    values = scale * torch.randn(4, 3, generator=g, dtype=torch.float64)
    dense_grads = [torch.sparse_coo_tensor(rows.unsqueeze(0), values, (10, 3), check_invariants=True),
                   scale * torch.randn(5, generator=g, dtype=torch.float64),
                   torch.sparse_coo_tensor(torch.tensor([[2, 2]]), scale * torch.ones(2, 1, dtype=torch.float64), (6, 1), check_invariants=True)]
    shapes = [table, torch.zeros(5, dtype=torch.float64), torch.zeros(6, 1, dtype=torch.float64)]
    sparse, dense = [], []
    for w, grad in zip(shapes, dense_grads):
        a, b = nn.Parameter(w.clone().to(device)), nn.Parameter(w.clone().to(device))
        a.grad = grad.to(device)
        b.grad = (grad.to_dense() if grad.is_sparse else grad.clone()).to(device)
        sparse.append(a)
        dense.append(b)
    return sparse, dense


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [10.0, 1e-3])  # clipped, and left as it is
def test_sparse_gradients_are_clipped_as_the_dense_clip_does(device, scale):
    sparse, dense = _params(device, scale)
    got = clip_grad_norm(sparse, 1.0)
    want = nn.utils.clip_grad_norm_(dense, 1.0)
    assert torch.allclose(got, want, rtol=1e-12)
    assert (want > 1.0) == (scale > 1)
    assert sparse[0].grad.is_sparse and sparse[0].grad.is_coalesced()
    for a, b in zip(sparse, dense):
        ga = a.grad.to_dense() if a.grad.is_sparse else a.grad
        assert torch.allclose(ga, b.grad, rtol=1e-12, atol=1e-15)


def test_dense_gradients_take_the_dense_clip_exactly():
    _, dense = _params("cpu", 10.0)
    _, again = _params("cpu", 10.0)
    assert torch.equal(clip_grad_norm(dense, 1.0), nn.utils.clip_grad_norm_(again, 1.0))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(dense, again))

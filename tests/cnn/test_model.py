"""Evaluation network details: drop-path on every non-identity op."""
from __future__ import annotations

import torch

from nasp.cnn.genotypes import Genotype
from nasp.cnn.model import EvalCell
from nasp.cnn.ops import FactorizedReduce, Identity


def _skip_cell(reduction: bool) -> EvalCell:
    edges = [("skip_connect", 0), ("skip_connect", 1)] * 4
    genotype = Genotype.build(edges, [2, 3, 4, 5], edges, [2, 3, 4, 5], "test")
    return EvalCell(genotype, 4, 4, 4, reduction=reduction, reduction_prev=False)


def test_stride2_skip_connect_gets_drop_path():
    torch.manual_seed(0)
    cell = _skip_cell(reduction=True).train()
    assert all(isinstance(op, FactorizedReduce) for op in cell.ops)
    x = torch.randn(64, 4, 6, 6)
    out = cell(x, x, drop_prob=0.5)
    # every node sums two FactorizedReduce paths, each dropped per sample with probability 0.5:
    # about a quarter of the (sample, node) blocks lose both and are all zeros
    blocks = out.reshape(64, 4, -1).abs().amax(dim=2)
    assert 0.1 < (blocks == 0).float().mean() < 0.4


def test_identity_skip_connect_is_never_dropped():
    torch.manual_seed(0)
    cell = _skip_cell(reduction=False).train()
    assert all(isinstance(op, Identity) for op in cell.ops)
    x = torch.randn(8, 4, 6, 6)
    s0, s1 = cell.pre0(x), cell.pre1(x)
    out = cell(x, x, drop_prob=0.9)
    node = s0 + s1
    assert torch.allclose(out, torch.cat([node] * 4, dim=1))

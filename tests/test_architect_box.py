"""``Architect.step`` projects onto C2 through ``prox.box`` (the library's one clamp)."""
from __future__ import annotations

import torch
from torch import nn

from nasp import Architect, prox


def test_step_clamps_through_prox_box(monkeypatch):
    calls = []
    box = prox.box
    monkeypatch.setattr(prox, "box", lambda a, low, high: calls.append((low, high)) or box(a, low, high))
    alpha = nn.Parameter(torch.tensor([[0.2, 0.9]]))
    arch = Architect([alpha], lr=1.0, bounds=(0.1, 0.95))
    alpha.grad = torch.tensor([[1.0, -1.0]])
    arch.step()
    assert calls == [(0.1, 0.95)]
    assert torch.allclose(alpha.detach(), torch.tensor([[0.1, 0.95]]))

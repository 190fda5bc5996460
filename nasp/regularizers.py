"""Model-complexity regularizers R(A) for ``Architect(regularizer=..., eta=...)``."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor


class ModelSize:
    """R(A) = sum over edges and ops of (p_k / P) * a_e[k]^2 (REFERENCE §1).

    ``op_params[i]`` lists the parameter count of every op of alpha i at the search width, or is
    ``None`` to leave alpha i unregularized (the authors regularize only the normal cell).
    Evaluated at the discrete point, its gradient reaches only the selected ops.
    """

    def __init__(self, op_params: Sequence[Optional[Sequence[float]]]) -> None:
        self.weights: list[Optional[Tensor]] = []
        for counts in op_params:
            if counts is None:
                self.weights.append(None)
                continue
            p = torch.as_tensor(counts, dtype=torch.float64)
            total = p.sum()
            self.weights.append((p / total if total > 0 else torch.zeros_like(p)).float())

    def __call__(self, alphas: Sequence[Tensor]) -> Tensor:
        if len(alphas) != len(self.weights):
            raise ValueError(f"ModelSize has weights for {len(self.weights)} alphas, got {len(alphas)}")
        total = alphas[0].new_zeros(())
        for a, w in zip(alphas, self.weights):
            if w is not None:
                total = total + (a.pow(2) * w.to(a.device, a.dtype)).sum()
        return total

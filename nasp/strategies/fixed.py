"""``fixed``: no search — train the weights of the network's current (discrete) architecture.

Used to retrain a found architecture or to train a baseline through the same run loop.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..mixing import SinglePath
from .base import Strategy
from .registry import STRATEGIES


@STRATEGIES.register("fixed")
class Fixed(Strategy):
    """Weight steps only (single path); frozen parameters (``requires_grad=False``) stay as they are."""

    uses_valid_batch = False
    searches = False

    def _weight_params(self) -> list[nn.Parameter]:
        params = self.network.weights() + self.network.arch_extra_parameters()
        return [p for p in params if p.requires_grad]

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        return {"train_loss": self.weight_step(train_batch, SinglePath())}

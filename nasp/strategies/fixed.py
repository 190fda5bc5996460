"""``fixed``: no search — train the weights of a network as it is.

Used to retrain a found architecture, to train a baseline through the same run loop, and to
train any plain ``nn.Module`` (e.g. the CNN evaluation network) on ``nasp.loop.RunLoop``.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..network import SearchNetwork
from .base import Strategy
from .registry import STRATEGIES


@STRATEGIES.register("fixed")
class Fixed(Strategy):
    """Weight steps only (single path for a search network); frozen parameters
    (``requires_grad=False``) stay as they are."""

    uses_valid_batch = False
    searches = False

    def _weight_params(self) -> list[nn.Parameter]:
        net = self.network
        params = net.weights() + net.arch_extra_parameters() if isinstance(net, SearchNetwork) else list(net.parameters())
        return [p for p in params if p.requires_grad]

    def step(self, train_batch: Any, valid_batch: Any) -> dict[str, Tensor]:
        return {"train_loss": self.weight_step(train_batch, self.single_path())}

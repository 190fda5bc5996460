"""The contract between the search strategies and a domain's search network."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from . import prox
from .mixing import Mixing


class SearchNetwork(nn.Module):
    """Base class of every search network (SIF, CNN cell, RNN cell, your own).

    A subclass registers its architecture tensors as parameters, lists them in
    ``arch_parameters()``, and in ``forward`` mixes its candidate operations with
    ``nasp.mixing.plan``/``mix`` under ``self.mixing`` (set by the strategy). The strategies need
    nothing else; the defaults below fit most networks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mixing: Mixing = Mixing.SINGLE

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture tensors (rows x ops), in a fixed order."""
        raise NotImplementedError

    def arch_extra_parameters(self) -> list[nn.Parameter]:
        """Parameters searched with the architecture on validation data but never projected
        (SIF's element-wise MLPs). Strategies without an architecture step train them as weights."""
        return []

    def weights(self) -> list[nn.Parameter]:
        """Every trainable parameter that is neither architecture nor architecture extra."""
        skip = {id(p) for p in self.arch_parameters()} | {id(p) for p in self.arch_extra_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def discretizers(self) -> Sequence[Callable[[Tensor], Tensor]]:
        """prox onto C1 for each architecture tensor (default: per-row one-hot)."""
        return [prox.onehot for _ in self.arch_parameters()]

    def derive(self, alphas: Sequence[Tensor] | None = None) -> Any:
        """The final architecture as a JSON-able object, from ``alphas`` (default: current)."""
        raise NotImplementedError

    def reset_weights(self) -> None:
        """Re-initialise every weight (random search trains each candidate from scratch)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    @torch.no_grad()
    def set_architecture(self, alphas: Sequence[Tensor]) -> None:
        """Copy ``alphas`` into the architecture tensors."""
        for a, value in zip(self.arch_parameters(), alphas):
            a.copy_(value)

    def iter_arch(self) -> Iterator[tuple[nn.Parameter, Callable[[Tensor], Tensor]]]:
        return zip(self.arch_parameters(), self.discretizers())

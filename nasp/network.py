"""The contract between the search strategies and a domain's search network."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from . import prox
from .mixing import Mixing, MixingRule


class SearchNetwork(nn.Module):
    """Base class of every search network (SIF, CNN cell, RNN cell, your own).

    A subclass registers its architecture tensors as parameters, lists them in
    ``arch_parameters()``, and in ``forward`` mixes its candidate operations with
    ``nasp.mixing.plan``/``mix`` under ``self.mixing``, the rule a strategy sets for each forward
    through ``using(rule)``. The strategies need nothing else; the defaults below fit most networks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mixing: MixingRule = Mixing.SINGLE
        #: a cost budget every projection obeys (``set_budget``); None: the plain discretizers
        self.budget: Optional[prox.BudgetedCellProjection] = None

    @contextmanager
    def using(self, rule: MixingRule) -> Iterator[None]:
        """Forward passes inside mix candidates under ``rule``; the previous rule comes back on exit."""
        previous, self.mixing = self.mixing, rule
        try:
            yield
        finally:
            self.mixing = previous

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture tensors (rows x ops), in a fixed order."""
        raise NotImplementedError

    def arch_extra_parameters(self) -> list[nn.Parameter]:
        """Parameters searched with the architecture on validation data but never projected
        (SIF's element-wise MLPs). Strategies without an architecture step train them as weights."""
        return []

    def exported_weights(self) -> list[nn.Parameter]:
        """Weights exported with the architecture (SIF's searched element-wise MLPs): a strategy
        that trains candidates in turn keeps the best candidate's. Default: the architecture extras."""
        return self.arch_extra_parameters()

    def weights(self) -> list[nn.Parameter]:
        """Every trainable parameter that is neither architecture nor architecture extra."""
        skip = {id(p) for p in self.arch_parameters()} | {id(p) for p in self.arch_extra_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def discretizers(self) -> Sequence[Callable[[Tensor], Tensor]]:
        """prox onto C1 for each architecture tensor (default: per-row one-hot)."""
        return [prox.onehot for _ in self.arch_parameters()]

    def set_budget(self, budget: Optional[prox.BudgetedCellProjection]) -> None:
        """Make every projection of this network (NASP's iterates, its export, random samples,
        DARTS' budgeted derivation) a cell within ``budget``; None removes it."""
        self.budget = budget

    def projection(self) -> prox.Projection:
        """prox onto C1 of every architecture tensor at once: the budget's when one is set, else
        ``discretizers()`` applied one per tensor."""
        return self.budget if self.budget is not None else prox.PerTensor(self.discretizers())

    def derive(self, alphas: Sequence[Tensor] | None = None) -> Any:
        """The architecture a supernet method (DARTS) reads from continuous ``alphas`` (default:
        current), as a JSON-able object. Cells use DARTS' softmax rule here."""
        raise NotImplementedError

    def export(self, discrete: Sequence[Tensor], continuous: Sequence[Tensor] | None = None) -> Any:
        """The JSON-able architecture held by *discrete* values (a projection prox_C1(alpha)):
        on every row, the op of its non-zero entry; a row of zeros is a dropped edge. This is
        what NASP-like strategies trained and validated. ``continuous`` (the values projected)
        may be reported beside it. Default: ``derive(discrete)`` (right for networks whose
        derivation is a per-row arg-max)."""
        return self.derive(discrete)

    @torch.no_grad()
    def project(self, alphas: Sequence[Tensor] | None = None) -> list[Tensor]:
        """prox onto C1 of ``alphas`` (default: current) by ``projection()``."""
        alphas = list(alphas) if alphas is not None else [a.detach() for a in self.arch_parameters()]
        return self.projection()(alphas)

    def default_architecture(self) -> list[Tensor]:
        """The discrete architecture a local search starts from (a domain's default model);
        default: the projection of the current alphas."""
        return self.project()

    def starting_architectures(self) -> list[list[Tensor]]:
        """The discrete architectures a local search warms up, each from the weights as built,
        before it keeps the best on validation as its start; default: ``default_architecture``
        alone (a space with more than one strong default model lists them, so that the search
        does not start where one of them is already far ahead of the others' trials)."""
        return [self.default_architecture()]

    def swap_in(self, architecture: Sequence[Tensor], tensor: int, row: int,
                column: int) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """Called by a local search before candidate ``column`` replaces the choice of ``row``
        of architecture tensor ``tensor`` in the discrete ``architecture``: set the weights of
        the candidate so that it starts computing what the replaced one computed, where the
        space allows. Returns the (source, destination) parameters whose values it copied (the
        strategy copies their optimizer state too). Default: nothing (right where initial
        weights already do, or where nothing can)."""
        return []

    def simpler(self, tensor: int, row: int, column: int, than: int) -> bool:
        """Whether candidate ``column`` of ``row`` of architecture tensor ``tensor`` is a special
        case of candidate ``than`` (a network with ``than`` can compute what one with ``column``
        computes, with fewer weights or constraints dropped): a local search then keeps
        ``column`` when it scores within its margin of ``than``. Default: no candidate is."""
        return False

    def run_hooks(self) -> list[Any]:
        """Run-loop hooks (``nasp.loop.Hook``) this network brings along, for state of its own
        that lives outside ``state_dict`` yet must be checkpointed with the run (a gradient it
        gathers across steps, say). ``RunLoop`` adds them after the run's own hooks. Default: none."""
        return []

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


def check_state(module: nn.Module, state: dict, finite: bool = False) -> None:
    """A TypeError unless every tensor of ``state`` that ``module`` holds has the module's dtype
    (``load_state_dict`` would convert an int64 table silently); ``finite``: a ValueError for a
    NaN or infinite parameter (a saved model never holds one; buffers may hold bounds of +-inf)."""
    own, params = module.state_dict(), dict(module.named_parameters())
    for key, value in state.items():
        if key not in own or not isinstance(value, Tensor):
            continue
        if value.dtype != own[key].dtype:
            raise TypeError(f"{key!r} is {value.dtype}, expected {own[key].dtype}")
        if finite and key in params and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{key!r} holds NaN or infinite values")

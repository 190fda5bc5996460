"""The SIF search space (REFERENCE §2): element-wise MLPs and vector-wise interaction ops.

Every vector-wise op is a module ``op(p, q) -> score`` with its own output head; the registry
``INTERACTIONS`` maps names to op classes, so a new interaction function is one small class.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nasp.errors import NaspError
from nasp.registry import Registry

INTERACTIONS: Registry = Registry("interaction function")

#: the vector-wise ops searched by default (the paper's space)
SEARCH_SPACE = ("multiply", "plus", "min", "max", "concat")


def unit_ball(w: Tensor) -> Tensor:
    """Project ``w`` onto the unit L2 ball (done at every forward, as the authors)."""
    return w / w.norm().clamp_min(1.0)


def inner_box(w: Tensor) -> Tensor:
    """Clip every entry of ``w`` (length n) to [-1/sqrt(n), 1/sqrt(n)]: the largest box inside
    the unit L2 ball (done at every forward)."""
    bound = w.numel() ** -0.5
    return w.clamp(-bound, bound)


#: How an op's output vector w (length n) is bounded; both start at w_k = 1/sqrt(n), the plain
#: sum scaled into the ball. "ball": the authors' unit L2 ball. "box" (default): the largest box
#: inside it, |w_k| <= 1/sqrt(n). The ball lets a head pile its weight onto a few coordinates
#: (up to 1 each instead of 1/sqrt(n)), so that the same scores cost those embedding coordinates
#: far less L2 penalty; the box leaves no such escape. Measured in docs/sif.md.
HEADS = {"box": inner_box, "ball": unit_ball}


def check_head(name: str) -> str:
    """``name`` if it names a head bound, else a clear ``NaspError``."""
    if name not in HEADS:
        raise NaspError(f"unknown head {name!r}; known: {', '.join(HEADS)}")
    return name


class ElementwiseMLP(nn.Module):
    """g: scalar -> Linear(1, h) -> tanh -> Linear(h, 1), applied to every coordinate.

    ``residual=True`` (our default, ``--mlp residual``) adds a skip path, g(x) = x + MLP(x), and
    starts the output layer at zero, so the search starts from plain embeddings and learns a
    non-linearity only where the validation data ask for one. ``residual=False``
    (``--mlp paper``) is the paper's plain MLP, g(x) = MLP(x), with PyTorch's default random
    initialisation, as the authors start. Both hold the same parameters (``inner``, ``outer``).
    """

    def __init__(self, hidden: int = 8, residual: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.residual = residual
        self.inner = nn.Linear(1, hidden)
        self.outer = nn.Linear(hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.inner.reset_parameters()
        if self.residual:
            nn.init.zeros_(self.outer.weight)
            nn.init.zeros_(self.outer.bias)
        else:
            self.outer.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        out = self.outer(torch.tanh(self.inner(x.unsqueeze(-1)))).squeeze(-1)
        return x + out if self.residual else out


#: ``--mlp``: the forms of the element-wise MLP, name -> whether it has the skip path
MLP_FORMS = {"residual": True, "paper": False}


def check_mlp(name: str) -> str:
    """``name`` if it names an element-wise MLP form, else a clear ``NaspError``."""
    if name not in MLP_FORMS:
        raise NaspError(f"unknown element-wise MLP form {name!r}; known: {', '.join(MLP_FORMS)}")
    return name


class HeadOp(nn.Module):
    """Vector-wise op followed by its own bounded output vector w: score = w . op(p, q)."""

    #: whether the op takes a head bound (``--head``); the NCF baselines have none of their own
    uses_head = True
    width_factor = 1

    def __init__(self, dim: int, head: str = "box") -> None:
        super().__init__()
        self.dim = dim
        self.bound = HEADS[check_head(head)]
        self.head = nn.Parameter(torch.empty(dim * self.width_factor))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # every op starts as the plain sum of its output vector's entries, scaled into the ball
        nn.init.constant_(self.head, 1.0 / (self.dim * self.width_factor) ** 0.5)

    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return self.combine(p, q) @ self.bound(self.head)

    def num_params(self) -> int:
        return self.head.numel()


@INTERACTIONS.register("multiply")
class Multiply(HeadOp):
    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return p * q


@INTERACTIONS.register("plus")
class Plus(HeadOp):
    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return p + q


@INTERACTIONS.register("min")
class Min(HeadOp):
    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.minimum(p, q)


@INTERACTIONS.register("max")
class Max(HeadOp):
    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.maximum(p, q)


@INTERACTIONS.register("concat")
class Concat(HeadOp):
    width_factor = 2

    def combine(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.cat([p, q], dim=-1)


@INTERACTIONS.register("gmf")
class GMF(nn.Module):
    """Generalized MF (NCF): an unconstrained output vector over p * q."""

    uses_head = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.head = nn.Parameter(torch.ones(dim))  # unbounded, as in NCF

    def reset_parameters(self) -> None:
        nn.init.ones_(self.head)

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return (p * q) @ self.head


@INTERACTIONS.register("mlp")
class MLPTower(nn.Module):
    """NCF's MLP interaction: concat -> Linear(2k, 2k) -> ReLU -> Linear(2k, k) -> ReLU -> Linear(k, 1)."""

    uses_head = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1)
        )

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return self.net(torch.cat([p, q], dim=-1)).squeeze(-1)


@INTERACTIONS.register("pop")
class Popularity(nn.Module):
    """The popularity baseline of the ranking task: no interaction at all (score 0); the model's
    item bias holds each item's number of training interactions, and nothing is trained."""

    uses_head = False
    trains = False

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        return p.new_zeros(p.shape[0])

"""Search spaces: the candidate operations of the normal and the reduction cell.

A new space is one ``register_space`` call::

    register_space(Space("tiny", normal=("skip_connect", "conv_3x3"), reduce=("max_pool_3x3", "skip_connect")))
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry
from .ops import OPS


@dataclass(frozen=True)
class Space:
    """Op names of the normal and the reduction cell (every name must be in ``OPS``)."""

    name: str
    normal: tuple[str, ...]
    reduce: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        for op in self.normal + self.reduce:
            OPS.get(op)  # raises NaspError for an unknown op
        if not self.normal or not self.reduce:
            raise ValueError(f"space {self.name!r} needs at least one op per cell type")

    def ops(self, reduction: bool) -> tuple[str, ...]:
        return self.reduce if reduction else self.normal


SPACES: Registry[Space] = Registry("search space")


def register_space(space: Space) -> Space:
    SPACES.register(space.name)(space)
    return space


_DARTS7 = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
)
register_space(Space("darts", _DARTS7, _DARTS7, "DARTS' 7 operations (no 'none'), same in both cells"))
register_space(
    Space(
        "nasp12",
        normal=(
            "skip_connect",
            "conv_3x1_1x3",
            "dil_conv_3x3",
            "conv_1x1",
            "conv_3x3",
            "sep_conv_3x3",
            "sep_conv_5x5",
            "sep_conv_7x7",
        ),
        reduce=("skip_connect", "avg_pool_3x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7"),
        description="NASP's larger space: 8 normal-cell ops, 5 reduction-cell ops",
    )
)

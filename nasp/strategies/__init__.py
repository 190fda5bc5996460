"""Search strategies: one lifecycle (``Strategy``), many methods, one registry (``STRATEGIES``)."""
from .base import SearchProblem, Strategy
from .registry import STRATEGIES
from . import darts, proximal, random_search  # noqa: F401  (register the built-in strategies)


def build_strategy(name: str, problem: SearchProblem, epochs: int) -> Strategy:
    """The strategy registered as ``name`` for ``problem``; unknown names raise ``NaspError``."""
    return STRATEGIES.get(name)(problem, epochs)


__all__ = ["SearchProblem", "Strategy", "STRATEGIES", "build_strategy"]

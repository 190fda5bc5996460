"""Search strategies: one lifecycle (``Strategy``), many methods, one registry (``STRATEGIES``)."""
import logging

from ..errors import NaspError
from .base import SearchProblem, Strategy
from .registry import STRATEGIES
from . import asap, asng, blackbox, darts, drnas, fixed, gdas, local, proximal, random_search, rsws, snas  # noqa: F401  (register the built-in strategies)

log = logging.getLogger("nasp")


def build_strategy(name: str, problem: SearchProblem, epochs: int) -> Strategy:
    """The strategy registered as ``name`` for ``problem``; unknown names raise ``NaspError``.
    A given option that this strategy does not read (its class's ``reads``) is a warning."""
    cls = STRATEGIES.get(name)
    for option in cls.ignored_options(problem):
        log.warning("Warning: strategy %r ignores --%s (read by: %s)", name, option.replace("_", "-"),
                    ", ".join(n for n in STRATEGIES.names() if option in STRATEGIES.get(n).reads) or "none")
    return cls(problem, epochs)


def search_strategy_names() -> list[str]:
    """Registered strategies that search (every one but ``fixed``), for CLI choices."""
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).searches]


def check_search_strategy(name: str) -> str:
    """``name`` if it names a search strategy, else a ``NaspError`` listing the choices."""
    names = search_strategy_names()
    if name not in names:
        raise NaspError(f"unknown search strategy {name!r}; choose one of: {', '.join(names)}")
    return name


__all__ = ["SearchProblem", "check_search_strategy", "Strategy", "STRATEGIES", "build_strategy", "search_strategy_names"]

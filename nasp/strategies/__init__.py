"""Search strategies: one lifecycle (``Strategy``), many methods, one registry (``STRATEGIES``)."""
import logging
from typing import Optional

from ..errors import NaspError
from .base import SearchProblem, Strategy
from .registry import STRATEGIES
from . import asap, asng, bayesnas, blackbox, darts, drnas, fixed, gdas, local, pcdarts, proximal, random_search, rsws, snas  # noqa: F401,E501  (register the built-in strategies)

log = logging.getLogger("nasp")


def build_strategy(name: str, problem: SearchProblem, epochs: int) -> Strategy:
    """The strategy registered as ``name`` for ``problem``; unknown names raise ``NaspError``.
    A given option that this strategy does not read (its class's ``reads``) is a warning."""
    cls = STRATEGIES.get(name)
    for option in cls.ignored_options(problem):
        log.warning("Warning: strategy %r ignores --%s (read by: %s)", name, option.replace("_", "-"),
                    ", ".join(n for n in STRATEGIES.names() if option in STRATEGIES.get(n).reads) or "none")
    return cls(problem, epochs)


def search_strategy_names(domain: Optional[str] = None) -> list[str]:
    """Registered strategies that search (every one but ``fixed``), for CLI choices; with
    ``domain`` ("cnn", "rnn", "sif", or "core" for a network of your own), only those that can
    search its networks (``Strategy.domains``: pcdarts searches CNN cells only)."""
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).searches
            and (domain is None or STRATEGIES.get(name).domains is None or domain in STRATEGIES.get(name).domains)]


def check_search_strategy(name: str, domain: Optional[str] = None) -> str:
    """``name`` if it names a search strategy (that can search ``domain``'s networks, when one is
    given), else a one-line ``NaspError``: the choices, or why this domain cannot run it."""
    names = search_strategy_names()
    if name not in names:
        raise NaspError(f"unknown search strategy {name!r}; choose one of: {', '.join(names)}")
    return check_domain(name, domain) if domain is not None else name


def check_domain(name: str, domain: str) -> str:
    """``name`` if strategy ``name`` can search ``domain``'s networks (``Strategy.domains``), else
    a one-line ``NaspError`` saying why not."""
    cls = STRATEGIES.get(name)
    if cls.domains is not None and domain not in cls.domains:
        raise NaspError(f"--strategy {name} cannot run in {_where(domain)}: {cls.domain_note} "
                        f"(it runs in: {', '.join(_where(d) for d in sorted(cls.domains))})")
    return name


def _where(domain: str) -> str:
    return "a network of your own" if domain == "core" else f"nasp {domain} search"


__all__ = ["SearchProblem", "check_domain", "check_search_strategy", "Strategy", "STRATEGIES", "build_strategy", "search_strategy_names"]

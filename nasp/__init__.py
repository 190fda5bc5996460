"""nasp: neural architecture search by proximal iterations (Yao et al., AAAI 2020).

The core is domain-agnostic::

    from nasp import Architect, prox
    from nasp.strategies import SearchProblem, build_strategy

Domains built on it: ``sif`` (collaborative filtering), ``nasp.cnn`` and ``nasp.rnn`` (cells).

The names below are imported on first use, so that ``import nasp`` (and the ``nasp`` command's
start-up, ``nasp.cli``) does not load torch before it needs to.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "prox": "prox", "Architect": "architect", "NaspError": "errors", "Mixing": "mixing", "MixingRule": "mixing",
    "MixPlan": "mixing", "Selection": "mixing", "Softmax": "mixing", "Active": "mixing", "SinglePath": "mixing",
    "mix": "mixing", "plan": "mixing", "SearchNetwork": "network", "ModelSize": "regularizers",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # what type checkers and editors see; at run time ``__getattr__`` imports them
    from . import prox
    from .architect import Architect
    from .errors import NaspError
    from .mixing import Active, Mixing, MixingRule, MixPlan, Selection, SinglePath, Softmax, mix, plan
    from .network import SearchNetwork
    from .regularizers import ModelSize


def __getattr__(name: str) -> Any:
    """Import a public name's submodule when the name is first used."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    value = module if name == _EXPORTS[name] else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

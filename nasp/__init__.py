"""nasp: neural architecture search by proximal iterations (Yao et al., AAAI 2020).

The core is domain-agnostic::

    from nasp import Architect, prox
    from nasp.strategies import SearchProblem, build_strategy

Domains built on it: ``sif`` (collaborative filtering), ``nasp.cnn`` and ``nasp.rnn`` (cells).
"""
from . import prox
from .architect import Architect
from .errors import NaspError
from .mixing import Active, Mixing, MixingRule, MixPlan, Selection, SinglePath, Softmax, mix, plan
from .network import SearchNetwork
from .regularizers import ModelSize

__version__ = "0.1.0"

__all__ = ["Architect", "prox", "NaspError", "Mixing", "MixingRule", "MixPlan", "Selection", "Softmax", "Active",
           "SinglePath", "mix", "plan", "SearchNetwork", "ModelSize", "__version__"]

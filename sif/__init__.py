"""SIF: searching the interaction function of collaborative filtering (explicit ratings and
implicit feedback). ``from sif import SIF`` is the Python API; ``nasp sif`` the commands."""
from .estimator import SIF, SIFOptions

__all__ = ["SIF", "SIFOptions"]

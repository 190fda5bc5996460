"""The registry of search strategies: name -> ``Strategy`` subclass."""
from ..registry import Registry

STRATEGIES: Registry = Registry("strategy")

"""CNN cell search (DARTS and NASP search spaces) and retraining: ``nasp cnn search|train``.

Public pieces::

    from nasp.cnn import OPS, SPACES, CNNSearchNetwork, Genotype, load_genotype, MODELS
"""
from .genotypes import GENOTYPES, Genotype, load_genotype
from .model import MODELS, count_flops, count_params
from .ops import OPS, register_op
from .search_net import CNNSearchNetwork
from .spaces import SPACES, Space, register_space

__all__ = [
    "OPS", "register_op", "SPACES", "Space", "register_space", "CNNSearchNetwork", "Genotype", "GENOTYPES",
    "load_genotype", "MODELS", "count_params", "count_flops",
]

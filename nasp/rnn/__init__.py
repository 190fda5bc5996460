"""Recurrent cell search on language modelling (Penn Treebank), DARTS' recurrent space.

    from nasp.rnn import SPACES, RNNSearchNetwork, RecurrentModel, load_corpus, GENOTYPES

``nasp rnn search`` searches a cell with any registered strategy; ``nasp rnn train`` retrains a
genotype (a file, a run directory, or a published name such as ``DARTS_V2``) to a perplexity.
"""
from .corpus import Corpus, Segment, Vocabulary, batchify, load_corpus, read_corpus, segments
from .genotypes import GENOTYPES, RecurrentGenotype, load_genotype, make_genotype
from .model import (Dropouts, LMLoss, RNNSearchNetwork, RecurrentModel, SEARCH_DROPOUTS, TRAIN_DROPOUTS,
                    evaluate_nll)
from .spaces import ACTIVATIONS, SPACES, RecurrentSpace, register_space

__all__ = [
    "Corpus", "Segment", "Vocabulary", "batchify", "load_corpus", "read_corpus", "segments",
    "GENOTYPES", "RecurrentGenotype", "load_genotype", "make_genotype",
    "Dropouts", "LMLoss", "RNNSearchNetwork", "RecurrentModel", "SEARCH_DROPOUTS", "TRAIN_DROPOUTS", "evaluate_nll",
    "ACTIVATIONS", "SPACES", "RecurrentSpace", "register_space",
]

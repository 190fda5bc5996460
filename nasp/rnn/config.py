"""Settings both ``nasp rnn`` commands share, declared once (``nasp.config.setting``).

``SearchConfig`` (``search.py``) and ``TrainConfig`` (``train.py``) add their own and declare their
own defaults of the shared ones (``nasp.config.with_defaults``); ``nasp rnn search`` / ``train`` generate their
options from these fields (``nasp.options.options_from``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import click

from ..options import LEARNING_RATE, WEIGHT, FiniteFloatRange
from ..config import RunConfig, setting
from .model import Dropouts


def positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: a count above 0 (None: not given)."""
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


def rate(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: a dropout rate in [0, 1) (None: not given)."""
    if value is not None and not 0 <= value < 1:
        raise click.BadParameter("must be in [0, 1)")
    return value


@dataclass
class RNNConfig(RunConfig):
    """The settings of both commands (field = option); None: each command's own default."""

    epochs: int = setting(None, "Training epochs (search epochs for search, warm-up included).", type=click.INT, callback=positive)
    batch_size: int = setting(None, "Sequences per step.", type=click.INT, callback=positive)
    bptt: int = setting(35, "Back-propagation through time: tokens per segment.", type=click.INT, callback=positive)
    emb_size: int = setting(None, "Size of the word embeddings.", type=click.INT, callback=positive)
    hidden_size: int = setting(None, "Size of the recurrent state.", type=click.INT, callback=positive)
    eval_batch_size: int = setting(10, "Batch size of validation/test perplexity.", type=click.INT, callback=positive)
    lr: float = setting(20.0, "SGD learning rate of the weights.", type=LEARNING_RATE)
    weight_decay: float = setting(None, "SGD weight decay of the weights.", type=WEIGHT)
    clip: float = setting(0.25, "Max gradient norm of the weights.", type=FiniteFloatRange(min=0, min_open=True))
    tar: float = setting(1e-3, "Temporal activation regularization weight.", type=WEIGHT)
    dropoute: float = setting(Dropouts.embedding, "Embedding dropout (whole words).", type=click.FLOAT, callback=rate)
    dropouti: float = setting(Dropouts.input, "Locked dropout on the embedded input.", type=click.FLOAT, callback=rate)
    dropoutx: float = setting(Dropouts.x, "Variational dropout on x_t entering the cell.", type=click.FLOAT, callback=rate)
    dropouth: float = setting(Dropouts.hidden, "Variational dropout on states entering a matrix.", type=click.FLOAT, callback=rate)
    dropout: float = setting(Dropouts.output, "Locked dropout on the cell output.", type=click.FLOAT, callback=rate)
    #: the five rates at once, as the model takes them (None: from the five settings above; given, e.g.
    #: by a Python caller: they take its values)
    dropouts: Optional[Dropouts] = None
    amp: bool = False  #: bfloat16 autocast of the training forward passes on CUDA (``RunOptions.amp``)
    seed: int = 0  #: ``RunOptions.seed``

    def __post_init__(self) -> None:
        if self.dropouts is None:
            self.dropouts = Dropouts(output=self.dropout, hidden=self.dropouth, x=self.dropoutx, input=self.dropouti,
                                     embedding=self.dropoute)
        else:
            d = self.dropouts
            self.dropout, self.dropouth, self.dropoutx, self.dropouti, self.dropoute = d.output, d.hidden, d.x, d.input, d.embedding

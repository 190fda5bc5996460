"""Recurrent genotypes: the discrete cell, its JSON form, validation and published cells.

JSON form (``arch.json`` of an RNN search, accepted by ``nasp rnn train --genotype``)::

    {"type": "rnn-genotype", "recurrent": [["sigmoid", 0], ["relu", 1], ...], "concat": [1, ..., 8]}

``recurrent[i] = [activation, predecessor]`` for intermediate node ``i + 1``; predecessor 0 is
the initial state (from x_t and h_{t-1}), predecessor ``j >= 1`` is intermediate node ``j``, so
node ``i + 1`` may use ``0 .. i``. ``concat`` lists the nodes averaged into h_t (default all).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data import check_small_file
from ..errors import NaspError
from ..registry import Registry
from ..runs import ARCH, read_json
from .spaces import ACTIVATIONS, RecurrentSpace

GENOTYPE_TYPE = "rnn-genotype"


@dataclass(frozen=True)
class RecurrentGenotype:
    """A discrete recurrent cell: per node (activation, predecessor), and the averaged nodes."""

    recurrent: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]

    @property
    def steps(self) -> int:
        return len(self.recurrent)

    def to_json(self) -> dict:
        return {"type": GENOTYPE_TYPE, "recurrent": [[a, p] for a, p in self.recurrent], "concat": list(self.concat)}

    @classmethod
    def from_json(cls, obj: Any, source: str = "genotype", space: Optional[RecurrentSpace] = None) -> "RecurrentGenotype":
        """Parse and validate; every problem raises ``NaspError`` naming ``source``."""
        if isinstance(obj, dict) and "genotype" in obj and "recurrent" not in obj:
            obj = obj["genotype"]  # a summary.json-like wrapper
        if not isinstance(obj, dict) or "recurrent" not in obj:
            raise NaspError(f"{source}: not an RNN genotype (expected an object with a 'recurrent' list)")
        if obj.get("type", GENOTYPE_TYPE) != GENOTYPE_TYPE:
            raise NaspError(f"{source}: type {obj.get('type')!r} is not {GENOTYPE_TYPE!r}")
        recurrent = obj["recurrent"]
        if not isinstance(recurrent, list) or not recurrent:
            raise NaspError(f"{source}: 'recurrent' must be a non-empty list of [activation, predecessor] pairs")
        nodes = []
        for i, entry in enumerate(recurrent):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
                raise NaspError(f"{source}: node {i + 1}: expected [activation, predecessor], got {entry!r}")
            nodes.append((entry[0], entry[1]))
        concat = obj.get("concat", list(range(1, len(nodes) + 1)))
        if not isinstance(concat, list):
            raise NaspError(f"{source}: 'concat' must be a list of node indices")
        genotype = cls(tuple(nodes), tuple(concat))
        genotype.validate(source, space)
        return genotype

    def validate(self, source: str = "genotype", space: Optional[RecurrentSpace] = None) -> None:
        """Known activations, predecessors of node i+1 in 0..i, concat within 1..steps."""
        allowed = space.activations if space is not None else tuple(ACTIVATIONS.names())
        if space is not None and self.steps != space.steps:
            raise NaspError(f"{source}: {self.steps} nodes, but space {space.name!r} has {space.steps}")
        for i, (act, pred) in enumerate(self.recurrent):
            if act not in allowed:
                raise NaspError(f"{source}: node {i + 1}: unknown activation {act!r}; choose one of: {', '.join(allowed)}")
            if isinstance(pred, bool) or not isinstance(pred, int) or not 0 <= pred <= i:
                raise NaspError(f"{source}: node {i + 1}: bad predecessor {pred!r}; must be an integer in 0..{i}")
        if not self.concat:
            raise NaspError(f"{source}: 'concat' is empty")
        for c in self.concat:
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= self.steps:
                raise NaspError(f"{source}: bad concat node {c!r}; must be an integer in 1..{self.steps}")
        if len(set(self.concat)) != len(self.concat):
            raise NaspError(f"{source}: 'concat' repeats a node")


def make_genotype(recurrent: Sequence[tuple[str, int]], concat: Optional[Sequence[int]] = None) -> RecurrentGenotype:
    """A validated genotype from (activation, predecessor) pairs (concat: all nodes)."""
    g = RecurrentGenotype(tuple((a, int(p)) for a, p in recurrent), tuple(concat or range(1, len(recurrent) + 1)))
    g.validate()
    return g


GENOTYPES: Registry = Registry("published RNN genotype")

# The recurrent cells published with DARTS (Liu et al., ICLR 2019): DARTS_V1 from the first-order
# search, DARTS_V2 (the paper's cell, test perplexity 55.7 on PTB) from the second-order search.
GENOTYPES.register("DARTS_V1")(make_genotype(
    [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1), ("relu", 5), ("relu", 1)]))
GENOTYPES.register("DARTS_V2")(make_genotype(
    [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5), ("tanh", 3), ("relu", 5)]))


def load_genotype(spec: str | os.PathLike) -> RecurrentGenotype:
    """A genotype from a published name (``DARTS_V2``), a JSON file, or a run directory
    (its ``arch.json``). Errors raise ``NaspError``."""
    text = str(spec)
    if text in GENOTYPES:
        return GENOTYPES.get(text)
    path = Path(text)
    if path.is_dir():
        path = path / ARCH
        if not path.exists():
            raise NaspError(f"--genotype {text}: directory has no {ARCH}")
    elif not path.exists():
        raise NaspError(
            f"--genotype {text}: neither a file nor a published genotype ({', '.join(GENOTYPES.names())})"
        )
    check_small_file(path, "--genotype")
    return RecurrentGenotype.from_json(read_json(path, "genotype file"), source=str(path))

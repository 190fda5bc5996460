"""Genotypes: a discrete cell pair, as JSON and as DARTS' ``Genotype(normal=[...], ...)`` text.

A genotype lists, for every intermediate node of a cell, two ``(op, input)`` pairs; input 0 and
1 are the cell's two inputs, input ``i + 2`` is intermediate node ``i``. ``*_concat`` names the
states concatenated into the cell output.

Load with ``load_genotype(spec)``: ``spec`` is a published name (``DARTS_V1``, ``DARTS_V2``,
``NASP``), a ``.json`` file, a text file holding ``Genotype(...)`` (``FILE:NAME`` to pick one of
several), a run directory holding ``arch.json``, or the ``Genotype(...)`` text itself.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data import read_small_file
from ..errors import NaspError
from ..registry import Registry
from .ops import OPS, canonical_op

Edge = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """Normal and reduction cell: ``(op, input)`` pairs (two per node) and the concatenated states."""

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    # export ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_text(self) -> str:
        """DARTS' ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``."""
        return (
            f"Genotype(normal={[tuple(e) for e in self.normal]}, normal_concat={list(self.normal_concat)}, "
            f"reduce={[tuple(e) for e in self.reduce]}, reduce_concat={list(self.reduce_concat)})"
        )

    def cell(self, reduction: bool) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def op_names(self) -> set[str]:
        return {op for op, _ in self.normal + self.reduce}

    # import ---------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, obj: Any, source: str = "genotype") -> "Genotype":
        """From the dict of ``to_json`` (lists or tuples); validated."""
        if not isinstance(obj, dict):
            raise NaspError(f"{source}: expected a JSON object with normal, normal_concat, reduce, reduce_concat")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in obj]
        if missing:
            raise NaspError(f"{source}: missing key(s) {', '.join(missing)}")
        return cls.build(obj["normal"], obj["normal_concat"], obj["reduce"], obj["reduce_concat"], source)

    @classmethod
    def from_text(cls, text: str, source: str = "genotype", name: Optional[str] = None) -> "Genotype":
        """Parse DARTS' ``Genotype(...)`` text (a bare call, or a file of ``NAME = Genotype(...)``)."""
        found = _genotype_calls(text, source)
        if not found:
            raise NaspError(f"{source}: no Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...) found")
        if name is not None:
            if name not in found:
                raise NaspError(f"{source}: no genotype named {name!r}; found {', '.join(k for k in found if k)}")
            call = found[name]
        elif len(found) == 1:
            call = next(iter(found.values()))
        else:
            raise NaspError(f"{source}: holds {len(found)} genotypes ({', '.join(k or '?' for k in found)}); pass FILE:NAME")
        return cls.build(**_call_fields(call, source), source=source)

    @classmethod
    def build(cls, normal: Any, normal_concat: Any, reduce: Any, reduce_concat: Any, source: str = "genotype") -> "Genotype":
        """Validate and normalise: known ops (aliases resolved), 2 inputs per node, valid indices."""
        cells = {}
        for which, edges, concat in (("normal", normal, normal_concat), ("reduce", reduce, reduce_concat)):
            cells[which] = _check_cell(which, edges, concat, source)
        if len(cells["normal"][0]) != len(cells["reduce"][0]):
            raise NaspError(f"{source}: normal and reduce cells have different numbers of nodes")
        return cls(cells["normal"][0], cells["normal"][1], cells["reduce"][0], cells["reduce"][1])


def _check_cell(which: str, edges: Any, concat: Any, source: str) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
    if not isinstance(edges, (list, tuple)) or not edges or len(edges) % 2:
        raise NaspError(f"{source}: {which} must be a non-empty list of (op, input) pairs, two per node")
    steps = len(edges) // 2
    out = []
    for k, edge in enumerate(edges):
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise NaspError(f"{source}: {which}[{k}] = {edge!r} is not an (op, input) pair")
        op, index = edge
        if not isinstance(op, str):
            raise NaspError(f"{source}: {which}[{k}]: op {op!r} is not a name")
        op = canonical_op(op)
        if op not in OPS:
            raise NaspError(f"{source}: {which}[{k}]: unknown op {edge[0]!r}; known: {', '.join(OPS.names())}")
        node = k // 2
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < node + 2:
            raise NaspError(
                f"{source}: {which}[{k}]: input {index!r} of node {node} must be an integer in [0, {node + 1}]"
            )
        out.append((op, index))
    if isinstance(concat, range):
        concat = list(concat)
    if not isinstance(concat, (list, tuple)) or not concat:
        raise NaspError(f"{source}: {which}_concat must be a non-empty list of state indices")
    for c in concat:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < steps + 2:
            raise NaspError(f"{source}: {which}_concat: index {c!r} must be an integer in [0, {steps + 1}]")
    return tuple(out), tuple(int(c) for c in concat)


def _genotype_calls(text: str, source: str) -> dict[Optional[str], ast.Call]:
    try:
        tree = ast.parse(text.strip())
    except SyntaxError as exc:
        raise NaspError(f"{source}: line {exc.lineno}: not valid Genotype(...) text ({exc.msg})") from None
    found: dict[Optional[str], ast.Call] = {}
    for node in tree.body:
        value, name = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value, name = node.value, node.targets[0].id
        elif isinstance(node, ast.Expr):
            value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Genotype":
            found[name] = value
    return found


def _literal(node: ast.AST, source: str) -> Any:
    """A literal, or ``range(a, b)`` as a list."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        return list(range(*[_literal(a, source) for a in node.args]))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise NaspError(f"{source}: line {getattr(node, 'lineno', '?')}: only literal lists, tuples and range() are allowed") from None


def _call_fields(call: ast.Call, source: str) -> dict:
    names = ("normal", "normal_concat", "reduce", "reduce_concat")
    fields = {names[i]: _literal(a, source) for i, a in enumerate(call.args[: len(names)])}
    for kw in call.keywords:
        if kw.arg not in names:
            raise NaspError(f"{source}: Genotype has no field {kw.arg!r}")
        fields[kw.arg] = _literal(kw.value, source)
    missing = [n for n in names if n not in fields]
    if missing:
        raise NaspError(f"{source}: Genotype(...) lacks {', '.join(missing)}")
    return fields


# published cells ------------------------------------------------------------------------------
GENOTYPES: Registry[Genotype] = Registry("genotype")

#: DARTS (Liu et al., 2019), first order, as published in the DARTS repository.
DARTS_V1 = GENOTYPES.register("DARTS_V1")(
    Genotype.from_text(
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
        "DARTS_V1",
    )
)
#: DARTS second order, as published in the DARTS repository (the 2.76% CIFAR-10 cell).
DARTS_V2 = GENOTYPES.register("DARTS_V2")(
    Genotype.from_text(
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
        "DARTS_V2",
    )
)
#: The cell named ``NASP`` in the NASP authors' public ``genotypes.py`` (12-operation space;
#: their spellings ``conv 3x3`` etc. resolve through ``ops.ALIASES``). The 7-op cell of the paper
#: is not published in text form and is not included.
NASP = GENOTYPES.register("NASP")(
    Genotype.from_text(
        "Genotype(normal=[('conv_3x1_1x3', 0), ('conv 3x3', 1), ('dil_conv_3x3', 2), ('conv 3x3', 1), "
        "('dil_conv_3x3', 2), ('conv 3x3', 0), ('skip_connect', 0), ('dil_conv_3x3', 3)], normal_concat=range(2, 6), "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_5x5', 1), "
        "('skip_connect', 2), ('skip_connect', 3), ('skip_connect', 0), ('skip_connect', 1)], reduce_concat=range(2, 6))",
        "NASP",
    )
)
GENOTYPES.register("DARTS")(DARTS_V2)


def load_genotype(spec: str) -> Genotype:
    """A genotype from a published name, a JSON/text file, a run directory or inline text."""
    spec = str(spec).strip()
    if spec in GENOTYPES:
        return GENOTYPES.get(spec)
    if spec.startswith("Genotype("):
        return Genotype.from_text(spec, "--genotype")
    path, name = Path(spec), None
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if Path(head).is_file():
            path, name = Path(head), tail
    if path.is_dir():
        path = path / "arch.json"
    if not path.exists():
        if path.suffix or "/" in spec:
            raise NaspError(f"--genotype {spec}: file not found")
        raise NaspError(f"--genotype {spec!r}: neither a file nor a known genotype ({', '.join(GENOTYPES.names())})")
    try:
        text = read_small_file(path, "--genotype").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NaspError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NaspError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        return Genotype.from_json(obj.get("genotype", obj) if isinstance(obj, dict) else obj, str(path))
    return Genotype.from_text(text, str(path), name)


def save_genotype(genotype: Genotype, path: Path) -> None:
    """Write ``genotype`` as JSON (``.json``) or DARTS text (any other suffix)."""
    path = Path(path)
    from ..runs import write_bytes_atomic

    text = json.dumps(genotype.to_json(), indent=2) if path.suffix == ".json" else genotype.to_text()
    write_bytes_atomic(path, (text + "\n").encode())


def check_space(genotype: Genotype, normal_ops: Sequence[str], reduce_ops: Sequence[str], source: str = "genotype") -> None:
    """Raise ``NaspError`` if the genotype uses ops outside the given cell op lists."""
    for which, edges, allowed in (("normal", genotype.normal, normal_ops), ("reduce", genotype.reduce, reduce_ops)):
        bad = sorted({op for op, _ in edges if op not in allowed})
        if bad:
            raise NaspError(f"{source}: {which} cell uses {', '.join(bad)}, not in {', '.join(allowed)}")

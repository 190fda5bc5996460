"""RecBole atomic ``.inter`` files, written from plain Python (no RecBole, numpy or torch needed).

A pre-split data set for ``benchmarks/recbole_run.py`` is a folder holding ``NAME.train.inter``,
``NAME.valid.inter`` and ``NAME.test.inter``: tab-separated, a header line of typed field names
(``user_id:token``, ``item_id:token`` and, when given, ``rating:float``, ``timestamp:float``), then
one interaction a line. RecBole reads every row as one interaction: apply any rating threshold
before writing.

    from benchmarks.recbole_files import write_inter, write_split
    write_split(folder, "ml-100k", train=(users, items), valid=(u, i), test=(u, i))
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

PARTS = ("train", "valid", "test")


def split_paths(folder: str | os.PathLike, name: str) -> dict[str, str]:
    """The three file paths ``{part: FOLDER/NAME.part.inter}`` that recbole_run.py reads."""
    return {part: os.path.join(os.fspath(folder), f"{name}.{part}.inter") for part in PARTS}


def _token(value) -> str:
    text = str(value)
    if not text or any(c in text for c in "\t\r\n"):
        raise ValueError(f"an id must be a non-empty string without tabs or line breaks: {text!r}")
    return text


def _number(value) -> str:
    return repr(float(value))


def write_inter(
    path: str | os.PathLike,
    users: Sequence,
    items: Sequence,
    ratings: Optional[Sequence] = None,
    timestamps: Optional[Sequence] = None,
) -> int:
    """Write one atomic ``.inter`` file; returns the number of rows written.

    ``users`` and ``items`` are ids of any kind (written with ``str``; RecBole keeps them as
    tokens and remaps them itself); ``ratings`` and ``timestamps``, when given, are numbers of the
    same length. Ids of the three files of one split must be written the same way (``7`` and
    ``"7"`` agree, ``7`` and ``7.0`` do not).
    """
    columns: list[tuple[str, Iterable, object]] = [("user_id:token", users, _token), ("item_id:token", items, _token)]
    if ratings is not None:
        columns.append(("rating:float", ratings, _number))
    if timestamps is not None:
        columns.append(("timestamp:float", timestamps, _number))
    lengths = {len(values) for _, values, _ in columns}
    if len(lengths) != 1:
        raise ValueError(f"columns differ in length: {[(name, len(values)) for name, values, _ in columns]}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(name for name, _, _ in columns) + "\n")
        for row in zip(*(values for _, values, _ in columns)):
            f.write("\t".join(fmt(v) for (_, _, fmt), v in zip(columns, row)) + "\n")
    os.replace(tmp, path)
    return lengths.pop()


def write_split(folder: str | os.PathLike, name: str, **parts) -> dict[str, str]:
    """Write ``NAME.{train,valid,test}.inter`` into ``folder``.

    Each of ``train=``, ``valid=``, ``test=`` is a tuple ``(users, items[, ratings[, timestamps]])``
    passed to :func:`write_inter`. Returns :func:`split_paths`.
    """
    missing = [p for p in PARTS if p not in parts]
    extra = [p for p in parts if p not in PARTS]
    if missing or extra:
        raise ValueError(f"write_split needs exactly train=, valid=, test= (missing {missing}, unknown {extra})")
    paths = split_paths(folder, name)
    for part in PARTS:
        write_inter(paths[part], *parts[part])
    return paths


def read_inter(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """(header fields, rows as lists of strings) of one ``.inter`` file; for checks and tests."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return header, rows

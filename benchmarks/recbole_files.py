"""RecBole atomic ``.inter`` files, written from plain Python (no RecBole, numpy or torch needed).

A pre-split data set for ``benchmarks/recbole_run.py`` is a folder holding ``NAME.train.inter``,
``NAME.valid.inter`` and ``NAME.test.inter``: tab-separated, a header line of typed field names
(``user_id:token``, ``item_id:token`` and, when given, ``rating:float``, ``timestamp:float``), then
one interaction a line. RecBole reads every row as one interaction: apply any rating threshold
before writing.

    from benchmarks.recbole_files import recbole_python, run_recbole, write_split
    write_split(folder, "ml-100k", train=(users, items), valid=(u, i), test=(u, i))
    if recbole_python():            # None: no RecBole venv (benchmarks/recbole_setup.sh), skip
        result = run_recbole(folder, "ml-100k", "BPR", seed=0, out="bpr.json", threads=1)
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterable, Optional, Sequence

PARTS = ("train", "valid", "test")
HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE.parent / ".venv-recbole"


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


def recbole_python(python: str | os.PathLike | None = None) -> Optional[str]:
    """The RecBole venv's python, or None when there is none (then skip the RecBole rows).

    Looks at ``python``, else ``$RECBOLE_PYTHON``, else ``.venv-recbole/bin/python`` in the repo
    root (what ``benchmarks/recbole_setup.sh`` makes). Only checks that the file is there and
    executable, so it costs nothing; a broken venv shows up as a failed :func:`run_recbole`.
    """
    candidate = python or os.environ.get("RECBOLE_PYTHON") or DEFAULT_VENV / "bin" / "python"
    candidate = os.fspath(candidate)
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None


class RecBoleRunError(RuntimeError):
    """recbole_run.py exited non-zero; ``.stderr`` holds the end of its output."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


def run_recbole(
    split_dir: str | os.PathLike,
    name: str,
    model: str,
    *,
    seed: int = 0,
    out: str | os.PathLike,
    epochs: Optional[int] = None,
    topk: Sequence[int] = (10, 20),
    threads: Optional[int] = None,
    python: str | os.PathLike | None = None,
    quiet: bool = True,
    timeout: Optional[float] = None,
) -> dict:
    """Run ``benchmarks/recbole_run.py`` in the RecBole venv on ``split_dir/name.*.inter``.

    Returns the JSON it wrote to ``out`` (see recbole_run.py). Raises FileNotFoundError when
    there is no RecBole venv (check :func:`recbole_python` first to skip instead) and
    :class:`RecBoleRunError` when the run fails.
    """
    exe = recbole_python(python)
    if exe is None:
        raise FileNotFoundError("no RecBole venv: run benchmarks/recbole_setup.sh (or set RECBOLE_PYTHON)")
    cmd = [exe, os.fspath(HERE / "recbole_run.py"), "--split-dir", os.fspath(split_dir), "--dataset", name,
           "--model", model, "--seed", str(seed), "--out", os.fspath(out), "--topk", ",".join(map(str, topk))]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if threads:
        cmd += ["--threads", str(threads)]
    if quiet:
        cmd.append("--quiet")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout[-2000:] + "\n" + proc.stderr[-6000:]).strip()
        raise RecBoleRunError(f"recbole_run.py {model} on {split_dir}/{name} exited {proc.returncode}", tail)
    with open(out) as f:
        return json.load(f)

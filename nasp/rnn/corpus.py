"""Word-level corpora for language modelling (Penn Treebank and any folder of the same shape).

A corpus folder holds three splits, ``ptb.{train,valid,test}.txt`` or ``{train,valid,test}.txt``:
one sentence per line, tokens separated by white space. The vocabulary comes from the training
split (in order of first appearance, plus ``<eos>`` and ``<unk>``); tokens unseen in training
read as ``<unk>``; every non-blank line ends with ``<eos>``. The known name ``ptb`` resolves
under the data root (Mikolov's ``simple-examples.tgz``, files ``simple-examples/data/ptb.*.txt``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

from ..data import DATASETS, KnownDataset, fetch, register_dataset
from ..errors import NaspError

EOS, UNK = "<eos>", "<unk>"
SPLITS = ("train", "valid", "test")

PTB = register_dataset(KnownDataset(
    name="ptb",
    url="http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
    sha256=None,  # not pinned: no verified checksum was available when this was written
    folder="simple-examples/data",
    files=("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    description="Penn Treebank, Mikolov's preprocessing (10k words): language modelling",
))


class Vocabulary:
    """Word <-> index, built from the training split."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.words: list[str] = []
        self.index: dict[str, int] = {}
        for w in (EOS, UNK, *words):
            self.add(w)

    def add(self, word: str) -> int:
        if word not in self.index:
            self.index[word] = len(self.words)
            self.words.append(word)
        return self.index[word]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(t, unk) for t in tokens]


@dataclass
class Corpus:
    """Token ids of the three splits (1-D LongTensors) and the training vocabulary."""

    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor
    folder: Path

    def split(self, name: str) -> Tensor:
        return getattr(self, name)


def split_file(folder: Path, split: str) -> Path:
    """``ptb.<split>.txt`` or ``<split>.txt`` in ``folder``; a missing one raises NaspError."""
    for name in (f"ptb.{split}.txt", f"{split}.txt"):
        if (folder / name).is_file():
            return folder / name
    raise NaspError(f"{folder}: missing {split} split: expected ptb.{split}.txt or {split}.txt")


def read_tokens(path: Path) -> list[str]:
    """Tokens of a text file, ``<eos>`` after every non-blank line."""
    tokens: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                words = line.split()
                if words:
                    tokens.extend(words)
                    tokens.append(EOS)
    except UnicodeDecodeError as exc:
        raise NaspError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not tokens:
        raise NaspError(f"{path}: empty corpus split (no tokens)")
    return tokens


def read_corpus(folder: os.PathLike | str) -> Corpus:
    """Read a corpus folder (see module doc)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NaspError(f"{folder}: not a corpus folder (expected ptb.train.txt/ptb.valid.txt/ptb.test.txt)")
    paths = {s: split_file(folder, s) for s in SPLITS}  # all three named before reading any
    train_tokens = read_tokens(paths["train"])
    vocab = Vocabulary(train_tokens)
    ids = {"train": torch.tensor(vocab.encode(train_tokens), dtype=torch.long)}
    for s in ("valid", "test"):
        ids[s] = torch.tensor(vocab.encode(read_tokens(paths[s])), dtype=torch.long)
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], folder)


def resolve_corpus(data: str, data_dir: Optional[os.PathLike | str] = None) -> Path:
    """``--data``: a corpus folder, or a known name (``ptb``) under the data root."""
    path = Path(data).expanduser()
    if path.exists():
        if path.is_file():
            raise NaspError(f"--data {data}: is a file; pass the folder that holds the train/valid/test split files")
        sub = path / "data"  # the unpacked simple-examples folder itself
        if not any((path / f"{p}{s}.txt").exists() for s in SPLITS for p in ("ptb.", "")) and sub.is_dir():
            return sub
        return path
    if data in DATASETS:
        return fetch(data, data_dir)
    raise NaspError(f"--data {data}: no such folder, and not a known data set ({', '.join(DATASETS.names())})")


def load_corpus(data: str, data_dir: Optional[os.PathLike | str] = None) -> Corpus:
    return read_corpus(resolve_corpus(data, data_dir))


# batching -----------------------------------------------------------------------------------
def batchify(ids: Tensor, batch_size: int, device: torch.device | str = "cpu", split: str = "data") -> Tensor:
    """Cut the token stream into ``batch_size`` parallel streams: a (steps x batch) tensor
    (the tail that does not fill a column is dropped)."""
    if batch_size < 1:
        raise NaspError(f"--batch-size must be positive, got {batch_size}")
    steps = ids.numel() // batch_size
    if steps < 2:
        raise NaspError(
            f"{split} split has {ids.numel()} tokens: too few for batch size {batch_size} (need at least {2 * batch_size})"
        )
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous().to(device)


@dataclass
class Segment:
    """One BPTT segment of a stream: ``inputs``/``targets`` are (seq_len x batch).

    ``stream`` and ``index`` (position in the pass) let a loss carry hidden states from one
    segment to the next.
    """

    stream: str
    index: int
    inputs: Tensor
    targets: Tensor


def segments(data: Tensor, bptt: int, stream: str, lengths: Optional[Sequence[int]] = None) -> list[Segment]:
    """Consecutive segments of ``data`` (steps x batch): length ``bptt`` each, or the given
    ``lengths`` in turn (variable BPTT); the last segment is whatever remains."""
    if bptt < 1:
        raise NaspError(f"--bptt must be positive, got {bptt}")
    out, i, n = [], 0, data.size(0) - 1
    while i < n:
        length = lengths[len(out)] if lengths is not None and len(out) < len(lengths) else bptt
        length = min(max(1, int(length)), n - i)
        out.append(Segment(stream, len(out), data[i : i + length], data[i + 1 : i + 1 + length]))
        i += length
    return out

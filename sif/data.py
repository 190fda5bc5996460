"""Ratings data for SIF: readers, known MovieLens names, id mapping, splits, item titles.

Readers: MovieLens ``u.data`` (tab), ``ratings.dat`` (``::``), ``ratings.csv`` (header),
RecBole atomic ``.inter`` files, and a ``.zip`` holding one of them. Raw ids stay strings (a
user types them); they map to dense indices in order of first appearance.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Optional, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nasp.data import DATASETS, KnownDataset, fetch, register_dataset
from nasp.errors import NaspError

log = logging.getLogger("nasp.sif")

_GL = "https://files.grouplens.org/datasets/movielens/"
# GroupLens publishes MD5 sums only; these are theirs.
for _name, _folder, _file, _md5, _desc in [
    ("ml-100k", "ml-100k", "u.data", "0e33842e24a9c977be4e0107933c0723", "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies"),
    ("ml-1m", "ml-1m", "ratings.dat", "c4d9eecfca2ab87c1945afe126590906", "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies"),
    ("ml-10m", "ml-10M100K", "ratings.dat", "ce571fd55effeba0271552578f2648bd", "MovieLens 10M: 10,000,054 ratings (half stars)"),
    ("ml-20m", "ml-20m", "ratings.csv", "cd245b17a1ae2cc31bb14903e1204af3", "MovieLens 20M: 20,000,263 ratings (half stars)"),
    ("ml-25m", "ml-25m", "ratings.csv", "6b51fb2759a8657d3bfcbfc42b592ada", "MovieLens 25M: 25,000,095 ratings (half stars)"),
    ("ml-latest-small", "ml-latest-small", "ratings.csv", None, "MovieLens latest small: ~100,000 ratings (changes over time)"),
]:
    if _name not in DATASETS:
        register_dataset(KnownDataset(_name, f"{_GL}{_name}.zip", None, _folder, (_file,), _desc, md5=_md5))

RATINGS_NAMES = ("u.data", "ratings.dat", "ratings.csv")
ITEM_NAMES = ("u.item", "movies.dat", "movies.csv")


@dataclass
class RatingTable:
    """Raw ratings as read: string ids, float ratings, and the source line of every row."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.ratings)


# reading ------------------------------------------------------------------------------------
def resolve_ratings_path(data: str, data_dir: Optional[Union[str, Path]] = None) -> Path:
    """A path as given, or a known name (``ml-100k``...) resolved under the data root."""
    path = Path(data).expanduser()
    if path.exists():
        if path.is_dir():
            found = _pick_member([p.name for p in sorted(path.iterdir()) if p.is_file()], str(path))
            if found is not None:
                return path / found
            raise NaspError(f"{path}: no ratings file in this folder (expected one of {', '.join(RATINGS_NAMES)} or *.inter)")
        return path
    if data in DATASETS:
        ds = DATASETS.get(data)
        return fetch(data, data_dir) / ds.files[0]
    if any(sep in data for sep in "/\\") or Path(data).suffix:
        raise NaspError(f"{data}: no such file")
    known = ", ".join(n for n in DATASETS.names() if n.startswith("ml-"))
    raise NaspError(f"unknown data set {data!r} and no such file; known names: {known}")


def read_ratings(path: Union[str, Path]) -> RatingTable:
    """Read any supported ratings file; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise NaspError(f"{path}: no such file")
    if path.is_dir():
        return read_ratings(resolve_ratings_path(str(path)))
    if path.suffix.lower() == ".zip":
        return _read_zip(path)
    with open(path, "rb") as fh:
        return _read_stream(fh, path.name, str(path))


def _read_zip(path: Path) -> RatingTable:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            member = _pick_member(names, str(path))
            if member is None:
                raise NaspError(f"{path}: the archive holds no ratings file ({', '.join(RATINGS_NAMES)} or *.inter)")
            with zf.open(member) as fh:
                return _read_stream(io.BytesIO(fh.read()), Path(member).name, f"{path}!{member}")
    except zipfile.BadZipFile:
        raise NaspError(f"{path}: unreadable archive (not a valid zip file)") from None


def _pick_member(names: list[str], where: str) -> Optional[str]:
    """The one ratings file among ``names`` (None when there is none); several is an error,
    since picking one would silently drop the others."""
    found = [n for n in names if Path(n).name in RATINGS_NAMES or n.endswith(".inter")]
    if len(found) > 1:
        raise NaspError(f"{where}: holds {len(found)} ratings files ({', '.join(found)}); "
                        "pass the one you mean with --data (extract it, or point at its folder)")
    return found[0] if found else None


#: a ratings line holds a few short fields: longer lines (which bounds every field's length) and
#: first lines with more fields are refused before the parser allocates for them
MAX_LINE_BYTES = 1 << 16
MAX_FIELDS = 1000


def _check_line_lengths(raw: bytes, source: str) -> None:
    """Refuse a line over ``MAX_LINE_BYTES`` by its number (vectorised: a few ms per 10 MB)."""
    if len(raw) <= MAX_LINE_BYTES:
        return
    newlines = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
    lengths = np.diff(np.concatenate([[-1], newlines, [len(raw)]])) - 1  # bytes of each line, newline excluded
    long = np.flatnonzero(lengths > MAX_LINE_BYTES)
    if long.size:
        line = int(long[0])
        raise NaspError(f"{source}: line {line + 1}: {int(lengths[line]):,} bytes long, more than the "
                        f"{MAX_LINE_BYTES:,} a ratings line may have (a field too long: is this a ratings file?)")


def _sniff(first_line: str, second_line: Optional[str], name: str) -> tuple[str, bool]:
    """(separator, has_header) from the file name and its first two lines. The first line is a
    header when its rating field is not a number, or when one of its first three fields (user,
    item, rating) is a word where the second line has a number (``user,item,5,ts`` above
    ``1,2,3,881250949``); other columns (timestamps, text) and empty fields do not count."""
    lower = name.lower()
    if lower.endswith(".inter"):
        return "\t", True
    if "::" in first_line or lower.endswith(".dat"):
        return "::", False
    sep = "\t" if "\t" in first_line else "," if "," in first_line else None
    if sep is None:
        sep = r"\s+" if len(first_line.split()) >= 3 else "\t"
    fields = _fields(first_line, sep)
    header = len(fields) >= 3 and not _is_number(fields[2])
    if not header and second_line is not None:
        below = _fields(second_line, sep)
        header = any(a and not _is_number(a) and _is_number(b) for a, b in zip(fields[:3], below[:3]))
    return sep, header


def _fields(line: str, sep: str) -> list[str]:
    return re.split(sep, line.strip()) if sep == r"\s+" else line.strip().split(sep)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _first_lines(text: str, count: int = 2) -> list[tuple[int, str]]:
    """The first ``count`` non-blank lines with their 1-based numbers (reads no further)."""
    out, start, number = [], 0, 0
    while start < len(text) and len(out) < count:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        number += 1
        line = text[start:end].rstrip("\r")
        if line.strip():
            out.append((number, line))
        start = end + 1
    return out


def _read_stream(fh: IO[bytes], name: str, source: str) -> RatingTable:
    raw = fh.read()
    _check_line_lengths(raw, source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    first_lines = _first_lines(text)
    if not first_lines:
        raise NaspError(f"{source}: empty file, no ratings")
    (first_number, first), second = first_lines[0], (first_lines[1][1] if len(first_lines) > 1 else None)
    sep, header = _sniff(first, second, name)
    if sep == "::":
        text = text.replace("::", "\t")
        first = first.replace("::", "\t")
        sep = "\t"
    if len(_fields(first, sep)) > MAX_FIELDS:
        raise NaspError(f"{source}: line {first_number}: {len(_fields(first, sep)):,} fields, more than the {MAX_FIELDS:,} "
                        "a ratings line may have (wrong separator, or not a ratings file?)")
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
            skip_blank_lines=False, engine="c" if sep != r"\s+" else "python", on_bad_lines="error",
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise NaspError(f"{source}: line {m.group(2)}: malformed line, expected {m.group(1)} fields, saw {m.group(3)}") from None
        raise NaspError(f"{source}: malformed file ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        raise NaspError(f"{source}: empty file, no ratings") from None
    first_data_row = 0
    cols = (0, 1, 2)
    if header:
        first_data_row = int(np.argmax((df != "").any(axis=1).to_numpy()))  # the header: the first non-blank row
        head = [str(h).strip().lower() for h in df.iloc[first_data_row]]
        cols = _header_columns(head, f"{source}: line {first_data_row + 1}")
        first_data_row += 1
    if df.shape[1] < 3:
        raise NaspError(f"{source}: {df.shape[1]} column(s); need at least 3 (user, item, rating)")
    body = df.iloc[first_data_row:]
    blank = (body == "").all(axis=1).to_numpy()
    body = body[~blank]
    line_numbers = np.flatnonzero(~blank) + first_data_row + 1
    if len(body) == 0:
        raise NaspError(f"{source}: no ratings (only a header or blank lines)")
    # object arrays: a fixed-width string array would allocate (longest id) x (rows)
    users = body.iloc[:, cols[0]].str.strip().to_numpy(dtype=object)
    items = body.iloc[:, cols[1]].str.strip().to_numpy(dtype=object)
    rating_text = body.iloc[:, cols[2]].str.strip()
    ratings = pd.to_numeric(rating_text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(ratings)
    for what, mask in (("empty user id", users == ""), ("empty item id", items == "")):
        if mask.any():
            raise NaspError(f"{source}: line {line_numbers[np.argmax(mask)]}: {what}")
    if bad.any():
        i = int(np.argmax(bad))
        value = rating_text.iloc[i]
        why = "empty rating" if value == "" else f"rating {value!r} is not a finite number"
        raise NaspError(f"{source}: line {line_numbers[i]}: {why}")
    _warn_out_of_scale(ratings, line_numbers, source)
    return _drop_duplicates(RatingTable(users, items, ratings, source), line_numbers)


def _warn_out_of_scale(ratings: np.ndarray, line_numbers: np.ndarray, source: str) -> None:
    """Warn once when ratings lie far outside the scale of the rest of the file: below
    lo - (hi - lo) / 2 or above hi + (hi - lo) / 2, lo and hi the 0.1% and 99.9% quantiles
    (on a 1-5 scale: below -1 or above 7). They are kept."""
    if len(ratings) < 2:
        return
    lo, hi = np.quantile(ratings, 0.001, method="higher"), np.quantile(ratings, 0.999, method="lower")
    margin = (hi - lo) / 2
    outside = (ratings < lo - margin) | (ratings > hi + margin)
    if margin > 0 and outside.any():
        first = int(np.argmax(outside))
        log.warning("%s: %d rating(s) far outside the scale of the rest (%g to %g), first at line %d (%g); kept",
                    source, int(outside.sum()), lo, hi, int(line_numbers[first]), ratings[first])


def _drop_duplicates(table: RatingTable, line_numbers: np.ndarray) -> RatingTable:
    """Keep the last rating of every (user, item) pair that occurs more than once, and warn once
    with the count (RecBole's ``rm_dup_inter: last``): a pair in two splits would leak."""
    user_codes = pd.factorize(table.users)[0].astype(np.int64)
    item_codes, item_uniques = pd.factorize(table.items)
    dup = pd.Series(user_codes * len(item_uniques) + item_codes).duplicated(keep="last").to_numpy()
    if not dup.any():
        return table
    log.warning("%s: %d duplicate (user, item) rating(s), first at line %d; kept the last rating of each pair",
                table.source, int(dup.sum()), int(line_numbers[np.argmax(dup)]))
    keep = ~dup
    return RatingTable(table.users[keep], table.items[keep], table.ratings[keep], table.source)


def _header_columns(head: list[str], source: str) -> tuple[int, int, int]:
    def find(*prefixes: str) -> Optional[int]:
        for i, h in enumerate(head):
            base = h.split(":")[0]
            if base in prefixes:
                return i
        return None

    user = find("user_id", "userid", "user", "uid")
    item = find("item_id", "itemid", "movieid", "movie_id", "item", "iid")
    rating = find("rating", "ratings", "score", "stars")
    if None in (user, item, rating):
        missing = ", ".join(n for n, c in (("user", user), ("item", item), ("rating", rating)) if c is None)
        raise NaspError(f"{source}: header {head} lacks a user, item or rating column (no {missing}): "
                        "name the columns (user, item, rating) or remove the header line")
    return user, item, rating


# ids and splits -----------------------------------------------------------------------------
@dataclass
class Interactions:
    """Dense-index ratings ready for training; ``-1`` marks ids unknown to the id map."""

    users: Tensor
    items: Tensor
    ratings: Tensor

    def __len__(self) -> int:
        return int(self.ratings.numel())

    def subset(self, index: np.ndarray) -> "Interactions":
        idx = torch.as_tensor(index, dtype=torch.long)
        return Interactions(self.users[idx], self.items[idx], self.ratings[idx])

    def to(self, device: torch.device) -> "Interactions":
        return Interactions(self.users.to(device), self.items.to(device), self.ratings.to(device))


@dataclass
class IdMap:
    """Raw id <-> dense index, for users and items."""

    user_ids: list[str]
    item_ids: list[str]

    @classmethod
    def build(cls, table: RatingTable) -> "IdMap":
        return cls([str(u) for u in pd.unique(table.users)], [str(i) for i in pd.unique(table.items)])

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def encode(self, table: RatingTable) -> Interactions:
        users = pd.Index(self.user_ids).get_indexer(table.users)
        items = pd.Index(self.item_ids).get_indexer(table.items)
        return Interactions(
            torch.as_tensor(users, dtype=torch.long),
            torch.as_tensor(items, dtype=torch.long),
            torch.tensor(np.array(table.ratings, dtype=np.float32)),
        )


@dataclass
class Splits:
    train: Interactions
    valid: Interactions
    test: Interactions
    ids: IdMap
    rating_range: tuple[float, float]
    #: distinct raw ids of ``--test-data`` absent from ``--data`` (encoded as -1), per kind
    test_unknown_ids: dict = field(default_factory=lambda: {"users": 0, "items": 0})

    def with_valid_in_train(self) -> "Splits":
        """The same splits with the validation ratings moved into training (for a refit)."""
        both = Interactions(*(torch.cat([getattr(self.train, k), getattr(self.valid, k)]) for k in ("users", "items", "ratings")))
        empty = Interactions(self.valid.users[:0], self.valid.items[:0], self.valid.ratings[:0])
        return replace(self, train=both, valid=empty)


def split_ratings(table: RatingTable, test_ratio: float, valid_ratio: float, seed: int,
                  test_table: Optional[RatingTable] = None) -> Splits:
    """Random train/valid/test split with ``seed`` (``valid_ratio`` and ``test_ratio`` are
    fractions of all ratings). With ``test_table``, ``table`` is split into train/valid only."""
    for name, r in (("--test-ratio", test_ratio), ("--valid-ratio", valid_ratio)):
        if not 0.0 <= r < 1.0:
            raise NaspError(f"{name} must be in [0, 1), got {r}")
    if test_table is not None:
        test_ratio = 0.0
    if test_ratio + valid_ratio >= 1.0:
        raise NaspError(f"--test-ratio + --valid-ratio must be < 1, got {test_ratio + valid_ratio}")
    ids = IdMap.build(table)
    data = ids.encode(table)
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = int(round(test_ratio * len(data)))
    n_valid = int(round(valid_ratio * len(data)))
    if valid_ratio > 0 and n_valid == 0 or len(data) - n_test - n_valid < 1:
        raise NaspError(f"{table.source}: too few ratings ({len(data)}) for this split")
    test = data.subset(order[:n_test]) if test_table is None else ids.encode(test_table)
    valid = data.subset(order[n_test : n_test + n_valid])
    train = data.subset(order[n_test + n_valid :])
    low, high = float(train.ratings.min()), float(train.ratings.max())
    unknown = {"users": 0, "items": 0}
    if test_table is not None:
        unknown = {"users": len(set(test_table.users) - set(ids.user_ids)),
                   "items": len(set(test_table.items) - set(ids.item_ids))}
    return Splits(train, valid, test, ids, (low, high), unknown)


# item metadata ----------------------------------------------------------------------------------
def read_titles(ratings_path: Union[str, Path]) -> dict[str, str]:
    """Item titles from ``u.item``/``movies.dat``/``movies.csv`` beside the ratings (or inside
    the same zip); empty when there is none."""
    path = Path(ratings_path)
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                for n in zf.namelist():
                    if Path(n).name in ITEM_NAMES:
                        return _parse_titles(zf.read(n), Path(n).name)
            return {}
        for name in ITEM_NAMES:
            candidate = path.parent / name
            if candidate.exists():
                return _parse_titles(candidate.read_bytes(), name)
    except (OSError, zipfile.BadZipFile):
        return {}
    return {}


def _parse_titles(raw: bytes, name: str) -> dict[str, str]:
    text = raw.decode("latin-1") if name != "movies.csv" else raw.decode("utf-8", errors="replace")
    if name == "movies.csv":
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return dict(zip(df.iloc[:, 0], df.iloc[:, 1]))
    sep = "|" if name == "u.item" else "::"
    titles = {}
    for line in text.splitlines():
        parts = line.split(sep)
        if len(parts) >= 2:
            titles[parts[0].strip()] = parts[1].strip()
    return titles

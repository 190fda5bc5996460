"""Ratings data for SIF: readers, known MovieLens names, id mapping, splits, item titles.

Readers: MovieLens ``u.data`` (tab), ``ratings.dat`` (``::``), ``ratings.csv`` (header),
RecBole atomic ``.inter`` files, and a ``.zip`` holding one of them; any other delimited file
with ``LineFormat`` (``--sep``, ``--columns``). Raw ids stay strings (a user types them); they
map to dense indices in order of first appearance.
"""
from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nasp.data import DATASETS, KnownDataset, check_zip_member, fetch, regular_file, register_dataset
from nasp.errors import NaspError
from nasp.registry import Registry

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
#: the ratings files of MovieLens releases, which come with one of ``ITEM_NAMES`` beside them
MOVIELENS_RATINGS = ("u.data", "ratings.dat", "ratings.csv")


@dataclass(frozen=True)
class IdCodes:
    """A table's ids as integer codes into their distinct values: ``users`` equals
    ``user_labels[user_codes]`` (likewise items). The readers make them while they look for
    duplicates, so that mapping and splitting millions of rows hashes each distinct id once
    instead of every row's string."""

    user_codes: np.ndarray
    user_labels: np.ndarray
    item_codes: np.ndarray
    item_labels: np.ndarray

    @classmethod
    def of(cls, users: np.ndarray, items: np.ndarray) -> "IdCodes":
        """The codes of string id arrays (``pd.factorize``: labels in order of first appearance)."""
        user_codes, user_labels = pd.factorize(users)
        item_codes, item_labels = pd.factorize(items)
        return cls(user_codes, np.asarray(user_labels, dtype=object), item_codes, np.asarray(item_labels, dtype=object))

    def subset(self, keep: np.ndarray) -> "IdCodes":
        """The codes of the rows ``keep`` selects (the labels stay: some may no longer occur)."""
        return replace(self, user_codes=self.user_codes[keep], item_codes=self.item_codes[keep])


def _distinct(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The labels that occur in ``codes``, in order of first appearance (as ``pd.unique`` of the strings)."""
    return labels[pd.unique(codes)]


@dataclass
class RatingTable:
    """Raw interactions as read: string ids, float ratings (1.0 for every row of a file without a
    rating column: ``has_ratings`` False) and timestamps when the file has them. ``codes``: the
    ids factorised (the readers set them; a table built by hand may leave them None)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    source: str
    timestamps: Optional[np.ndarray] = None
    has_ratings: bool = True
    codes: Optional[IdCodes] = field(default=None, repr=False, compare=False)
    #: why a headerless file's fourth column is no timestamp column (its first non-number), for
    #: the error of ``--split temporal``
    timestamp_issue: Optional[str] = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, keep: np.ndarray) -> "RatingTable":
        """The rows where the boolean mask (or index array) ``keep`` selects."""
        ts = None if self.timestamps is None else self.timestamps[keep]
        codes = None if self.codes is None else self.codes.subset(keep)
        return replace(self, users=self.users[keep], items=self.items[keep], ratings=self.ratings[keep], timestamps=ts,
                       codes=codes)

    def distinct_users(self) -> np.ndarray:
        """The user ids, each once, in order of first appearance."""
        return pd.unique(self.users) if self.codes is None else _distinct(self.codes.user_codes, self.codes.user_labels)

    def distinct_items(self) -> np.ndarray:
        """The item ids, each once, in order of first appearance."""
        return pd.unique(self.items) if self.codes is None else _distinct(self.codes.item_codes, self.codes.item_labels)

    def need_ratings(self) -> "RatingTable":
        """``self``, or a clear error when the file has no rating column (the rating task)."""
        if not self.has_ratings:
            raise NaspError(f"{self.source}: no rating column; the rating task needs one (use --task ranking for "
                            "interaction logs without ratings)")
        return self

    def at_least(self, min_rating: Optional[float]) -> "RatingTable":
        """The rows rated ``min_rating`` or more (RecBole's ``threshold``); all rows when None."""
        if min_rating is None:
            return self
        self.need_ratings()
        kept = self.subset(self.ratings >= min_rating)
        if len(kept) == 0:
            raise NaspError(f"{self.source}: no interaction left after --min-rating {min_rating:g} "
                            f"(ratings range from {self.ratings.min():g} to {self.ratings.max():g})")
        return kept


# reading ------------------------------------------------------------------------------------
#: ``--columns`` names: the role of each of a file's columns, in order; ``SKIP_COLUMN`` ignores one
COLUMN_ROLES = ("user", "item", "rating", "timestamp")
SKIP_COLUMN = "-"
#: ``--sep`` names for separators that are awkward to type
SEP_NAMES = {"tab": "\t", "\\t": "\t"}
#: what the reader tries when ``--sep`` is not given (for the error of a one-column file)
SNIFFED_SEPARATORS = "'::', tab, ',' and whitespace"


@dataclass(frozen=True)
class LineFormat:
    """How to read a delimited ratings file, as Surprise's ``Reader(line_format, sep)``: the
    separator of its fields (None: sniffed) and the role of each column in order (None: user,
    item[, rating][, timestamp], or the names of its header). A header line is still
    recognised and skipped."""

    sep: Optional[str] = None
    columns: Optional[tuple[str, ...]] = None

    @classmethod
    def of(cls, sep: Optional[str] = None, columns: Optional[Union[str, Sequence[str]]] = None) -> "LineFormat":
        """The format of ``--sep`` and ``--columns`` (``"user,item,rating"`` or a list), checked."""
        return cls(_check_sep(sep), _check_columns(columns))

    def positions(self) -> Optional[tuple[int, int, Optional[int], Optional[int]]]:
        """(user, item, rating, timestamp) column numbers that ``columns`` gives (None without it)."""
        if self.columns is None:
            return None
        where = {role: i for i, role in enumerate(self.columns) if role != SKIP_COLUMN}
        return where["user"], where["item"], where.get("rating"), where.get("timestamp")


def _check_sep(sep: Optional[str]) -> Optional[str]:
    if sep is None:
        return None
    if not isinstance(sep, str) or sep == "":
        raise NaspError(f"--sep {sep!r}: give the separator of the fields, e.g. --sep ';' or --sep tab")
    sep = SEP_NAMES.get(sep.lower(), sep)
    if any(c in sep for c in '\r\n"'):
        raise NaspError(f"--sep {sep!r}: a line break or a quote cannot separate fields")
    return sep


def _check_columns(columns: Optional[Union[str, Sequence[str]]]) -> Optional[tuple[str, ...]]:
    if columns is None:
        return None
    names = columns.split(",") if isinstance(columns, str) else [str(c) for c in columns]
    names = [n.strip().lower() for n in names]
    given = ",".join(names)
    unknown = [n for n in names if n not in COLUMN_ROLES and n != SKIP_COLUMN]
    if unknown:
        raise NaspError(f"--columns {given}: unknown name(s) {', '.join(repr(n) for n in unknown)}; "
                        f"use {', '.join(COLUMN_ROLES)} (and {SKIP_COLUMN} for a column to skip), in the file's order")
    twice = sorted({n for n in names if n != SKIP_COLUMN and names.count(n) > 1})
    if twice:
        raise NaspError(f"--columns {given}: names {', '.join(twice)} twice; name each column once")
    missing = [n for n in ("user", "item") if n not in names]
    if missing:
        raise NaspError(f"--columns {given}: no {' and no '.join(missing)} column; user and item are needed")
    return tuple(names)


#: DataFrame column names understood by ``table_from_frame``, per role (first found wins)
FRAME_COLUMNS = {
    "user": ("user", "user_id", "userId", "userid", "uid"),
    "item": ("item", "item_id", "itemId", "movieId", "itemid", "iid"),
    "rating": ("rating", "ratings", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}


def table_from_frame(frame: pd.DataFrame, source: str = "DataFrame") -> RatingTable:
    """A ``RatingTable`` from a DataFrame with user and item columns (and optionally rating and
    timestamp), named as Surprise, LensKit or RecBole name them; duplicates as in files."""
    twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if twice:
        raise NaspError(f"{source}: column name(s) {', '.join(twice)} given twice; name each column once")
    cols = {}
    for role, names in FRAME_COLUMNS.items():
        cols[role] = next((c for c in names if c in frame.columns), None)
    if cols["user"] is None or cols["item"] is None:
        raise NaspError(f"{source}: needs a user and an item column (e.g. 'user', 'item'); it has {list(frame.columns)}")
    if len(frame) == 0:
        raise NaspError(f"{source}: no rows")
    line_numbers = np.arange(1, len(frame) + 1)

    def ids(role: str) -> np.ndarray:
        column = frame[cols[role]]
        missing = column.isna().to_numpy()
        if missing.any():
            raise NaspError(f"{source}: row {int(np.argmax(missing))}: the {role} id is missing ({column.iloc[int(np.argmax(missing))]!r})")
        if pd.api.types.is_float_dtype(column) and (column % 1 == 0).all():  # 196.0 is the id 196, as in a file
            column = column.astype(np.int64)
        return column.astype(str).to_numpy(dtype=object)

    def numbers(role: str) -> Optional[np.ndarray]:
        if cols[role] is None:
            return None
        column = frame[cols[role]]
        kinds = pd.api.types
        if any(check(column) for check in (kinds.is_complex_dtype, kinds.is_bool_dtype, kinds.is_datetime64_any_dtype,
                                           kinds.is_timedelta64_dtype)):
            raise NaspError(f"{source}: the {role} column holds {column.dtype} values; give real numbers")
        values = pd.to_numeric(column, errors="coerce")
        if pd.api.types.is_complex_dtype(values) or values.dtype == object:  # mixed objects: each on its own
            values = column.map(_real_or_nan)
        values = values.to_numpy(dtype=np.float64)
        bad = _unusable(values, role)
        if bad.any():
            row = int(np.argmax(bad))
            raise NaspError(f"{source}: row {row}: {_why(str(column.iloc[row]), role)}")
        return values

    ratings = numbers("rating")
    table = RatingTable(ids("user"), ids("item"), ratings if ratings is not None else np.ones(len(frame)), source,
                        numbers("timestamp"), ratings is not None)
    return _drop_duplicates(table, line_numbers)


def _real_or_nan(value: object) -> float:
    """A real number (or numeric text) as a float; anything else (complex, lists, dates) NaN."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")


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


def read_ratings(path: Union[str, Path], numeric_fast_path: bool = True, fmt: Optional[LineFormat] = None) -> RatingTable:
    """Read any supported ratings file (``fmt``: its separator and columns when not sniffed);
    errors name the file and line. A device, FIFO or socket is refused before it is opened.
    ``numeric_fast_path`` (default) reads a file whose columns are all plain numbers with
    pandas' C parser and numeric dtypes (``_read_numeric``); the same table as the general
    path, which every other file (string ids, bad lines) takes."""
    path = Path(path)
    fmt = fmt or LineFormat()
    if not path.exists():
        raise NaspError(f"{path}: no such file")
    if path.is_dir():
        return read_ratings(resolve_ratings_path(str(path)), numeric_fast_path, fmt)
    regular_file(path, "ratings file")
    if path.suffix.lower() == ".zip":
        return _read_zip(path, numeric_fast_path, fmt)
    with open(path, "rb") as fh:
        return _read_stream(fh, path.name, str(path), numeric_fast_path, fmt)


def _read_zip(path: Path, numeric_fast_path: bool = True, fmt: Optional[LineFormat] = None) -> RatingTable:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            member = _pick_member(names, str(path))
            if member is None:
                raise NaspError(f"{path}: the archive holds no ratings file ({', '.join(RATINGS_NAMES)} or *.inter)")
            check_zip_member(zf.getinfo(member), str(path))
            with zf.open(member) as fh:
                return _read_stream(fh, Path(member).name, f"{path}!{member}", numeric_fast_path, fmt)
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


#: separators the numeric fast path reads (pandas' C parser; others take the general path)
FAST_SEPARATORS = ("\t", ",", ";", "|")
#: ratings train as float32: a larger finite float64 (1e308) would become inf
MAX_ABS_RATING = float(np.finfo(np.float32).max)

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


def _separator(first_line: str, name: str, fmt: LineFormat) -> str:
    """The separator ``--sep`` gives, else sniffed from the file name and its first line
    (tried in the order ``SNIFFED_SEPARATORS`` says)."""
    if fmt.sep is not None:
        return fmt.sep
    lower = name.lower()
    if lower.endswith(".inter"):
        return "\t"
    if "::" in first_line or lower.endswith(".dat"):
        return "::"
    if "\t" in first_line:
        return "\t"
    if "," in first_line:
        return ","
    return r"\s+" if len(first_line.split()) >= 3 else "\t"


def _is_header(first: list[str], second: Optional[list[str]], positions: tuple[int, int, Optional[int], Optional[int]]) -> bool:
    """Whether the first line (split into ``first``) is a header: its rating field is not a
    number, or one of its user, item and rating fields is a word where the second line has a
    number (``user,item,5,ts`` above ``1,2,3,881250949``); other columns (timestamps, text) and
    empty fields do not count."""
    rating = positions[2]
    if rating is not None and rating < len(first) and not _is_number(first[rating]):
        return True
    if second is None:
        return False
    return any(c < min(len(first), len(second)) and first[c] and not _is_number(first[c]) and _is_number(second[c])
               for c in positions[:3] if c is not None)


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


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


#: bytes of the file's start decoded to sniff its separator and header (the whole file is only
#: decoded when the numeric fast path does not apply); enough for two lines of MAX_LINE_BYTES
SNIFF_BYTES = 2 * MAX_LINE_BYTES + 16


def _read_stream(fh: IO[bytes], name: str, source: str, numeric_fast_path: bool = True,
                 fmt: Optional[LineFormat] = None) -> RatingTable:
    fmt = fmt or LineFormat()
    raw = fh.read()
    if raw.startswith(codecs.BOM_UTF8):  # a byte-order mark is no part of the first field
        raw = raw[len(codecs.BOM_UTF8):]
    _check_line_lengths(raw, source)
    # the head only (a split utf-8 character at its end is harmless: it lies past two lines)
    head = raw[:SNIFF_BYTES].decode("utf-8", errors="replace") if len(raw) > SNIFF_BYTES else _decode(raw)
    first_lines = _first_lines(head)
    if len(first_lines) < 2 and len(raw) > SNIFF_BYTES:  # blank lines filled the head: look further
        first_lines = _first_lines(_decode(raw))
    if not first_lines:
        raise NaspError(f"{source}: empty file, no ratings")
    (first_number, first), second = first_lines[0], (first_lines[1][1] if len(first_lines) > 1 else None)
    sep = _separator(first, name, fmt)
    joined = None  # a separator of several characters, read as a tab
    if len(sep) > 1 and sep != r"\s+":
        joined, sep = sep, "\t"
        raw = raw.replace(joined.encode(), b"\t")
        first, second = first.replace(joined, "\t"), None if second is None else second.replace(joined, "\t")
    if len(_fields(first, sep)) > MAX_FIELDS:
        raise NaspError(f"{source}: line {first_number}: {len(_fields(first, sep)):,} fields, more than the {MAX_FIELDS:,} "
                        "a ratings line may have (wrong separator, or not a ratings file?)")
    if name.lower().endswith(".inter"):
        header = True  # RecBole's atomic files always start with a typed header
    elif joined == "::" and fmt.sep is None:
        header = False  # MovieLens' ratings.dat has none
    else:
        header = _is_header(_fields(first, sep), None if second is None else _fields(second, sep), fmt.positions() or (0, 1, 2, 3))
    if numeric_fast_path:
        table = _read_numeric(raw, sep, header, first_number, first, source, fmt)
        if table is not None:
            return table
    text = _decode(raw)
    del raw
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
    if df.shape[1] < 2:
        tried = f"split at {fmt.sep!r} (--sep)" if fmt.sep is not None else f"tried {SNIFFED_SEPARATORS}: name it with --sep"
        raise NaspError(f"{source}: {df.shape[1]} column; need at least 2 (user, item), usually 3 or 4 "
                        f"(user, item, rating, timestamp); separator: {tried}")
    first_data_row = 0
    cols = fmt.positions() or (0, 1, 2 if df.shape[1] > 2 else None, 3 if df.shape[1] > 3 else None)
    if header:
        first_data_row = int(np.argmax((df != "").any(axis=1).to_numpy()))  # the header: the first non-blank row
        if fmt.columns is None:
            head = [str(h).strip().lower() for h in df.iloc[first_data_row]]
            cols = _header_columns(head, f"{source}: line {first_data_row + 1}")
        first_data_row += 1
    if fmt.columns is not None and len(fmt.columns) > df.shape[1]:
        raise NaspError(f"{source}: --columns names {len(fmt.columns)} columns, the file has {df.shape[1]} "
                        f"(split at {sep if joined is None else joined!r})")
    body = df.iloc[first_data_row:]
    blank = (body == "").all(axis=1).to_numpy()
    body = body[~blank]
    line_numbers = np.flatnonzero(~blank) + first_data_row + 1
    if len(body) == 0:
        raise NaspError(f"{source}: no ratings (only a header or blank lines)")
    _check_short_lines(body, text, sep, line_numbers, source)
    # object arrays: a fixed-width string array would allocate (longest id) x (rows)
    users = body.iloc[:, cols[0]].str.strip().to_numpy(dtype=object)
    items = body.iloc[:, cols[1]].str.strip().to_numpy(dtype=object)
    for what, mask in (("empty user id", users == ""), ("empty item id", items == "")):
        if mask.any():
            raise NaspError(f"{source}: line {line_numbers[np.argmax(mask)]}: {what}")
    if joined is not None:
        _check_no_stray_separator(users, items, joined, line_numbers, source)
    has_ratings = cols[2] is not None
    ratings = _numbers(body, cols[2], "rating", line_numbers, source) if has_ratings else np.ones(len(body))
    timestamps, issue = None, None
    if cols[3] is not None:
        if header or fmt.columns is not None:
            timestamps = _numbers(body, cols[3], "timestamp", line_numbers, source)
        else:
            timestamps, issue = _headerless_timestamps(body.iloc[:, cols[3]], line_numbers)
    if has_ratings:
        _warn_out_of_scale(ratings, line_numbers, source)
    table = RatingTable(users, items, ratings, source, timestamps, has_ratings, timestamp_issue=issue)
    return _drop_duplicates(table, line_numbers)


def _headerless_timestamps(column: pd.Series, line_numbers: np.ndarray) -> tuple[Optional[np.ndarray], Optional[str]]:
    """A fourth column without a header is a timestamp only when it is all numbers: (its
    values, None), else (None, the first line that is not one)."""
    text = column.fillna("").astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values, None
    i = int(np.argmax(bad))
    return None, f"line {line_numbers[i]}: {_why(text.iloc[i], 'timestamp')}"


def _check_short_lines(body: pd.DataFrame, text: str, sep: str, line_numbers: np.ndarray, source: str) -> None:
    """Refuse a line with fewer fields than the others (the parser fills them with empty
    strings, as it does empty fields). Only lines whose last field came out empty are split
    again, so a well-formed file costs nothing; a file with quotes is left to the parser."""
    width = body.shape[1]
    candidates = line_numbers[(body.iloc[:, -1] == "").to_numpy()]
    if candidates.size == 0 or '"' in text:
        return
    lines = text.split("\n")
    for n in candidates:
        line = lines[n - 1].rstrip("\r")
        count = len(line.split()) if sep == r"\s+" else len(line.split(sep))
        if count < width:
            raise NaspError(f"{source}: line {n}: malformed line, expected {width} fields, saw {count}")


def _check_no_stray_separator(users: np.ndarray, items: np.ndarray, sep: str, line_numbers: np.ndarray, source: str) -> None:
    """Refuse an id holding a character of a separator of several (``86:3`` in a ``::`` file:
    a ``:`` dropped or added by mistake would silently make a new id)."""
    for what, ids in (("user", users), ("item", items)):
        stray = pd.Series(ids).str.contains("|".join(re.escape(c) for c in set(sep))).to_numpy()
        if stray.any():
            i = int(np.argmax(stray))
            raise NaspError(f"{source}: line {line_numbers[i]}: {what} id {ids[i]!r} holds part of the separator {sep!r}; "
                            "fix the line (a separator character missing or extra?)")


def _maybe_not_canonical(raw: bytes, sep: str, chunk: int = 1 << 24) -> bool:
    """Whether a field of ``raw`` may be a number that a numeric parse would not give back as
    written: a plus sign anywhere, a zero after a minus sign ("-0"), or a leading zero before a
    digit at the start of a field (after the separator, a newline, a space or a quote: "007").
    Conservative (a False is certain); vectorised over chunks (about 40 ms per 20 MB)."""
    if b"+" in raw:
        return True
    a = np.frombuffer(raw, dtype=np.uint8)
    if len(a) >= 2 and a[0] == 48 and 48 <= a[1] <= 57 or len(a) >= 1 and a[0] == 45:
        return True
    sep_byte = ord(sep)
    for s in range(0, len(a), chunk):
        c = a[max(0, s - 1): s + chunk + 1]
        zeros = np.flatnonzero(c[1:-1] == 48) + 1
        prev, nxt = c[zeros - 1], c[zeros + 1]
        start = (prev == sep_byte) | (prev == 10) | (prev == 13) | (prev == 32) | (prev == 34)
        if np.any((prev == 45) | (start & (nxt >= 48) & (nxt <= 57))):
            return True
    return False


def _read_numeric(raw: bytes, sep: str, header: bool, first_number: int, first: str,
                  source: str, fmt: Optional[LineFormat] = None) -> Optional[RatingTable]:
    """The numeric fast path of ``_read_stream``: the table the general path reads, or None
    when this file needs the general path. Applies when the separator is one of
    ``FAST_SEPARATORS``, every line holds the same number of fields (no blank line either), the
    user and item columns are integers written canonically (no leading zero or plus sign: "007"
    stays a different id from "7") and the rating and timestamp columns are finite numbers. Ids
    come from ``pd.factorize`` of the integers (first appearance, as ``pd.unique`` of the
    strings), turned into strings once per distinct id."""
    if sep not in FAST_SEPARATORS:
        return None
    given = fmt.positions() if fmt is not None else None
    cols: tuple = given or (0, 1, 2, 3)
    skip = first_number if header else 0
    if header and given is None:
        try:
            cols = _header_columns([h.strip().lower() for h in first.split(sep)], f"{source}: line {first_number}")
        except NaspError:
            return None  # the general path reports it
    if _maybe_not_canonical(raw, sep):
        return None
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, skiprows=skip, engine="c", on_bad_lines="error",
                         skip_blank_lines=False, skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError):
        return None
    if len(df) == 0 or len(df) != lines - skip or df.shape[1] < 2:
        return None
    width = df.shape[1]
    if header and len(first.split(sep)) != width:
        return None  # the general path reports the field counts by line
    if given is not None and len(fmt.columns) > width:
        return None  # the general path says how many columns the file has
    if not header and given is None:
        cols = (0, 1, 2 if width > 2 else None, 3 if width > 3 else None)
    user_col, item_col, rating_col, ts_col = cols
    for c in (user_col, item_col):
        if not pd.api.types.is_integer_dtype(df.dtypes.iloc[c]):
            return None

    def finite(c: Optional[int], what: str) -> Optional[np.ndarray]:
        if c is None:
            return None
        if not pd.api.types.is_numeric_dtype(df.dtypes.iloc[c]) or pd.api.types.is_bool_dtype(df.dtypes.iloc[c]):
            return None
        values = df.iloc[:, c].to_numpy(dtype=np.float64)
        return None if _unusable(values, what).any() else values

    ratings = finite(rating_col, "rating")
    if rating_col is not None and ratings is None:
        return None
    timestamps, issue = finite(ts_col, "timestamp"), None
    line_numbers = np.arange(skip + 1, skip + 1 + len(df))
    if ts_col is not None and timestamps is None:
        if header or given is not None or pd.api.types.is_numeric_dtype(df.dtypes.iloc[ts_col]):
            return None  # must be numbers, or has empty fields: the general path says which line is not
        timestamps, issue = _headerless_timestamps(df.iloc[:, ts_col], line_numbers)  # words: no timestamps
    user_codes, user_uniques = pd.factorize(df.iloc[:, user_col].to_numpy())
    item_codes, item_uniques = pd.factorize(df.iloc[:, item_col].to_numpy())
    df = None  # free the frame before the id work (the closures above are done with it)
    codes = IdCodes(user_codes, np.array([str(u) for u in user_uniques.tolist()], dtype=object),
                    item_codes, np.array([str(i) for i in item_uniques.tolist()], dtype=object))
    users, items = codes.user_labels[user_codes], codes.item_labels[item_codes]
    has_ratings = rating_col is not None
    if has_ratings:
        _warn_out_of_scale(ratings, line_numbers, source)
    table = RatingTable(users, items, ratings if has_ratings else np.ones(len(users)), source, timestamps, has_ratings, codes,
                        issue)
    return _drop_duplicates(table, line_numbers)


def _numbers(body: pd.DataFrame, col: int, what: str, line_numbers: np.ndarray, source: str) -> np.ndarray:
    """Column ``col`` as finite floats; an empty or non-numeric field is an error naming its line."""
    text = body.iloc[:, col].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = _unusable(values, what)
    if bad.any():
        i = int(np.argmax(bad))
        raise NaspError(f"{source}: line {line_numbers[i]}: {_why(text.iloc[i], what)}")
    return values


def _unusable(values: np.ndarray, what: str) -> np.ndarray:
    """Where ``values`` (column ``what``) are not finite, or are ratings beyond float32."""
    bad = ~np.isfinite(values)
    return bad | (np.abs(values) > MAX_ABS_RATING) if what == "rating" else bad


def _why(text: str, what: str) -> str:
    """Why the field ``text`` of column ``what`` is unusable (``_unusable``), in a few words."""
    if text.strip() == "":
        return f"empty {what}"
    try:
        if np.isfinite(float(text)):
            return f"{what} {text!r} is beyond the range of ratings (float32: at most {MAX_ABS_RATING:.3g} in size)"
    except ValueError:
        pass
    return f"{what} {text!r} is not a finite number"


def _warn_out_of_scale(ratings: np.ndarray, line_numbers: np.ndarray, source: str) -> None:
    """Warn once when ratings lie far outside the scale of the rest of the file, kept. The
    scale runs from zero (or lo, when below) to hi (or zero, when above), lo and hi the 0.1% and
    99.9% quantiles; far outside is more than half its width beyond it (on a 1-5 scale: below
    -2.5 or above 7.5). Anchored at zero, a scale's own rare low end (a few 1s among 4s and 5s)
    is never far outside."""
    if len(ratings) < 2:
        return
    lo, hi = np.quantile(ratings, 0.001, method="higher"), np.quantile(ratings, 0.999, method="lower")
    low, high = min(lo, 0.0), max(hi, 0.0)
    margin = (high - low) / 2
    outside = (ratings < low - margin) | (ratings > high + margin)
    if margin > 0 and outside.any():
        first = int(np.argmax(outside))
        log.warning("%s: %d rating(s) far outside the scale of the rest (%g to %g), first at line %d (%g); kept",
                    source, int(outside.sum()), lo, hi, int(line_numbers[first]), ratings[first])


def _drop_duplicates(table: RatingTable, line_numbers: np.ndarray) -> RatingTable:
    """Keep the last rating of every (user, item) pair that occurs more than once, and warn once
    with the count (RecBole's ``rm_dup_inter: last``): a pair in two splits would leak. The
    table comes back with its ``codes`` (made here when the reader has none)."""
    if table.codes is None:
        table = replace(table, codes=IdCodes.of(table.users, table.items))
    codes = table.codes
    pairs = codes.user_codes.astype(np.int64) * len(codes.item_labels) + codes.item_codes
    dup = pd.Series(pairs).duplicated(keep="last").to_numpy()
    if not dup.any():
        return table
    log.warning("%s: %d duplicate (user, item) rating(s), first at line %d; kept the last rating of each pair",
                table.source, int(dup.sum()), int(line_numbers[np.argmax(dup)]))
    return table.subset(~dup)


def _header_columns(head: list[str], source: str) -> tuple[int, int, Optional[int], Optional[int]]:
    """(user, item, rating, timestamp) column numbers of a header (RecBole's typed
    ``name:type`` headers included); rating and timestamp may be absent (None)."""
    def find(*prefixes: str) -> Optional[int]:
        for i, h in enumerate(head):
            base = h.split(":")[0]
            if base in prefixes:
                return i
        return None

    user = find("user_id", "userid", "user", "uid")
    item = find("item_id", "itemid", "movieid", "movie_id", "item", "iid")
    rating = find("rating", "ratings", "score", "stars")
    timestamp = find("timestamp", "time", "ts", "datetime")
    if None in (user, item):
        missing = ", ".join(n for n, c in (("user", user), ("item", item)) if c is None)
        raise NaspError(f"{source}: header {head} lacks a user or item column (no {missing}): "
                        "name the columns (user, item[, rating][, timestamp]) or remove the header line")
    if all(":" in h for h in head if h):
        _check_header_types(head, {user: "token", item: "token", rating: "float", timestamp: "float"}, source)
    return user, item, rating, timestamp


#: the field types of RecBole's typed headers (``user_id:token``)
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def _check_header_types(head: list[str], needed: dict, source: str) -> None:
    """Refuse a typed header with a type RecBole does not know, or a used column of another
    type than it needs (``needed``: column number -> type; ids are tokens, ratings and
    timestamps floats); columns this reader does not use may have any of RecBole's types."""
    for i, h in enumerate(head):
        name, _, kind = h.partition(":")
        if kind not in RECBOLE_TYPES:
            raise NaspError(f"{source}: column {h!r}: unknown type {kind!r}; RecBole's types are {', '.join(RECBOLE_TYPES)}")
        if i in needed and kind != needed[i]:
            raise NaspError(f"{source}: column {h!r}: must be {name}:{needed[i]} (ids are token, rating and timestamp float)")


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

    def known(self) -> "Interactions":
        """The rows whose user and item the id map knows (no ``-1``)."""
        keep = (self.users >= 0) & (self.items >= 0)
        if bool(keep.all()):
            return self
        return Interactions(self.users[keep], self.items[keep], self.ratings[keep])


@dataclass
class IdMap:
    """Raw id <-> dense index, for users and items."""

    user_ids: list[str]
    item_ids: list[str]

    @classmethod
    def build(cls, table: RatingTable, *more_items: Optional[RatingTable]) -> "IdMap":
        """Users of ``table``; items of ``table`` and then of ``more_items`` (the given
        validation/test files: their items are part of the catalogue, as in RecBole, though
        never trained; users stay those of ``table``)."""
        items = np.concatenate([table.distinct_items(), *(t.distinct_items() for t in more_items if t is not None)])
        return cls([str(u) for u in table.distinct_users()], [str(i) for i in pd.unique(items)])

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def encode(self, table: RatingTable) -> Interactions:
        """The table's rows as dense indices (-1 for ids not in the map); with the table's
        ``codes``, each distinct id is looked up once."""
        if table.codes is None:
            users = pd.Index(self.user_ids).get_indexer(table.users)
            items = pd.Index(self.item_ids).get_indexer(table.items)
        else:
            c = table.codes
            users = pd.Index(self.user_ids).get_indexer(c.user_labels)[c.user_codes]
            items = pd.Index(self.item_ids).get_indexer(c.item_labels)[c.item_codes]
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
    #: distinct raw ids of ``--valid-data``/``--test-data`` absent from ``--data`` (encoded as -1)
    unknown_ids: dict = field(default_factory=dict)
    #: users whose interactions were too few for a per-user split: all of them went to training
    train_only_users: int = 0

    def to(self, device: torch.device) -> "Splits":
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))

    @property
    def test_unknown_ids(self) -> dict:
        return self.unknown_ids.get("test", {"users": 0, "items": 0})

    def with_valid_in_train(self) -> "Splits":
        """The same splits with the validation ratings moved into training (for a refit); rows of
        a ``--valid-data`` user or item absent from ``--data`` stay out (the model has no row for them)."""
        valid = self.valid.known()
        both = Interactions(*(torch.cat([getattr(self.train, k), getattr(valid, k)]) for k in ("users", "items", "ratings")))
        empty = Interactions(self.valid.users[:0], self.valid.items[:0], self.valid.ratings[:0])
        return replace(self, train=both, valid=empty)


@dataclass
class SplitSpec:
    """How to split: ``kind`` names a splitter of ``SPLITS``; ``valid_ratio`` and ``test_ratio``
    are ignored for the part a given file (``valid_table``/``test_table``) provides."""

    kind: str = "global"
    test_ratio: float = 0.2
    valid_ratio: float = 0.1
    seed: int = 0
    test_table: Optional[RatingTable] = None
    valid_table: Optional[RatingTable] = None

    def ratios(self) -> tuple[float, float]:
        """(valid, test) fractions, checked; 0 for a part that comes from a file."""
        valid = 0.0 if self.valid_table is not None else self.valid_ratio
        test = 0.0 if self.test_table is not None else self.test_ratio
        for name, r in (("--test-ratio", self.test_ratio), ("--valid-ratio", self.valid_ratio)):
            if not 0.0 <= r < 1.0:
                raise NaspError(f"{name} must be in [0, 1), got {r}")
        if test + valid >= 1.0:
            raise NaspError(f"--test-ratio + --valid-ratio must be < 1, got {test + valid}")
        return valid, test


#: ``--split``: splitter name -> ``fn(table, spec) -> Splits``
SPLITS: Registry = Registry("split")


def split(table: RatingTable, spec: SplitSpec) -> Splits:
    """Split ``table`` as ``spec`` says (the one entry point of every command)."""
    return SPLITS.get(spec.kind)(table, spec)


def _assemble(table: RatingTable, spec: SplitSpec, ids: IdMap, data: Interactions, part: np.ndarray,
              train_only: int = 0) -> Splits:
    """Splits from ``part`` (0 train, 1 valid, 2 test per row of ``data``) and the given files."""
    unknown = {}
    parts = []
    for k, (name, given) in enumerate((("train", None), ("valid", spec.valid_table), ("test", spec.test_table))):
        if given is None:
            parts.append(data.subset(np.flatnonzero(part == k)))
            continue
        parts.append(ids.encode(given))
        unknown[name] = {"users": len(set(given.distinct_users()) - set(ids.user_ids)),
                         "items": len(set(given.distinct_items()) - set(table.distinct_items()))}
    train, valid, test = parts
    if len(train) == 0:
        raise NaspError(f"{table.source}: too few ratings ({len(data)}) for this split")
    low, high = float(train.ratings.min()), float(train.ratings.max())
    return Splits(train, valid, test, ids, (low, high), unknown, train_only)


@SPLITS.register("global")
def split_global(table: RatingTable, spec: SplitSpec) -> Splits:
    """Random split of all rows with ``seed`` (fractions of all rows), as the SIF paper."""
    valid_ratio, test_ratio = spec.ratios()
    ids = IdMap.build(table, spec.valid_table, spec.test_table)
    data = ids.encode(table)
    order = np.random.default_rng(spec.seed).permutation(len(data))
    n_test = int(round(test_ratio * len(data)))
    n_valid = int(round(valid_ratio * len(data)))
    if valid_ratio > 0 and n_valid == 0 or len(data) - n_test - n_valid < 1:
        raise NaspError(f"{table.source}: too few ratings ({len(data)}) for this split")
    part = np.zeros(len(data), dtype=np.int8)
    part[order[:n_test]] = 2
    part[order[n_test : n_test + n_valid]] = 1
    return _assemble(table, spec, ids, data, part)


def per_user_counts(n: np.ndarray, valid_ratio: float, test_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(valid, test) counts of users with ``n`` interactions, by RecBole's ratio split (``RS``):
    floor(ratio * n) each, then a part whose share is under one interaction gets one, test
    first, while training keeps at least two."""
    valid = np.floor(valid_ratio * n).astype(np.int64)
    test = np.floor(test_ratio * n).astype(np.int64)
    train = n - valid - test
    for ratio, count in ((test_ratio, test), (valid_ratio, valid)):
        bump = (train > 1) & (ratio * n > 0) & (ratio * n < 1)
        count += bump
        train -= bump
    return valid, test


def user_key_order(users: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The rows grouped by user, each user's by ``key``, file order among ties:
    ``np.lexsort((arange, key, users))`` in two sorts instead of three stable ones (each row's
    rank by key, then one sort of the unique values user * n + rank; 8.6 -> 6.6 CPU-s at 20M)."""
    n = len(users)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(n)
    return np.argsort(users.astype(np.int64) * n + rank)


def _split_by_user(table: RatingTable, spec: SplitSpec, key: np.ndarray) -> Splits:
    """Per-user split: each user's rows in ``key`` order (file order among ties), the first
    part to training, then validation, then test. A user too small to give every part one row
    keeps all of them in training."""
    valid_ratio, test_ratio = spec.ratios()
    ids = IdMap.build(table, spec.valid_table, spec.test_table)
    data = ids.encode(table)
    users = data.users.numpy()
    order = user_key_order(users, key)
    counts = np.bincount(users, minlength=ids.num_users)
    valid_n, test_n = per_user_counts(counts, valid_ratio, test_ratio)
    too_few = ((valid_ratio > 0) & (valid_n == 0)) | ((test_ratio > 0) & (test_n == 0))
    valid_n[too_few] = 0
    test_n[too_few] = 0
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    su = users[order]
    pos = np.arange(len(order)) - start[su]
    first_held = counts[su] - valid_n[su] - test_n[su]
    part_sorted = np.where(pos < first_held, 0, np.where(pos < first_held + valid_n[su], 1, 2)).astype(np.int8)
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return _assemble(table, spec, ids, data, part, int((too_few & (counts > 0)).sum()))


@SPLITS.register("random")
def split_random_by_user(table: RatingTable, spec: SplitSpec) -> Splits:
    """Per-user random split (RecBole's ``RS`` grouped by user) with ``seed``."""
    return _split_by_user(table, spec, np.random.default_rng(spec.seed).random(len(table)))


@SPLITS.register("temporal")
def split_temporal_by_user(table: RatingTable, spec: SplitSpec) -> Splits:
    """Per-user temporal split: each user's oldest interactions train, the newest test."""
    if table.timestamps is None and table.timestamp_issue is not None:
        raise NaspError(f"{table.source}: --split temporal needs timestamps, and the fourth column is not all numbers "
                        f"({table.timestamp_issue})")
    if table.timestamps is None:
        raise NaspError(f"{table.source}: --split temporal needs timestamps, and this file has none "
                        "(a fourth column, or a 'timestamp' column in its header)")
    return _split_by_user(table, spec, table.timestamps)


def check_folds(folds: object) -> int:
    """``folds`` if it is a usable number of cross-validation folds, else a ``NaspError``."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise NaspError(f"--folds {folds!r}: must be an integer >= 2 (the number of test parts)")
    return folds


def kfold(table: RatingTable, folds: int, seed: int) -> np.ndarray:
    """The cross-validation fold (0 .. ``folds`` - 1) of every row: each user's rows in a random
    order (``seed``) dealt over the folds from a random fold on, so that every user with two or
    more rows trains in every fold. A user with a single row keeps it in training (fold -1)."""
    check_folds(folds)
    if folds > len(table):
        raise NaspError(f"--folds {folds}: more folds than the {len(table)} row(s) of {table.source}")
    rng = np.random.default_rng(seed)
    users = pd.factorize(table.users)[0]
    order = user_key_order(users, rng.random(len(table)))
    counts = np.bincount(users)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    su = users[order]
    offset = rng.integers(0, folds, size=len(counts))
    dealt = (np.arange(len(order)) - start[su] + offset[su]) % folds
    fold = np.empty(len(table), dtype=np.int64)
    fold[order] = np.where(counts[su] > 1, dealt, -1)
    empty = [k + 1 for k in range(folds) if not (fold == k).any()]
    if empty:
        raise NaspError(f"--folds {folds}: fold(s) {', '.join(map(str, empty))} would test no row of {table.source} "
                        "(too few users with two or more rows); use fewer folds")
    return fold


def split_ratings(table: RatingTable, test_ratio: float, valid_ratio: float, seed: int,
                  test_table: Optional[RatingTable] = None) -> Splits:
    """Random train/valid/test split of all rows (``split`` with the ``global`` splitter)."""
    return split(table, SplitSpec("global", test_ratio, valid_ratio, seed, test_table))


# item metadata ----------------------------------------------------------------------------------
def read_titles(ratings_path: Union[str, Path]) -> dict[str, str]:
    """Item titles from ``u.item``/``movies.dat``/``movies.csv`` beside the ratings (or inside
    the same zip); empty when there is none."""
    return _find_titles(Path(ratings_path)) if str(ratings_path) else {}


def titles_missing(ratings_path: Union[str, Path], titles: dict) -> Optional[str]:
    """The warning for a MovieLens ratings file read without the title file that belongs beside it."""
    if titles or Path(ratings_path).name not in MOVIELENS_RATINGS:
        return None
    return f"no {' / '.join(ITEM_NAMES)} beside {ratings_path}: recommendations come without titles"


def _find_titles(path: Path) -> dict[str, str]:
    """The titles of ``read_titles``, or {} when no title file is found."""
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                for n in zf.namelist():
                    if Path(n).name in ITEM_NAMES:
                        check_zip_member(zf.getinfo(n), str(path))
                        return _parse_titles(zf.read(n), Path(n).name)
            return {}
        for name in ITEM_NAMES:
            candidate = path.parent / name
            if candidate.is_file():  # a regular file (a FIFO would block)
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

"""Reading ratings for SIF: files, archives and DataFrames into a ``RatingTable``, and item titles.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Optional, Sequence, Union

import numpy as np
import pandas as pd

from nasp.data import DATASETS, PREPARED, check_zip_member, fetch, regular_file
from nasp.errors import NaspError

from .data import ITEM_NAMES, MOVIELENS_RATINGS, RATINGS_NAMES, IdCodes, RatingTable

log = logging.getLogger("nasp.sif")


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
    if data in PREPARED:
        raise NaspError(f"{data}: a three-way data set ('nasp data prepare {data}'): read it with --ways 3")
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

"""The numeric fast path of the ratings reader gives the same tables as the general path."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from nasp import NaspError
from sif.data import RatingTable
from sif.readers import _read_numeric, read_ratings


def assert_same(a: RatingTable, b: RatingTable) -> None:
    assert a.users.dtype == b.users.dtype == object and a.items.dtype == b.items.dtype == object
    assert list(a.users) == list(b.users) and list(a.items) == list(b.items)
    assert all(type(x) is str for x in a.users[:50]) and all(type(x) is str for x in a.items[:50])
    assert a.ratings.dtype == b.ratings.dtype and np.array_equal(a.ratings, b.ratings)
    assert (a.timestamps is None) == (b.timestamps is None)
    if a.timestamps is not None:
        assert a.timestamps.dtype == b.timestamps.dtype and np.array_equal(a.timestamps, b.timestamps)
    assert a.has_ratings == b.has_ratings and a.source == b.source


def both(path) -> RatingTable:
    fast, general = read_ratings(path), read_ratings(path, numeric_fast_path=False)
    assert_same(fast, general)
    return fast


def fast_path_taken(path, sep="\t", header=False) -> bool:
    raw = path.read_bytes().replace(b"::", b"\t")
    first = raw.split(b"\n", 1)[0].decode()
    return _read_numeric(raw, sep, header, 1, first, str(path)) is not None


def test_ml100k_both_paths_give_the_same_table(ml100k_path):
    table = both(ml100k_path)
    assert len(table) == 100_000
    assert fast_path_taken(ml100k_path)


@pytest.mark.parametrize("name,content,fast", [
    ("u.data", "1\t10\t3\t881250949\n2\t10\t4.5\t881250950\n1\t11\t5\t881250951\n", True),
    ("u.data", "1\t10\t3\n2\t10\t4.5\n1\t11\t5", True),  # no trailing newline, no timestamps
    ("ratings.dat", "1::10::3::978300760\n2::11::4::978300761\n", True),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,3.5,1112486027\n2,10,4.0,1112484676\n", True),
    ("x.csv", "item,user,score\n10,1,3\n11,2,4\n", True),  # header names choose the columns
    ("u.data", "1\t10\n2\t10\n3\t11\n", True),  # interaction log without ratings
    ("u.data", "u1\t10\t3\nu2\t10\t4\n", False),  # string ids
    ("u.data", "007\t10\t3\n7\t10\t4\n", False),  # "007" and "7" are two ids
    ("u.data", "+7\t10\t3\n7\t11\t4\n", False),
    ("u.data", "1\t10\t3\n\n2\t11\t4\n", False),  # a blank line
    ("u.data", "1\t10\t3\tnote\n2\t11\t4\tother\n", True),  # a fourth column of words: no timestamps
    ("u.data", "1\t10\t3\n1\t10\t5\n2\t11\t4\n", True),  # a duplicate pair: the last kept
    ("u.data", "1.5\t10\t3\n2\t11\t4\n", False),
])
def test_small_files_both_paths_give_the_same_table(tmp_path, caplog, name, content, fast):
    p = tmp_path / name
    p.write_text(content)
    both(p)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasp.sif"):
        read_ratings(p)
    fast_warnings = [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasp.sif"):
        read_ratings(p, numeric_fast_path=False)
    assert fast_warnings == [r.getMessage() for r in caplog.records]  # the same lines named
    sep = "," if name.endswith(".csv") else "\t"
    assert fast_path_taken(p, sep, header=name.endswith(".csv")) == fast


@pytest.mark.parametrize("content,message", [
    ("1\t10\t3\n2\t11\n3\t12\t4\t5\t6\n", "line 3"),  # too many fields
    ("1\t10\t3\n2\t11\tx\n", "line 2: rating 'x'"),
    ("1\t10\t3\n2\t11\t\n", "line 2: empty rating"),
    ("1\t10\t3\n2\t\t4\n", "line 2: empty item id"),
])
def test_bad_lines_still_name_their_line(tmp_path, content, message):
    p = tmp_path / "u.data"
    p.write_text(content)
    for fast in (True, False):
        with pytest.raises(NaspError, match=message):
            read_ratings(p, numeric_fast_path=fast)


@pytest.mark.parametrize("text,expected", [
    (b"1\t10\t3\n", False), (b"0\t10\t0.5\n", False), (b"10\t100\t3\n", False),
    (b"007\t1\t3\n", True), (b"1\t007\t3\n", True), (b"1\t2\t3\n05\t1\t1\n", True), (b"-0\t1\t3\n", True),
    (b"1\t+2\t3\n", True), (b'1\t"02"\t3\n', True), (b"1\t 02\t3\n", True),
])
def test_non_canonical_numbers_are_detected(text, expected):
    from sif.readers import _maybe_not_canonical

    assert _maybe_not_canonical(text, "\t") == expected
    assert _maybe_not_canonical(text, "\t", chunk=3) == expected  # across chunk edges


def test_id_codes_map_and_split_as_the_strings(tmp_path):
    """A table's ``codes`` (set by every reader) give the id maps, encodings and splits the
    strings give, after a subset too and with a given test file holding unknown ids."""
    import dataclasses

    from sif.data import IdMap
    from sif.splits import SplitSpec, split

    rng = np.random.default_rng(0)
    rows = [f"{u}\t{i}\t{r}\t{t}" for t, (u, i, r) in enumerate(zip(rng.integers(1, 40, 600), rng.integers(1, 30, 600),
                                                                     rng.integers(1, 6, 600)))]
    (tmp_path / "u.data").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.data").write_text("1\t1\t3\t0\n999\t2\t4\t1\n3\t777\t5\t2\n")
    for numeric in (True, False):
        table = read_ratings(tmp_path / "u.data", numeric_fast_path=numeric).at_least(2.0)
        given = read_ratings(tmp_path / "test.data", numeric_fast_path=numeric)
        assert table.codes is not None and given.codes is not None
        assert list(table.codes.user_labels[table.codes.user_codes]) == list(table.users)
        plain, plain_given = dataclasses.replace(table, codes=None), dataclasses.replace(given, codes=None)
        assert IdMap.build(table, given) == IdMap.build(plain, plain_given)
        ids = IdMap.build(table, given)
        for t, p in ((table, plain), (given, plain_given)):
            a, b = ids.encode(t), ids.encode(p)
            assert all(getattr(a, k).equal(getattr(b, k)) for k in ("users", "items", "ratings"))
        for kind in ("global", "random"):
            a = split(table, SplitSpec(kind, 0.0, 0.2, 1, test_table=given))
            b = split(plain, SplitSpec(kind, 0.0, 0.2, 1, test_table=plain_given))
            assert a.ids == b.ids and a.unknown_ids == b.unknown_ids == {"test": {"users": 1, "items": 1}}
            for part in ("train", "valid", "test"):
                assert all(getattr(getattr(a, part), k).equal(getattr(getattr(b, part), k)) for k in ("users", "items", "ratings"))

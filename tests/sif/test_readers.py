"""Delimited files read with --sep and --columns, and the reader's answers to bad data (the fault
probe's findings): each gives one clear line naming the file and line, or a warning."""
from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp import NaspError
from sif import SIF
from sif import pipeline
from sif.readers import LineFormat, read_ratings
from sif.splits import SplitSpec, split

ROWS = [("196", "242", "3"), ("186", "302", "3"), ("22", "377", "1"), ("196", "51", "2"), ("7", "242", "4.5")]


def _expect(table, timestamps: bool = False) -> None:
    assert list(table.users) == [r[0] for r in ROWS]
    assert list(table.items) == [r[1] for r in ROWS]
    assert np.allclose(table.ratings, [float(r[2]) for r in ROWS])
    assert (table.timestamps is not None) == timestamps


def _both_paths(path, fmt: LineFormat):
    """The table of the numeric fast path, checked equal to the general path's."""
    fast, general = read_ratings(path, fmt=fmt), read_ratings(path, numeric_fast_path=False, fmt=fmt)
    assert list(fast.users) == list(general.users) and list(fast.items) == list(general.items)
    assert np.array_equal(fast.ratings, general.ratings)
    return fast


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _error(result) -> str:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# --sep and --columns ------------------------------------------------------------------------------
def test_a_semicolon_file_needs_sep_and_the_error_names_the_separators_tried(tmp_path):
    p = tmp_path / "ratings.txt"
    p.write_text("".join(f"{u};{i};{r}\n" for u, i, r in ROWS))
    with pytest.raises(NaspError, match=r"1 column; .*tried '::', tab, ',' and whitespace: name it with --sep") as info:
        read_ratings(p)
    assert str(p) in str(info.value)
    _expect(_both_paths(p, LineFormat.of(";")))
    p.write_text("".join(f"{u};{i}\n" for u, i, _ in ROWS))
    with pytest.raises(NaspError, match=r"1 column; .*split at '\|' \(--sep\)"):
        read_ratings(p, fmt=LineFormat.of("|"))


def test_columns_map_any_order_skip_a_column_and_override_a_header(tmp_path):
    p = tmp_path / "log.psv"
    p.write_text("".join(f"{i}|{u}|x{k}|{r}|9000{k}\n" for k, (u, i, r) in enumerate(ROWS)))
    table = _both_paths(p, LineFormat.of("|", "item,user,-,rating,timestamp"))
    _expect(table, timestamps=True)
    assert list(table.timestamps) == [90000 + k for k in range(len(ROWS))]
    # a header is still recognised and skipped; --columns wins over its names
    q = tmp_path / "ratings.csv"
    q.write_text("a,b,c\n" + "".join(f"{i},{u},{r}\n" for u, i, r in ROWS))
    _expect(_both_paths(q, LineFormat.of(columns=["item", "user", "rating"])))
    # without a rating column: an interaction log
    log_only = read_ratings(q, fmt=LineFormat.of(columns="item,user"))
    assert not log_only.has_ratings and list(log_only.users) == [r[0] for r in ROWS]
    with pytest.raises(NaspError, match=r"--columns names 4 columns, the file has 3"):
        read_ratings(q, fmt=LineFormat.of(columns="item,user,rating,timestamp"))


def test_a_separator_of_several_characters_and_the_names_of_tab(tmp_path):
    p = tmp_path / "ratings.txt"
    p.write_text("".join(f"{u}||{i}||{r}\n" for u, i, r in ROWS))
    _expect(_both_paths(p, LineFormat.of("||")))
    assert LineFormat.of("tab").sep == LineFormat.of("\\t").sep == LineFormat.of("\t").sep == "\t"


@pytest.mark.parametrize("sep, columns, message", [
    ("", None, r"--sep '': give the separator"),
    ("\n", None, r"a line break or a quote cannot separate fields"),
    (None, "user,item,user", r"--columns user,item,user: names user twice"),
    (None, "item,rating", r"--columns item,rating: no user column; user and item are needed"),
    (None, "user,item,stars", r"--columns user,item,stars: unknown name\(s\) 'stars'; use user, item, rating, timestamp"),
])
def test_bad_sep_and_columns_are_one_clear_error(sep, columns, message):
    with pytest.raises(NaspError, match=message):
        LineFormat.of(sep, columns)
    with pytest.raises(NaspError, match=message):  # the Python API checks them as the CLI does
        SIF(sep=sep, columns=columns)


def test_cli_reads_with_sep_and_columns_and_refuses_bad_ones(tmp_path, tiny_ratings):
    rows = [line.split("\t") for line in tiny_ratings.read_text().splitlines()]
    p = tmp_path / "ratings.txt"
    p.write_text("".join(f"{i};{u};{r}\n" for u, i, r, _ in rows))
    r = _invoke("sif", "train", "--ifc", "multiply", "--data", p, "--sep", ";", "--columns", "item,user,rating", "--max-epochs", "1",
                "--dim", "4", "--out", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["num_users"] == len({u for u, *_ in rows}) and summary["num_items"] == len({i for _, i, *_ in rows})
    assert "1 column" in _error(_invoke("sif", "train", "--ifc", "multiply", "--data", p, "--out", tmp_path / "r1"))
    assert "names user twice" in _error(_invoke("sif", "train", "--ifc", "multiply", "--data", p, "--columns", "user,user,item",
                                                "--out", tmp_path / "r2"))
    assert "--sep ''" in _error(_invoke("sif", "search", "--data", p, "--sep", "", "--out", tmp_path / "r3"))
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_the_python_api_reads_with_sep_and_columns(tmp_path):
    p = tmp_path / "ratings.txt"
    p.write_text("".join(f"{i};{u};{r}\n" for u, i, r in ROWS * 1) + "".join(f"{k};{k % 3};4\n" for k in range(100, 140)))
    splits, _ = SIF(sep=";", columns="item,user,rating", test_ratio=0.2).load_data(p)
    assert {"196", "186", "22", "7"} <= set(splits.ids.user_ids) and "242" in splits.ids.item_ids


# the fault probe's findings -----------------------------------------------------------------------
def test_a_fifo_or_a_device_as_data_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "ratings.fifo"
    import os

    os.mkfifo(fifo)  # nothing writes to it: opening it would block forever
    with pytest.raises(NaspError, match=r"ratings.fifo: a FIFO, not a regular file"):
        read_ratings(fifo)
    with pytest.raises(NaspError, match=r"/dev/zero: a device, not a regular file"):
        read_ratings("/dev/zero")
    assert "a FIFO" in _error(_invoke("sif", "train", "--ifc", "multiply", "--data", fifo, "--out", tmp_path / "run"))


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    z = tmp_path / "ml.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml/u.data", "1\t2\t3\t0\n" + "\n" * (4 << 20))  # 4 MiB of blank lines: some KB compressed
    with pytest.raises(NaspError, match=r"u.data inflates [\d,]+-fold .* refused as a likely zip bomb"):
        read_ratings(z)


def test_a_rating_beyond_float32_names_its_line(tmp_path):
    for name, text, line in (("u.data", "1\t2\t3\t0\n2\t3\t1e308\t0\n", 2), ("r.csv", "user,item,rating\n1,2,3\n2,3,-1e39\n", 3)):
        p = tmp_path / name
        p.write_text(text)
        for fast in (True, False):
            with pytest.raises(NaspError, match=rf"line {line}: rating '-?1e3\d+' is beyond the range of ratings"):
                read_ratings(p, numeric_fast_path=fast)


def test_a_stray_colon_in_ratings_dat_is_an_error_not_a_new_item(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_text("1::5::3::883603000\n6::86:3::883603013\n")
    with pytest.raises(NaspError, match=r"ratings.dat: line 2: malformed line, expected 4 fields, saw 3"):
        read_ratings(p)
    p.write_text("1::5::3\n6::86:3::4\n")  # as many fields as the others: the id gives it away
    with pytest.raises(NaspError, match=r"line 2: item id '86:3' holds part of the separator '::'"):
        read_ratings(p)


@pytest.mark.parametrize("header, message", [
    ("user_id:token\titem_id:token\trating:weird", r"column 'rating:weird': unknown type 'weird'; RecBole's types are token, "
                                                   r"token_seq, float, float_seq"),
    ("user_id:float\titem_id:token\trating:float", r"column 'user_id:float': must be user_id:token"),
    ("user_id:token\titem_id:token_seq\trating:float", r"column 'item_id:token_seq': must be item_id:token"),
    ("user_id:token\titem_id:token\trating:token", r"column 'rating:token': must be rating:float"),
])
def test_inter_header_types_outside_recboles_or_the_wrong_ones_are_refused(tmp_path, header, message):
    p = tmp_path / "ml.inter"
    p.write_text(header + "\n1\t2\t3\n2\t3\t4\n")
    with pytest.raises(NaspError, match=message):
        read_ratings(p)


def test_inter_columns_this_reader_does_not_use_may_have_any_recbole_type(tmp_path):
    p = tmp_path / "ml.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\treview:token_seq\tscores:float_seq\n1\t2\t3\ta b\t1 2\n2\t3\t4\tc\t3\n")
    assert list(read_ratings(p).items) == ["2", "3"]


def test_test_or_valid_data_equal_to_data_is_warned_about(tmp_path, caplog, tiny_ratings):
    copy = tmp_path / "copy.data"
    copy.write_bytes(tiny_ratings.read_bytes())
    for given in (tiny_ratings, copy):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nasp.sif"):
            pipeline.load_splits(pipeline.DataOptions(str(tiny_ratings), test_data=str(given)))
        assert any("--test-data holds the same interactions as --data" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasp.sif"):
        pipeline.load_splits(pipeline.DataOptions(str(tiny_ratings), valid_data=str(copy)))
    assert any("--valid-data holds the same" in r.getMessage() for r in caplog.records)


def test_a_headerless_file_with_a_byte_order_mark_is_no_header(tmp_path):
    p = tmp_path / "u.data"
    p.write_bytes(b"\xef\xbb\xbf" + "".join(f"{u}\t{i}\t{r}\t0\n" for u, i, r in ROWS).encode())
    for fast in (True, False):
        _expect(read_ratings(p, numeric_fast_path=fast), timestamps=True)
    q = tmp_path / "ratings.csv"
    q.write_bytes(b"\xef\xbb\xbfuserId,movieId,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in ROWS).encode())
    _expect(read_ratings(q))


def test_temporal_split_names_the_line_of_a_bad_timestamp(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("".join(f"{u}\t{i}\t{r}\t{'x' if k == 2 else 880000000 + k}\n" for k, (u, i, r) in enumerate(ROWS)))
    for fast in (True, False):
        table = read_ratings(p, numeric_fast_path=fast)
        assert table.timestamps is None  # a headerless fourth column that is not all numbers: no timestamps
        with pytest.raises(NaspError, match=r"u.data: --split temporal needs timestamps, and the fourth column is not all "
                                            r"numbers \(line 3: timestamp 'x' is not a finite number\)"):
            split(table, SplitSpec("temporal"))


def test_the_low_end_of_the_scale_is_not_far_outside_it(tmp_path, caplog):
    p = tmp_path / "u.data"
    lines = [f"{k // 50}\t{k % 50}\t{4 + k % 2}\t0" for k in range(2500)] + ["999\t1\t1\t0"]
    p.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="nasp.sif"):
        assert read_ratings(p).ratings.min() == 1
    assert not caplog.records
    p.write_text("\n".join(lines + ["999\t2\t50\t0"]) + "\n")
    with caplog.at_level(logging.WARNING, logger="nasp.sif"):
        read_ratings(p)
    assert "1 rating(s) far outside the scale of the rest (4 to 5), first at line 2502 (50)" in caplog.text

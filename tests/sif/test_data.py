import zipfile

import numpy as np
import pytest
import torch

from nasp import NaspError
from sif.data import IdMap
from sif.readers import read_ratings, read_titles, resolve_ratings_path
from sif.splits import split_ratings

ROWS = [("196", "242", "3"), ("186", "302", "3"), ("22", "377", "1"), ("196", "51", "2"), ("7", "242", "4.5")]


def _expect(table):
    assert list(table.users) == [r[0] for r in ROWS]
    assert list(table.items) == [r[1] for r in ROWS]
    assert np.allclose(table.ratings, [float(r[2]) for r in ROWS])


def test_read_udata(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("".join(f"{u}\t{i}\t{r}\t88125094{k}\n" for k, (u, i, r) in enumerate(ROWS)))
    _expect(read_ratings(p))


def test_read_ratings_dat(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_text("".join(f"{u}::{i}::{r}::97830{k}\n" for k, (u, i, r) in enumerate(ROWS)))
    _expect(read_ratings(p))


def test_read_ratings_csv_with_header(tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},1{k}\n" for k, (u, i, r) in enumerate(ROWS)))
    _expect(read_ratings(p))


def test_read_recbole_inter(tmp_path):
    p = tmp_path / "ml.inter"
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    p.write_text(head + "".join(f"{u}\t{i}\t{r}\t1{k}\n" for k, (u, i, r) in enumerate(ROWS)))
    _expect(read_ratings(p))
    # column order comes from the header, not the position
    q = tmp_path / "swapped.inter"
    q.write_text("item_id:token\tuser_id:token\trating:float\n" + "".join(f"{i}\t{u}\t{r}\n" for u, i, r in ROWS))
    _expect(read_ratings(q))


def test_read_zip_and_titles(tmp_path):
    z = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t{r}\t0\n" for u, i, r in ROWS))
        zf.writestr("ml-100k/u.item", "242|Kolya (1996)|24-Jan-1997||http://x|0\n")
    _expect(read_ratings(z))
    assert read_titles(z) == {"242": "Kolya (1996)"}


def test_id_mapping_is_dense_in_order_of_appearance(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("".join(f"{u}\t{i}\t{r}\t0\n" for u, i, r in ROWS))
    table = read_ratings(p)
    ids = IdMap.build(table)
    assert ids.user_ids == ["196", "186", "22", "7"]
    assert ids.item_ids == ["242", "302", "377", "51"]
    enc = ids.encode(table)
    assert enc.users.tolist() == [0, 1, 2, 0, 3]
    assert enc.items.tolist() == [0, 1, 2, 3, 0]


def test_split_sizes_and_seed_determinism(tiny_ratings):
    table = read_ratings(tiny_ratings)
    a = split_ratings(table, 0.2, 0.1, seed=3)
    b = split_ratings(table, 0.2, 0.1, seed=3)
    c = split_ratings(table, 0.2, 0.1, seed=4)
    assert (len(a.train), len(a.valid), len(a.test)) == (1050, 150, 300)
    assert torch.equal(a.test.users, b.test.users) and torch.equal(a.test.ratings, b.test.ratings)
    assert not torch.equal(a.test.users, c.test.users)
    pairs = lambda s: set(zip(s.users.tolist(), s.items.tolist()))  # noqa: E731
    assert not (pairs(a.train) & pairs(a.test)) and not (pairs(a.valid) & pairs(a.test))


def test_separate_test_file_maps_unknown_ids_to_minus_one(tiny_ratings, tmp_path):
    test_file = tmp_path / "test.data"
    test_file.write_text("1\t1\t4\t0\n999\t1\t3\t0\n")
    s = split_ratings(read_ratings(tiny_ratings), 0.2, 0.1, 0, read_ratings(test_file))
    assert len(s.train) + len(s.valid) == 1500
    assert s.test.users.tolist()[1] == -1


@pytest.mark.parametrize(
    "content, message",
    [
        ("1\t2\t3\t4\n1\t2\t3\t4\t5\n", r"line 2: malformed line, expected 4 fields, saw 5"),
        ("1\t2\t3\n1\t2\tfive\n", r"line 2: rating 'five' is not a finite number"),
        ("1\t2\t3\n1\t2\t\n", r"line 2: empty rating"),
        ("1\t2\t3\n4\t5\tnan\n", r"line 2: rating 'nan' is not a finite number"),
        ("1\n3\n", r"1 column; need at least 2"),
        ("", r"empty file"),
        ("\n\n", r"empty file"),
        ("userId,movieId,rating\n", r"no ratings"),
        ("user,thing,score_x\n1,2,3\n", r"lacks a user or item column \(no item\)"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    p = tmp_path / ("r.csv" if "," in content else "r.data")
    p.write_text(content)
    with pytest.raises(NaspError, match=message) as info:
        read_ratings(p)
    assert str(p) in str(info.value)


def test_missing_file_bad_zip_and_unknown_name(tmp_path):
    with pytest.raises(NaspError, match="no such file"):
        read_ratings(tmp_path / "nope.data")
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(NaspError, match="unreadable archive"):
        read_ratings(bad)
    empty_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(NaspError, match="holds no ratings file"):
        read_ratings(empty_zip)
    with pytest.raises(NaspError, match="unknown data set 'ml-7k'"):
        resolve_ratings_path("ml-7k", tmp_path)


def test_known_name_offline_names_the_file_to_place(tmp_path, monkeypatch):
    import nasp.data

    def offline(url, target):
        raise OSError("network is unreachable")

    monkeypatch.setattr(nasp.data, "_download", offline)
    with pytest.raises(NaspError, match=r"ml-1m/ratings.dat") as info:
        resolve_ratings_path("ml-1m", tmp_path)
    assert "files.grouplens.org" in str(info.value)


def test_known_name_resolves_under_data_root(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t0\n")
    assert resolve_ratings_path("ml-100k", tmp_path) == tmp_path / "ml-100k" / "u.data"


def test_real_movielens_100k(ml100k_path):
    table = read_ratings(ml100k_path)
    ids = IdMap.build(table)
    assert (len(table), ids.num_users, ids.num_items) == (100000, 943, 1682)
    assert set(np.unique(table.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_unseen_ids_of_a_separate_test_file_are_counted(tiny_ratings, tmp_path):
    from sif.pipeline import data_summary

    test_file = tmp_path / "test.data"
    test_file.write_text("1\t1\t4\t0\n998\t1\t3\t0\n999\t2\t3\t0\n1\t5000\t2\t0\n")
    s = split_ratings(read_ratings(tiny_ratings), 0.2, 0.1, 0, read_ratings(test_file))
    summary = data_summary(s)
    assert summary["test_unseen_users"] == 2 and summary["test_unseen_items"] == 1
    assert summary["test_cold_ratings"] == 3


def test_huge_fields_and_field_counts_are_refused_by_line_before_parsing(tmp_path):
    import tracemalloc

    long_id = tmp_path / "long.data"
    long_id.write_bytes(b"1\t2\t3\t0\n" + b"u" * 20_000_000 + b"\t2\t3\t0\n1\t3\t4\t0\n")
    many = tmp_path / "many.csv"
    many.write_bytes(b",".join([b"1"] * 3_000_000) + b"\n1,2,3\n")
    later = tmp_path / "later.data"
    later.write_text("1\t2\t3\t0\n" + "\t".join(["1"] * 5000) + "\n")
    tracemalloc.start()
    with pytest.raises(NaspError, match=r"long\.data: line 2: 20,000,006 bytes long"):
        read_ratings(long_id)
    with pytest.raises(NaspError, match=r"many\.csv: line 1: .*more than the 65,536"):
        read_ratings(many)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6  # a few copies of the file, not (rows x longest id) or (fields x rows)
    with pytest.raises(NaspError, match=r"later\.data: line 2: malformed line, expected 4 fields, saw 5000"):
        read_ratings(later)
    wide = tmp_path / "wide.data"
    wide.write_text("\t".join(["1"] * 1500) + "\n")
    with pytest.raises(NaspError, match=r"wide\.data: line 1: 1,500 fields, more than the 1,000"):
        read_ratings(wide)


def test_a_header_with_a_numeric_rating_name_is_recognised(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("user,item,5,ts\n1,2,3,881250949\n2,3,4,881250950\n")
    table = read_ratings(p)  # a header with no rating column: an interaction log with timestamps
    assert not table.has_ratings and list(table.timestamps) == [881250949, 881250950]
    with pytest.raises(NaspError, match=r"r\.csv: no rating column"):
        table.need_ratings()
    p.write_text("user,item,rating,ts\n1,2,3,881250949\n2,3,4,881250950\n")
    assert list(read_ratings(p).users) == ["1", "2"]
    q = tmp_path / "ids.csv"  # string ids in every row are no header
    q.write_text("u1,i1,3\nu2,i2,4\n")
    assert list(read_ratings(q).users) == ["u1", "u2"]


def test_two_ratings_files_in_a_zip_or_folder_are_refused_by_name(tmp_path):
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("full/u.data", "1\t2\t3\t0\n2\t3\t4\t0\n")
        zf.writestr("half/u.data", "1\t2\t3\t0\n")
    with pytest.raises(NaspError, match=r"two\.zip: holds 2 ratings files \(full/u\.data, half/u\.data\)"):
        read_ratings(z)
    folder = tmp_path / "both"
    folder.mkdir()
    (folder / "u.data").write_text("1\t2\t3\t0\n")
    (folder / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    with pytest.raises(NaspError, match=r"holds 2 ratings files \(ml\.inter, u\.data\)"):
        resolve_ratings_path(str(folder))


def test_duplicates_keep_the_last_rating_and_outliers_are_kept_with_one_warning_each(tmp_path, caplog):
    p = tmp_path / "u.data"
    rows = [(u, i, 1 + (u + i) % 5) for u in range(1, 30) for i in range(1, 30)]
    lines = [f"{u}\t{i}\t{r}\t0" for u, i, r in rows] + ["1\t1\t5\t0", "2\t2\t1\t0", "3\t40\t50\t0"]
    p.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING", logger="nasp.sif"):
        table = read_ratings(p)
    assert len(table) == len(rows) + 1  # the two repeated pairs count once, the 50 is a new pair
    pairs = dict(zip(zip(table.users, table.items), table.ratings))
    assert pairs[("1", "1")] == 5 and pairs[("2", "2")] == 1 and pairs[("3", "40")] == 50
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "2 duplicate (user, item) rating(s), first at line 1" in messages[1] and "kept the last" in messages[1]
    assert "1 rating(s) far outside the scale of the rest (1 to 5), first at line 844 (50)" in messages[0]
    clean = tmp_path / "clean.data"
    clean.write_text("\n".join(lines[:-3]) + "\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="nasp.sif"):
        read_ratings(clean)
    assert not caplog.records


def test_words_outside_the_rating_columns_make_no_header(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("1,2,3,good\n1,3,4,5\n2,2,5,\n")
    assert list(read_ratings(p).users) == ["1", "1", "2"]
    q = tmp_path / "u.data"
    q.write_text("1\t\t3\t0\n1\t3\t4\t5\n")
    with pytest.raises(NaspError, match=r"line 1: empty item id"):
        read_ratings(q)


def test_interaction_logs_without_ratings_and_timestamps(tmp_path):
    """A two-column log reads as implicit feedback (every row an interaction); the rating task
    refuses it in one line. Timestamps come from a header's column or a numeric fourth one."""
    log2 = tmp_path / "log.data"
    log2.write_text("1\t10\n1\t11\n2\t10\n")
    table = read_ratings(log2)
    assert not table.has_ratings and list(table.ratings) == [1.0, 1.0, 1.0] and table.timestamps is None
    with pytest.raises(NaspError, match="no rating column; the rating task needs one"):
        table.need_ratings()
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t30\nu1\ti2\t10\nu2\ti1\t20\n")
    t = read_ratings(inter)
    assert list(t.users) == ["u1", "u1", "u2"] and not t.has_ratings and list(t.timestamps) == [30, 10, 20]
    typed = tmp_path / "y.inter"
    typed.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t4\t99\n")
    t = read_ratings(typed)
    assert t.has_ratings and list(t.ratings) == [4.0] and list(t.timestamps) == [99.0]
    udata = tmp_path / "u.data"
    udata.write_text("1\t2\t4\t881250949\n1\t3\t2\t881250950\n")
    assert list(read_ratings(udata).timestamps) == [881250949, 881250950]
    text4 = tmp_path / "r.csv"
    text4.write_text("1,2,4,a note\n")
    assert read_ratings(text4).timestamps is None  # a non-numeric fourth column is not a timestamp
    bad = tmp_path / "z.inter"
    bad.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\tlate\n")
    with pytest.raises(NaspError, match="line 2: timestamp 'late' is not a finite number"):
        read_ratings(bad)


def test_min_rating_keeps_rows_at_or_above_the_threshold(tmp_path):
    p = tmp_path / "u.data"
    p.write_text("1\t2\t4\n1\t3\t2\n2\t2\t5\n")
    kept = read_ratings(p).at_least(4)
    assert list(kept.items) == ["2", "2"] and list(kept.ratings) == [4.0, 5.0]
    with pytest.raises(NaspError, match="no interaction left after --min-rating 6 \\(ratings range from 2 to 5\\)"):
        read_ratings(p).at_least(6)


def test_given_validation_and_test_files_replace_their_parts_in_every_split(tiny_ratings, tmp_path):
    from sif.splits import SplitSpec, split

    table = read_ratings(tiny_ratings)
    valid_file, test_file = tmp_path / "v.data", tmp_path / "t.data"
    valid_file.write_text("1\t1\t4\n2\t2\t3\n")
    test_file.write_text("1\t3\t5\nnew\t1\t2\n")
    for kind in ("global", "random"):
        s = split(table, SplitSpec(kind, 0.2, 0.1, 0, read_ratings(test_file), read_ratings(valid_file)))
        assert len(s.valid) == 2 and len(s.test) == 2 and len(s.train) == len(table)  # nothing held out of --data
        assert s.unknown_ids["test"] == {"users": 1, "items": 0} and s.unknown_ids["valid"] == {"users": 0, "items": 0}
    only_valid = split(table, SplitSpec("global", 0.2, 0.1, 0, None, read_ratings(valid_file)))
    assert len(only_valid.valid) == 2 and len(only_valid.test) == round(0.2 * len(table))

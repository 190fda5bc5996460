import json

from click.testing import CliRunner

import nasp.data
from nasp.cli import main


def test_data_list_shows_known_sets_and_presence(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t0\n")
    r = CliRunner().invoke(main, ["data", "list", "--data-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)["datasets"]}
    assert rows["ml-100k"]["present"] and not rows["ml-1m"]["present"]


def test_data_fetch_errors_are_one_line(tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["data", "fetch", "ml-7k"])
    assert r.exit_code == 1 and r.output.startswith("Error: unknown data set 'ml-7k'")

    def offline(url, target):
        raise OSError("no network")

    monkeypatch.setattr(nasp.data, "_download", offline)
    r = CliRunner().invoke(main, ["data", "fetch", "ml-1m", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "ml-1m/ratings.dat" in r.output and "Traceback" not in r.output


def test_data_fetch_present_prints_path(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t0\n")
    r = CliRunner().invoke(main, ["data", "fetch", "ml-100k", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0 and r.output.strip() == str(tmp_path / "ml-100k")


def test_data_list_explains_its_marks_and_lists_bundled_digits(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t0\n")
    r = CliRunner().invoke(main, ["data", "list", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line.split()[1] for line in r.output.splitlines()[2:]}
    assert r.output.splitlines()[1].split()[:2] == ["name", "status"]
    assert lines["ml-100k"] == "present" and lines["ml-1m"] == "missing" and lines["digits"] == "bundled"
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(main, ["data", "list", "--json"]).output)["datasets"]}
    assert rows["digits"]["bundled"] and rows["digits"]["present"]
    r = CliRunner().invoke(main, ["data", "fetch", "digits"])
    assert r.exit_code == 0 and "nothing to fetch" in r.output


def test_the_implicit_fetch_of_a_known_name_keeps_a_placed_archive(tmp_path, monkeypatch):
    def no_download(url, target):
        raise AssertionError("must not download over a placed file")

    monkeypatch.setattr(nasp.data, "_download", no_download)
    placed = tmp_path / "ml-100k.zip"
    placed.write_bytes(b"PK not the GroupLens archive")
    r = CliRunner().invoke(main, ["sif", "search", "--data", "ml-100k", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "--data " in r.output, r.output
    assert placed.read_bytes() == b"PK not the GroupLens archive" and not (tmp_path / "run").exists()

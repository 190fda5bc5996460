import json

from click.testing import CliRunner

import nasp.data
from cli import main


def test_data_list_shows_known_sets_and_presence(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t0\n")
    r = CliRunner().invoke(main, ["data", "list", "--data-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)["datasets"]}
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

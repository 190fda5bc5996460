"""benchmarks/recbole_files.py and the selftest's splitter: pure Python, RecBole not needed."""
import importlib.util
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


rf = _load("recbole_files")


def test_write_inter_header_and_rows(tmp_path):
    path = tmp_path / "sub" / "d.train.inter"
    assert rf.write_inter(path, [1, "u2"], [10, 20], ratings=[4, 3.5], timestamps=[100, 200]) == 2
    header, rows = rf.read_inter(path)
    assert header == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert rows == [["1", "10", "4.0", "100.0"], ["u2", "20", "3.5", "200.0"]]
    assert path.read_text().count("\t") == 3 * 3


def test_write_inter_ids_only(tmp_path):
    path = tmp_path / "d.test.inter"
    rf.write_inter(path, ["a"], ["b"])
    assert path.read_text() == "user_id:token\titem_id:token\na\tb\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_write_inter_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="length"):
        rf.write_inter(tmp_path / "x.inter", [1, 2], [1])
    with pytest.raises(ValueError, match="tab"):
        rf.write_inter(tmp_path / "x.inter", ["a\tb"], [1])
    with pytest.raises(ValueError, match="tab"):
        rf.write_inter(tmp_path / "x.inter", [""], [1])


def test_write_split_names_the_three_files(tmp_path):
    paths = rf.write_split(tmp_path, "ml", train=([1, 1], [2, 3]), valid=([1], [4]), test=([1], [5], [5.0]))
    assert paths == rf.split_paths(tmp_path, "ml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml.test.inter", "ml.train.inter", "ml.valid.inter"]
    assert rf.read_inter(paths["test"])[0][-1] == "rating:float"
    with pytest.raises(ValueError, match="missing"):
        rf.write_split(tmp_path, "ml", train=([1], [2]), valid=([1], [3]))


def test_selftest_per_user_split():
    st = _load("recbole_selftest")
    rng = random.Random(1)
    rows = [(str(u), str(i), 1.0, 0.0) for u in range(30) for i in rng.sample(range(500), rng.randint(1, 60))]
    parts = st.per_user_split(rows, seed=3)
    assert sorted(sum(parts.values(), [])) == sorted(rows)
    assert parts == st.per_user_split(rows, seed=3)
    n = Counter(r[0] for r in rows)
    for user, total in n.items():
        got = {k: sum(r[0] == user for r in v) for k, v in parts.items()}
        expect = max(int(0.1 * total), 1) if total >= 3 else int(0.1 * total)
        assert got["valid"] == got["test"] == expect
        assert got["train"] == total - 2 * expect


def test_recbole_python_absent_means_skip(tmp_path, monkeypatch):
    monkeypatch.delenv("RECBOLE_PYTHON", raising=False)
    assert rf.recbole_python(tmp_path / "no" / "python") is None
    monkeypatch.setenv("RECBOLE_PYTHON", str(tmp_path / "missing"))
    assert rf.recbole_python() is None
    with pytest.raises(FileNotFoundError, match="recbole_setup.sh"):
        rf.run_recbole(tmp_path, "d", "BPR", out=tmp_path / "o.json")


def test_run_recbole_passes_arguments_and_reads_json(tmp_path):
    # a stand-in for the venv's python: records its arguments and writes --out
    fake = tmp_path / "python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "if '--model' in args and args[args.index('--model') + 1] == 'bad':\n"
        "    print('boom', file=sys.stderr); sys.exit(3)\n"
        "json.dump({'argv': args}, open(args[args.index('--out') + 1], 'w'))\n"
    )
    fake.chmod(0o755)
    assert rf.recbole_python(fake) == str(fake)
    res = rf.run_recbole(tmp_path, "d", "NeuMF", seed=3, out=tmp_path / "o.json", epochs=5, topk=(10, 50),
                         threads=1, python=fake)
    argv = res["argv"]
    assert argv[0].endswith("recbole_run.py")
    pairs = dict(zip(argv[1::2], argv[2::2]))
    assert pairs["--split-dir"] == str(tmp_path) and pairs["--dataset"] == "d" and pairs["--model"] == "NeuMF"
    assert (pairs["--seed"], pairs["--epochs"], pairs["--topk"], pairs["--threads"]) == ("3", "5", "10,50", "1")
    assert argv[-1] == "--quiet"
    with pytest.raises(rf.RecBoleRunError) as err:
        rf.run_recbole(tmp_path, "d", "bad", out=tmp_path / "o.json", python=fake)
    assert "boom" in err.value.stderr

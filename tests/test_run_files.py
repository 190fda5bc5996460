"""The files of a run directory: one mode rule (the umask), strict JSON, and writes that fail in
one line (full disk, read-only directory) while the last good checkpoint stays intact."""
import errno
import json
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nasp.runs as runs
from nasp.cli import main
from nasp import NaspError
from nasp.runs import RunDir


def _ratings(path: Path) -> Path:
    """A tiny u.data: 40 users x 30 items, 900 ratings."""
    rng = np.random.default_rng(0)
    pairs = rng.choice(40 * 30, size=900, replace=False)
    path.write_text("".join(f"{p // 30 + 1}\t{p % 30 + 1}\t{rng.integers(1, 6)}\t{880000000 + k}\n" for k, p in enumerate(pairs)))
    return path


def _search(data: Path, out: Path, *extra: str):
    args = ["sif", "search", "--data", data, "--epochs", "3", "--warmup-epochs", "1", "--dim", "4", "--batch-size", "128",
            "--max-epochs", "2", "--out", out, "--json", *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def _comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if "seconds" not in k and not k.endswith("_per_second") and k != "run_dir"}


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_every_run_file_gets_the_mode_of_the_umask(tmp_path, mask):
    data = _ratings(tmp_path / "u.data")
    old = os.umask(mask)
    try:
        r = _search(data, tmp_path / "run")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert {"run/config.json", "run/summary.json", "run/arch.json", "run/search.json", "run/metrics.jsonl",
            "run/checkpoint.pt", "run/model.pt"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_metrics_and_summaries_are_strict_json(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_metrics({"epoch": 0, "loss": float("nan"), "x": torch.tensor(float("inf")), "ok": np.float32(1.5)})
    run.finish({"valid_rmse": float("nan"), "nested": {"a": [float("-inf"), 2.0]}})

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    assert strict((tmp_path / "r" / "metrics.jsonl").read_text()) == {"epoch": 0, "loss": None, "x": None, "ok": 1.5}
    summary = strict((tmp_path / "r" / "summary.json").read_text())
    assert summary.pop("seconds") >= 0 and summary.pop("seconds_this_process") >= 0
    assert summary == {"valid_rmse": None, "nested": {"a": [None, 2.0]}}
    assert run.read_metrics() == [{"epoch": 0, "loss": None, "x": None, "ok": 1.5}]


def test_a_torn_last_metrics_line_is_dropped(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_metrics({"epoch": 1, "loss": 1.0})
    run.append_metrics({"epoch": 2, "loss": 0.5})
    with open(tmp_path / "r" / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "lo')  # a crash in the middle of a write
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    run.truncate_metrics(1)  # one epoch checkpointed: its row stays, later ones go
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == '{"epoch": 1, "loss": 1.0}\n'


def _fail_on(monkeypatch, calls: int, name: str, code: int = errno.ENOSPC):
    """Make the ``calls``-th write of a file whose name contains ``name`` raise OSError(code)."""
    original, seen = runs._write, []

    def write(fh, data, path):
        if Path(path).name == name:
            seen.append(1)
            if len(seen) == calls:
                raise OSError(code, os.strerror(code))
        return original(fh, data, path)

    monkeypatch.setattr(runs, "_write", write)


def test_a_full_disk_is_one_line_and_resume_finishes_identically(tmp_path, monkeypatch):
    data = _ratings(tmp_path / "u.data")
    full = _search(data, tmp_path / "full")
    assert full.exit_code == 0, full.output
    out = tmp_path / "run"
    _fail_on(monkeypatch, 2, "checkpoint.pt")  # the checkpoint after epoch 2 (its metrics row is written)
    r = _search(data, out)
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {out / 'checkpoint.pt'}: cannot write: No space left on device (the disk is full)"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 0  # the last good one, intact
    assert not [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.pt")]  # no temporary left
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # epoch 2's row is beyond the checkpoint
    monkeypatch.undo()
    r = CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert _comparable(json.loads(r.stdout)) == _comparable(json.loads(full.stdout))
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_full_disk_while_appending_metrics_keeps_whole_lines(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "r")
    run.append_metrics({"epoch": 0})
    original = runs._write

    def half(fh, data, path):
        original(fh, data[: len(data) // 2], path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs, "_write", half)
    with pytest.raises(NaspError, match=r"metrics.jsonl: cannot write: No space left on device \(the disk is full\)"):
        run.append_metrics({"epoch": 1, "loss": 2.0})
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == '{"epoch": 0}\n'


def test_a_read_only_out_is_one_line(tmp_path, monkeypatch):
    data = _ratings(tmp_path / "u.data")
    _fail_on(monkeypatch, 1, "config.json", errno.EROFS)
    r = _search(data, tmp_path / "run")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {tmp_path / 'run' / 'config.json'}: cannot write: Read-only file system"]


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs, where this machine lets the tests mount one (root in a container)."""
    point = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_real_full_disk_and_a_real_read_only_directory(tmpfs):
    run = RunDir(tmpfs / "run")
    run.write_config({"command": "x"})
    run.save_checkpoint({"epoch": 0, "w": torch.zeros(1000)})
    with pytest.raises(NaspError) as err:
        run.save_checkpoint({"epoch": 1, "w": torch.zeros(1_000_000)})  # 4 MB on a 2 MiB disk
    assert str(err.value) == f"{tmpfs / 'run' / 'checkpoint.pt'}: cannot write: No space left on device (the disk is full)"
    assert torch.load(tmpfs / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 0
    run.close()
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode == 0
    with pytest.raises(NaspError, match="Read-only file system"):
        RunDir(tmpfs / "run", resume=True)
    with pytest.raises(NaspError, match=f"{tmpfs / 'new'}: cannot create the run directory: Read-only file system"):
        RunDir(tmpfs / "new")


def test_save_torch_reports_a_full_disk_in_one_line(tmp_path, monkeypatch):
    runs.save_torch(tmp_path / "model.pt", {"w": torch.ones(2)})
    _fail_on(monkeypatch, 1, "model.pt")
    with pytest.raises(NaspError, match=r"model.pt: cannot write: No space left on device \(the disk is full\)$"):
        runs.save_torch(tmp_path / "model.pt", {"w": torch.zeros(2)})
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], torch.ones(2))


@pytest.mark.parametrize("first", [1, 0])  # 0: a run directory written before epochs counted from 1
def test_truncate_keeps_the_rows_of_the_checkpointed_epochs(tmp_path, first):
    run = RunDir(tmp_path / "r")
    for epoch in range(first, first + 4):
        run.append_metrics({"epoch": epoch})
    run.truncate_metrics(2)
    assert [r["epoch"] for r in run.read_metrics()] == [first, first + 1]
    run.truncate_metrics(0)
    assert run.read_metrics() == []


def test_a_full_disk_when_the_sif_model_is_saved_is_one_line(tmp_path, monkeypatch):
    data = _ratings(tmp_path / "u.data")
    _fail_on(monkeypatch, 1, "model.pt")
    r = _search(data, tmp_path / "run")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {tmp_path / 'run' / 'model.pt'}: cannot write: No space left on device (the disk is full)"]
    assert not (tmp_path / "run" / "summary.json").exists()


# tampered or changed run files: one line naming the file --------------------------------------
def _unfinished(tmp_path: Path) -> tuple[Path, Path]:
    """A 2-epoch search (no retraining) made to look killed after its last checkpoint."""
    data = _ratings(tmp_path / "u.data")
    out = tmp_path / "run"
    args = ["sif", "search", "--data", data, "--epochs", "2", "--warmup-epochs", "1", "--no-retrain", "--dim", "4",
            "--batch-size", "128", "--out", out]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    for name in ("summary.json", "search.json"):
        (out / name).unlink()
    return data, out


def _resume(out: Path):
    return CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(out), "--json", "-q"])


def _error(r) -> str:
    """The one ``Error:`` line of a failed command (no traceback)."""
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.output, r.output
    return lines[0]


def _tamper(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("key, value, says", [
    ("epoch", -1, "entry 'epoch' is -1, not an epoch of this run (0..1)"),
    ("epoch", 10**9, "entry 'epoch' is 1000000000"),
    ("stopped", "yes", "entry 'stopped' is 'yes', expected true or false"),
    ("run_seconds", -5.0, "entry 'run_seconds' is -5.0"),
])
def test_a_checkpoint_with_counts_out_of_range_is_one_line(tmp_path, key, value, says):
    _, out = _unfinished(tmp_path)
    _tamper(out / "checkpoint.pt", lambda s: s.__setitem__(key, value))
    assert _error(_resume(out)).startswith(f"Error: {out / 'checkpoint.pt'}: {says}")


def test_a_checkpoint_with_int64_embeddings_or_history_out_of_range_is_one_line(tmp_path):
    _, out = _unfinished(tmp_path)
    path = out / "checkpoint.pt"
    original = torch.load(path, weights_only=True)
    _tamper(path, lambda s: s["network"].__setitem__("item_emb.weight", s["network"]["item_emb.weight"].long()))
    assert f"{path}: does not fit this run ('item_emb.weight' is torch.int64, expected torch.float32)" in _error(_resume(out))
    assert "user_history.neighbours" in original["network"]
    torch.save(original, path)
    _tamper(path, lambda s: s["network"]["user_history.neighbours"].add_(10**6))
    assert f"{path}: does not fit this run (history ids out of range)" in _error(_resume(out))
    torch.save(original, path)
    _tamper(path, lambda s: s["network"]["user_history.indptr"].__setitem__(1, 10**6))
    assert "history offsets out of range" in _error(_resume(out))


@pytest.mark.parametrize("name, content, says", [
    ("metrics.jsonl", b'{"epoch": "one", "train_loss": 1.0}\n', "line 1: 'epoch' is \"one\", not a count of epochs (0, 1, ...)"),
    ("metrics.jsonl", b'{"epoch": 1}\n\xff\xfe\n', "not a metrics file (not UTF-8 text: byte 13)"),
    ("config.json", b'{"command": "sif-search\xff"}', "not a run config (not UTF-8 text: byte 23)"),
    ("config.json", b"{}", "not a nasp run config (no 'command' entry)"),
])
def test_a_tampered_metrics_or_config_file_is_one_line(tmp_path, name, content, says):
    _, out = _unfinished(tmp_path)
    (out / name).write_bytes(content)
    assert _error(_resume(out)) == f"Error: {out / name}: {says}"


def test_a_resume_on_changed_data_is_refused_and_the_same_data_resumes(tmp_path):
    data, out = _unfinished(tmp_path)
    config = json.loads((out / "config.json").read_text())
    assert config["data_files"][str(data.resolve())]["size"] == data.stat().st_size
    original = data.read_text()
    lines = [line.split("\t") for line in original.splitlines()]
    data.write_text("".join("\t".join([u, i, str(6 - int(r)), t]) + "\n" for u, i, r, t in lines))  # same ids, other values
    assert _error(_resume(out)) == (f"Error: --resume: {data.resolve()} changed since the run started (other size or "
                                    "contents); resume on the same data or start a new run")
    data.unlink()
    assert "is gone" in _error(_resume(out))
    data.write_text(original)
    r = _resume(out)
    assert r.exit_code == 0, r.output


def test_known_data_set_names_resolve_to_their_files(tmp_path):
    import sif.data  # noqa: F401  (registers the MovieLens names)
    from nasp.data import data_files, fingerprint

    assert data_files("ml-100k", tmp_path) == []  # absent: nothing to fingerprint
    ratings = _ratings((tmp_path / "ml-100k").mkdir() or tmp_path / "ml-100k" / "u.data")
    assert data_files("ml-100k", tmp_path) == [ratings]
    assert fingerprint(ratings)["size"] == ratings.stat().st_size
    assert fingerprint(tmp_path / "ml-100k") != fingerprint(ratings)  # a folder: names and contents


def test_seconds_cover_every_process_of_a_resumed_run(tmp_path):
    _, out = _unfinished(tmp_path)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["run_seconds"] > 0
    _tamper(out / "checkpoint.pt", lambda s: s.__setitem__("run_seconds", 1000.0))  # as if earlier processes took 1000 s
    r = _resume(out)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["seconds"] >= 1000 > summary["seconds_this_process"] > 0
    assert json.loads((out / "summary.json").read_text())["seconds"] == summary["seconds"]


def test_a_data_folder_is_fingerprinted_without_hidden_files_or_run_directories(tmp_path):
    from nasp.data import fingerprint

    _ratings(tmp_path / "u.data")
    before = fingerprint(tmp_path)
    RunDir(tmp_path / "runs" / "r").write_config({"command": "sif-search"})  # --data . beside its own runs
    (tmp_path / ".cache").write_text("x")
    assert fingerprint(tmp_path) == before
    (tmp_path / "u.item").write_text("1|Movie\n")
    assert fingerprint(tmp_path) != before

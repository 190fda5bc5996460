"""One writer per run directory: an advisory lock that names its holder and dies with it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nasp.cli import main
from nasp import NaspError
from nasp.runs import LOCK, RunDir

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from nasp.runs import RunDir
run = RunDir(sys.argv[1], resume=sys.argv[2] == "resume")
if not run.resume:
    run.write_config({"command": "sif-search", "options": {}})
print("locked", flush=True)
time.sleep(60)
"""


def _holder(path: Path, resume: bool = False) -> subprocess.Popen:
    """A second process that opens ``path`` as a run and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "resume" if resume else "new"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    line = proc.stdout.readline()
    assert line.strip() == "locked", proc.stderr.read()
    return proc


def _ratings(path: Path) -> Path:
    """A tiny u.data: 40 users x 30 items, 900 ratings."""
    rng = np.random.default_rng(0)
    pairs = rng.choice(40 * 30, size=900, replace=False)
    path.write_text("".join(f"{p // 30 + 1}\t{p % 30 + 1}\t{rng.integers(1, 6)}\t{880000000 + k}\n" for k, p in enumerate(pairs)))
    return path


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    out = tmp_path / "run"
    args = ["sif", "search", "--data", str(_ratings(tmp_path / "u.data")), "--epochs", "2", "--no-retrain", "--dim", "4",
            "--batch-size", "128", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    for name in ("summary.json", "search.json"):
        (out / name).unlink()  # as if killed before the end
    proc = _holder(out, resume=True)
    try:
        with pytest.raises(NaspError) as err:
            RunDir(out, resume=True)
        message = str(err.value)
        assert f"pid {proc.pid} on " in message and "started " in message and str(out) in message
        assert "\n" not in message
        # through the command line: one line naming the holder, exit 1, nothing written
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        r = CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(out)])
        assert r.exit_code == 1
        assert r.output.count("\n") == 1 and r.output.startswith(f"Error: {out}: in use by pid {proc.pid} on ")
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    finally:
        proc.kill()
        proc.wait()
    # the lock died with its process: the run can be resumed now
    r = CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "summary.json").exists()


def test_two_resumes_of_one_run_in_one_process_conflict_until_released(tmp_path):
    first = RunDir(tmp_path / "r")
    first.write_config({})
    with pytest.raises(NaspError, match=f"in use by pid .* on "):
        RunDir(tmp_path / "r", resume=True)
    first.close()
    RunDir(tmp_path / "r", resume=True).close()


def test_a_fresh_run_racing_for_the_same_out_is_refused(tmp_path):
    out = tmp_path / "new"
    proc = _holder(out)
    try:
        with pytest.raises(NaspError, match="in use by pid|not empty"):
            RunDir(out)
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_file_alone_does_not_make_a_directory_a_run(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / LOCK).write_text("pid 1 on gone (started long ago)\n")  # left by a run killed before its config
    RunDir(out).close()  # a new run may use it


def test_a_lock_replaced_by_a_link_is_refused_and_its_target_untouched(tmp_path):
    out = tmp_path / "run"
    RunDir(out).close()
    victim = tmp_path / "notes.txt"
    victim.write_text("the user's own file\n")
    (out / LOCK).unlink()
    (out / LOCK).symlink_to(victim)
    (out / "config.json").write_text('{"command": "sif-search", "options": {}}')
    with pytest.raises(NaspError, match=r"\.lock: is a symbolic link, not this run's lock file; remove it$"):
        RunDir(out, resume=True)
    assert victim.read_text() == "the user's own file\n"

"""The root `nasp` group and the run options every domain shares."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nasp.cli import main


def test_version_help_and_verbose():
    runner = CliRunner()
    r = runner.invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("nasp, version ")
    r = runner.invoke(main, ["--help"])
    assert r.exit_code == 0
    for group in ("sif", "rnn", "data"):
        assert group in r.output
    r = runner.invoke(main, ["-h"])
    assert r.exit_code == 0 and "Usage" in r.output
    r = runner.invoke(main, ["-vv", "data", "list", "--json"])
    assert r.exit_code == 0


def test_unknown_command_is_a_usage_error():
    r = CliRunner().invoke(main, ["nope"])
    assert r.exit_code == 2 and "No such command 'nope'" in r.output


def test_resume_with_a_malformed_config_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"command": "sif-search",\n oops')
    r = CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(run), "--data", "x"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {run / 'config.json'}: line 2: not valid JSON (Expecting property name enclosed in double quotes)"]


def test_resume_needs_out_and_a_run_of_the_same_command(tmp_path):
    r = CliRunner().invoke(main, ["sif", "search", "--resume", "--data", "x"])
    assert r.exit_code == 1 and "--resume needs --out" in r.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"command": "rnn-search", "options": {}}')
    r = CliRunner().invoke(main, ["sif", "search", "--resume", "--out", str(run), "--data", "x"])
    assert r.exit_code == 1 and "is a 'rnn-search' run, not 'sif-search'" in r.output


def _ratings(path):
    """A tiny u.data: 40 users x 30 items, 900 ratings."""
    import numpy as np

    rng = np.random.default_rng(0)
    pairs = rng.choice(40 * 30, size=900, replace=False)
    path.write_text("".join(f"{p // 30 + 1}\t{p % 30 + 1}\t{rng.integers(1, 6)}\t{880000000 + k}\n" for k, p in enumerate(pairs)))
    return path


def _search(tmp_path, *flags, before=()):
    args = [*before, "sif", "search", "--data", str(_ratings(tmp_path / "u.data")), "--epochs", "3", "--no-retrain",
            "--dim", "4", "--out", str(tmp_path / "run"), "--json", *flags]
    return CliRunner().invoke(main, args)


def test_one_line_per_epoch_on_stderr_by_default_and_quiet_with_q_after_the_subcommand(tmp_path, monkeypatch):
    monkeypatch.delenv("NASP_QUIET", raising=False)
    r = _search(tmp_path)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stderr.splitlines() if " epoch " in line]
    assert len(lines) == 3 and "epoch 1/3  train_loss " in lines[0] and "valid_rmse" in lines[2], r.stderr
    assert "interaction" in json.loads(r.stdout)  # stdout stays the summary alone
    for flags, before in ((["-q"], ()), ([], ["-q"]), (["--quiet"], ["-v"])):
        shutil.rmtree(tmp_path / "run")
        r = _search(tmp_path, *flags, before=before)
        assert r.exit_code == 0 and r.stderr == "", (flags, before, r.stderr)
    shutil.rmtree(tmp_path / "run")
    monkeypatch.setenv("NASP_QUIET", "1")  # as -q, unless -v is typed
    assert _search(tmp_path).stderr == ""
    shutil.rmtree(tmp_path / "run")
    assert len([line for line in _search(tmp_path, "-v").stderr.splitlines() if " epoch " in line]) == 3


def test_verbose_after_the_subcommand(tmp_path, monkeypatch):
    monkeypatch.delenv("NASP_QUIET", raising=False)
    r = _search(tmp_path, "-v")
    assert r.exit_code == 0 and len([line for line in r.stderr.splitlines() if " epoch " in line]) == 3
    import logging

    assert logging.getLogger("nasp").level == logging.DEBUG


def test_ctrl_c_in_a_command_is_one_line_and_exit_130(tmp_path, monkeypatch):
    import nasp.runs

    monkeypatch.delenv("NASP_QUIET", raising=False)
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nasp.runs.RunDir, "save_checkpoint", interrupted)
    r = _search(tmp_path)
    assert r.exit_code == 130 and r.stderr.strip().splitlines()[-1] == "Interrupted.", r.stderr
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "run")
    calls = []

    def second_interrupted(self, state):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, state)

    original = nasp.runs.RunDir.save_checkpoint
    monkeypatch.setattr(nasp.runs.RunDir, "save_checkpoint", second_interrupted)
    r = _search(tmp_path)
    assert r.exit_code == 130
    assert r.stderr.strip().splitlines()[-1] == f"Interrupted; continue the run with --resume --out {tmp_path / 'run'}"


@pytest.mark.parametrize("delay", [0.2, 0.5])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(delay):
    """SIGINT while the command loads torch and the domains (about 2 s): no traceback."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(root / "cli.py"), "data", "list"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the start-up finished before the signal came")
    assert proc.returncode == 130 and err == "Interrupted.\n", err


def _training_commands():
    from nasp.commands import RunCommand

    return [(f"{g} {n}", c) for g, group in main.commands.items() if hasattr(group, "commands")
            for n, c in group.commands.items() if isinstance(c, RunCommand)]


def test_help_texts_of_every_training_command_have_one_form():
    import click

    from nasp.commands import HELP_LAST

    commands = _training_commands()
    assert sorted(name for name, _ in commands) == ["cnn search", "cnn train", "rnn search", "rnn train", "sif search", "sif train"]
    for name, command in commands:
        r = CliRunner().invoke(main, [*name.split(), "--help"], terminal_width=100)
        assert r.exit_code == 0
        first = command.help.strip().split("\n\n")[0]
        assert first[0].isupper() and first.endswith(".") and "\n" not in first and len(first) <= 65, (name, first)
        assert "..." not in command.get_short_help_str(70), name
        flags = [line.split()[0].rstrip(",") for line in r.output.split("Options:")[1].splitlines()
                 if line.startswith("  -")]
        shared = [f for f in flags if f.lstrip("-") in {n.replace("as_json", "json") for n in HELP_LAST} or f in ("-q", "-v")]
        assert flags[-len(shared) - 1:] == [*shared, "-h"], (name, flags)  # shared options last, in one order
        assert shared == ["--threads", "--seed", "--device", "--out", "--json", "--resume", "-q", "-v"], (name, shared)
        ctx = click.Context(command, info_name=name, show_default=True)
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and param.default is not getattr(click.core, "UNSET", None) \
                    and param.default not in (None, False, 0):
                assert "[default:" in param.get_help_record(ctx)[1], (name, param.name)  # every default shown
    for group in ("sif", "cnn", "rnn", "data"):
        assert "..." not in main.commands[group].get_short_help_str(70), group


def test_domains_mount_through_entry_points_listed_once_in_setup_py():
    import ast
    from pathlib import Path

    import nasp.cli as cli

    tree = ast.parse((Path(cli.__file__).parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    declared = dict(e.replace(" ", "").split("=") for e in entry_points[cli.DOMAINS])
    assert declared == cli.BUILTIN_DOMAINS  # the fallback for an uninstalled tree is the same list
    assert set(cli.main.commands) >= set(declared)


def test_a_domain_that_fails_to_load_is_one_warning_and_the_others_still_mount(monkeypatch, capsys):
    import click

    import nasp.cli as cli

    def broken():
        raise ImportError("no module named 'foo'")

    monkeypatch.setattr(cli, "_domain_groups", lambda: {"foo": broken, "extra": lambda: click.Group("extra")})
    group = click.Group("nasp")
    cli._mount(group)
    assert "extra" in group.commands and "foo" not in group.commands
    assert capsys.readouterr().err.strip() == "Warning: domain 'foo' not loaded (ImportError: no module named 'foo')"


def test_threads_above_the_cpu_count_are_lowered_to_it_with_one_warning(tmp_path):
    from nasp.options import cpu_count

    cpus = cpu_count()
    r = _search(tmp_path, "--threads", "100000", "-q")
    assert r.exit_code == 0, r.output
    assert f"--threads 100000: this process may use {cpus} CPU(s); using {cpus} threads" in r.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["threads"] == cpus


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999", str(2**32)])
def test_a_seed_outside_0_to_2_32_is_refused_before_the_run(tmp_path, seed):
    r = _search(tmp_path, "--seed", seed)
    assert r.exit_code == 2 and "Invalid value for '--seed'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_the_process_group_timeout_comes_from_the_environment_and_is_named_in_the_error(monkeypatch):
    import torch.distributed as dist

    from nasp import distributed
    from nasp.errors import NaspError

    monkeypatch.delenv("NASP_DIST_TIMEOUT", raising=False)
    assert distributed.process_group_timeout() == distributed.DEFAULT_TIMEOUT
    monkeypatch.setenv("NASP_DIST_TIMEOUT", "7")
    assert distributed.process_group_timeout() == 7
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    message = distributed.lost_peer(dist.DistError("Timed out waiting 7000ms for recv operation (gloo)"))
    assert message == ("rank 1: another process of this run stopped or did not answer within 7 s ($NASP_DIST_TIMEOUT), "
                       "so this one stops too (its own message says why)")
    for bad in ("0", "-3", "soon"):
        monkeypatch.setenv("NASP_DIST_TIMEOUT", bad)
        with pytest.raises(NaspError, match=r"\$NASP_DIST_TIMEOUT = .*: not a whole number of seconds >= 1"):
            distributed.process_group_timeout()


def test_importing_the_command_changes_nothing_in_the_process():
    """``import nasp.cli`` swaps no signal handler, tunes no allocator and loads neither torch nor
    a domain: all of that waits for ``main`` (the console script)."""
    code = ("import signal, sys\n"
            "import nasp.devices as d\n"  # (torch comes with it: only the allocator is watched here)
            "calls = []\n"
            "d.tune_host_allocator = lambda: calls.append(1)\n"
            "before = signal.getsignal(signal.SIGINT)\n"  # (ignored already where a shell started us in the background)
            "import nasp.cli\n"
            "assert signal.getsignal(signal.SIGINT) is before\n"
            "assert not calls and not nasp.cli.main._loaded\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=120)
    light = "import sys, nasp, nasp.cli; assert 'torch' not in sys.modules and nasp.__version__"
    subprocess.run([sys.executable, "-c", light], check=True, env=env, cwd=root, timeout=120)


def test_help_through_the_package_entry_point():
    """``nasp = nasp.cli:main`` (setup.py) answers --help; the root cli.py is the same command."""
    import ast

    import cli as shim
    from nasp import __version__
    from nasp.cli import main as command

    assert shim.main is command
    r = CliRunner().invoke(command, ["--help"])
    assert r.exit_code == 0 and "Usage" in r.output and all(g in r.output for g in ("sif", "cnn", "rnn", "data"))
    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    assert ast.literal_eval(keywords["entry_points"])["console_scripts"] == ["nasp=nasp.cli:main"]
    assert ast.literal_eval(keywords["name"]) == "nasp-proximal" and "py_modules" not in keywords
    assert CliRunner().invoke(command, ["--version"]).output.strip() == f"nasp, version {__version__}"

"""The root `nasp` group and the run options every domain shares."""
from click.testing import CliRunner

from cli import main


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

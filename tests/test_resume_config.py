"""--resume trusts nothing it reads back: a tampered config.json or checkpoint.pt is one Error line,
and ``--resume --out DIR`` alone continues every command that trains, refusing conflicting options."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nasp.cli import main


def _ratings(path: Path) -> Path:
    """A tiny u.data: 40 users x 30 items, 900 ratings."""
    rng = np.random.default_rng(0)
    pairs = rng.choice(40 * 30, size=900, replace=False)
    path.write_text("".join(f"{p // 30 + 1}\t{p % 30 + 1}\t{rng.integers(1, 6)}\t{880000000 + k}\n" for k, p in enumerate(pairs)))
    return path


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory) -> Path:
    """A sif search run (2 epochs) made unfinished: as if killed after its last checkpoint."""
    folder = tmp_path_factory.mktemp("resume")
    out = folder / "run"
    r = _invoke("sif", "search", "--data", _ratings(folder / "u.data"), "--epochs", "2", "--no-retrain", "--dim", "4",
                "--batch-size", "128", "--out", out)
    assert r.exit_code == 0, r.output
    (out / "summary.json").unlink()
    (out / "search.json").unlink()
    return out


def _copy(unfinished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(unfinished, out)
    return out


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _tamper(config: dict, change) -> dict:
    config = json.loads(json.dumps(config))
    change(config)
    return config


TAMPERED = {
    # name: (change to config.json, what the line must name)
    "epochs as a word": (lambda c: c["options"].update(epochs="three"), "option --epochs"),
    "epochs as a fraction": (lambda c: c["options"].update(epochs=2.5), "option --epochs"),
    "epochs as true": (lambda c: c["options"].update(epochs=True), "option --epochs"),
    "max_epochs null": (lambda c: c["options"].update(max_epochs=None), "option --max-epochs"),  # --epochs may be null (its default)
    "negative dim": (lambda c: c["options"].update(dim=-4), "option --dim"),
    "batch_size 0": (lambda c: c["options"].update(batch_size=0), "option --batch-size"),
    "lr as a list": (lambda c: c["options"].update(lr=[0.1]), "option --lr"),
    "unknown strategy": (lambda c: c["options"].update(strategy="bogus"), "option --strategy"),
    "missing strategy": (lambda c: c["options"].pop("strategy"), "option --strategy is missing"),
    "missing options": (lambda c: c.pop("options"), "'options' is missing"),
    "options a list": (lambda c: c.update(options=list(c["options"].items())), "'options' is not a JSON object"),
    "unknown option": (lambda c: c["options"].update(colour="blue"), "unknown option 'colour'"),
    "data null": (lambda c: c["options"].update(data=None), "option --data"),
    "refit as a number": (lambda c: c["options"].update(refit=7), "option --refit"),
    "warm-up negative": (lambda c: c["options"].update(warmup_epochs=-1), "option --warmup-epochs"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_config_is_one_line_naming_the_file_and_option(unfinished, tmp_path, case):
    out = _copy(unfinished, tmp_path)
    change, expected = TAMPERED[case]
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(_tamper(config, change)))
    line = _one_error_line(_invoke("sif", "search", "--resume", "--out", out))
    assert str(out / "config.json") in line and expected in line, line
    assert not (out / "summary.json").exists()


def test_a_config_that_is_not_an_object_is_one_line(unfinished, tmp_path):
    out = _copy(unfinished, tmp_path)
    (out / "config.json").write_text("[1, 2]")
    line = _one_error_line(_invoke("sif", "search", "--resume", "--out", out))
    assert str(out / "config.json") in line and "expected an object" in line


def test_a_value_the_command_line_accepts_is_accepted(unfinished, tmp_path):
    out = _copy(unfinished, tmp_path)
    config = json.loads((out / "config.json").read_text())
    config["options"]["epochs"] = "2"  # what a shell would pass: click converts it
    (out / "config.json").write_text(json.dumps(config))
    r = _invoke("sif", "search", "--resume", "--out", out, "--json")
    assert r.exit_code == 0, r.output


def _tamper_checkpoint(out: Path, change) -> None:
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state = change(state)
    torch.save(state, out / "checkpoint.pt")


CHECKPOINTS = {
    "no network": (lambda s: {k: v for k, v in s.items() if k != "network"}, "no 'network' entry"),
    "network a list": (lambda s: {**s, "network": [1, 2]}, "entry 'network' is a list, expected dict"),
    "epoch a string": (lambda s: {**s, "epoch": "1"}, "entry 'epoch' is a str, expected int"),
    "not a dict": (lambda s: [s["epoch"]], "not a checkpoint"),
    "wrong shapes": (lambda s: {**s, "network": {k: torch.zeros(1) for k in s["network"]}}, "does not fit this run"),
    "strategy empty": (lambda s: {**s, "strategy": {}}, "does not fit this run"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_a_tampered_checkpoint_is_one_line(unfinished, tmp_path, case):
    out = _copy(unfinished, tmp_path)
    change, expected = CHECKPOINTS[case]
    _tamper_checkpoint(out, change)
    line = _one_error_line(_invoke("sif", "search", "--resume", "--out", out))
    assert str(out / "checkpoint.pt") in line and expected in line, line


def test_resume_refuses_conflicting_options_by_name_and_honours_threads(unfinished, tmp_path):
    out = _copy(unfinished, tmp_path)
    line = _one_error_line(_invoke("sif", "search", "--resume", "--out", out, "--data", tmp_path / "other.data"))
    assert line.startswith(f"Error: --data {tmp_path / 'other.data'}: conflicts with the resumed run's ") and "u.data" in line
    line = _one_error_line(_invoke("sif", "search", "--resume", "--out", out, "--epochs", "5"))
    assert line.startswith("Error: --epochs 5: conflicts with the resumed run's 2")
    saved = json.loads((out / "config.json").read_text())["options"]
    # the same value again is no conflict; --threads and --device may change, and are recorded
    r = _invoke("sif", "search", "--resume", "--out", out, "--data", saved["data"], "--epochs", "2", "--threads", "2",
                "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["threads"] == 2 and config["options"]["data"] == saved["data"]
    assert config["resumes"][-1]["changed"] == {"threads": 2, "device": "cpu"}
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)

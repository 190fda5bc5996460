"""What every domain's Click commands share: the run options and the start/finish of a run.

A domain command stays short::

    @click.command()
    @run_options          # --seed --device --out --json
    @resume_option        # --resume (search commands)
    def search(**opts):
        run, opts = start_run("sif-search", opts)
        ...
        finish_run(run, summary, opts["json"])
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from pathlib import Path
from typing import Callable

import click
import torch

from . import __version__
from .errors import NaspError
from .runs import RunDir, resolve_device, seed_everything


def run_options(f: Callable) -> Callable:
    """``--seed``, ``--device``, ``--out``, ``--json`` (every command that trains)."""
    f = click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout as one JSON object (logs go to stderr).")(f)
    f = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Run directory to write (default: runs/<command>-<time>).")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (runs on CPU are reproducible).")(f)
    return f


def resume_option(f: Callable) -> Callable:
    return click.option("--resume", is_flag=True,
                        help="Continue the unfinished run in --out from its last checkpoint, with its saved options.")(f)


def threads_option(default: int | None = None) -> Callable[[Callable], Callable]:
    """``--threads``: CPU threads for torch (small models run fastest on one)."""
    help_default = f"{default}" if default else "torch's default"
    return click.option("--threads", type=click.IntRange(min=1), default=default,
                        help=f"CPU threads used by torch (default: {help_default}).")


def data_dir_option(f: Callable) -> Callable:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data root for known names (default: $NASP_DATA_DIR, else ./datasets).")(f)


class WarmupEpochs(click.ParamType):
    """``--warmup-epochs``: a count of epochs (>= 0) or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if value is None or isinstance(value, int) or value == "auto":
            return value
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            self.fail(f"{value!r} is not a count of epochs (0, 1, ...) or 'auto'", param, ctx)
        return number


WARMUP_EPOCHS = WarmupEpochs()


def default_out(command: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{command}-{stamp}"


def _jsonable(options: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def start_run(command: str, options: dict, resume_keep: tuple[str, ...] = ("device", "as_json", "out", "resume")) -> tuple[RunDir, dict, torch.device]:
    """Open the run directory, reload saved options on ``--resume``, seed, resolve the device,
    and write ``config.json``. Returns (run, options, device)."""
    if options.get("resume") and options.get("out") is None:
        raise NaspError("--resume needs --out: the run directory to continue")
    out = options.get("out") or default_out(command)
    device = resolve_device(options.get("device", "auto"))
    run = RunDir(out, resume=bool(options.get("resume")))
    if run.resume:
        saved = run.read_config()
        if saved.get("command") != command:
            raise NaspError(f"--resume: {out} is a {saved.get('command')!r} run, not {command!r}")
        options = {**saved["options"], **{k: options[k] for k in resume_keep if k in options}}
    options["out"] = out
    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    seed_everything(int(options.get("seed", 0)))
    config = {
        "command": command,
        "options": _jsonable(options),
        "nasp_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "argv": sys.argv[1:],
    }
    if not run.resume:
        run.write_config(config)
    return run, options, device


def finish_run(run: RunDir, summary: dict, as_json: bool) -> None:
    """Write ``summary.json`` last, then print it (JSON on stdout with ``--json``)."""
    summary = {**summary, "run_dir": str(run.path)}
    run.finish(summary)
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        for key, value in summary.items():
            if isinstance(value, float):
                value = f"{value:.4f}"
            if not isinstance(value, (dict, list)):
                click.echo(f"{key:>20s}  {value}")

"""The command-line options of the settings: Click options generated from the ``setting`` fields of
the config dataclasses (``options_from``, ``check_settings``), the settings every command that
trains shares (``RunOptions``) and the decorators built from them (``run_options``,
``threads_option``, ...), and the Click parameter types of rates, weights, budgets and warm-up.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import click

from .config import MAX_RATE, MAX_SEED, RunConfig, setting, setting_meta
from .data import DATA_ROOT_DEFAULT
from .errors import NaspError


def output_options(f: Callable) -> Callable:
    """``--out`` and ``--json``: where one invocation writes (never saved with the run's settings)."""
    f = click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout as one JSON object (logs go to stderr).")(f)
    return click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Run directory to write (default: runs/<command>-<time>).")(f)


def run_options(f: Callable) -> Callable:
    """``--seed``, ``--device``, ``--deterministic``, ``--out``, ``--json`` (every command that trains)."""
    return options_from(RunOptions, names=("seed", "device", "deterministic"))(output_options(f))


def amp_option(f: Callable) -> Callable:
    """``--amp``: bfloat16 autocast of the training forward passes on CUDA (an error on the CPU)."""
    return options_from(RunOptions, names=("amp",))(f)


def resume_option(f: Callable) -> Callable:
    return click.option("--resume", is_flag=True,
                        help="Continue the unfinished run in --out from its last checkpoint with its saved options "
                             "(only --threads and --device may change; other options given must match).")(f)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_threads(threads: int) -> int:
    """``threads``, or the CPU count with a one-line warning when it asks for more (tens of
    thousands of threads crashed torch's thread pool)."""
    cpus = cpu_count()
    if threads > cpus:
        logging.getLogger("nasp").warning("--threads %d: this process may use %d CPU(s); using %d threads", threads, cpus, cpus)
        return cpus
    return threads


def threads_option(f: Callable) -> Callable:
    """``--threads``: CPU threads for torch (``RunOptions.threads``)."""
    return options_from(RunOptions, names=("threads",))(f)


def data_dir_option(f: Callable) -> Callable:
    """``--data-dir``: the data root for known names (``RunOptions.data_dir``)."""
    return options_from(RunOptions, names=("data_dir",))(f)


@dataclasses.dataclass
class RunOptions(RunConfig):
    """The settings every command that trains shares, declared once (``nasp.config.setting``)."""

    seed: int = setting(0, f"Random seed, 0 to {MAX_SEED} (runs on CPU are reproducible).", type=click.IntRange(0, MAX_SEED))
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda or cuda:N (under torchrun: cuda, each rank on its own).",
                          type=click.STRING)
    deterministic: bool = setting(False, "Deterministic algorithms (cuDNN, cuBLAS), so that a CUDA run repeats exactly with the "
                                  "same seed (CPU runs repeat anyway); an op without a deterministic kernel is then an error.")
    #: 1 never oversubscribes: on a 2-core machine shared with other jobs, torch's own default (one
    #: thread per core) made a short ``sif train`` 10x and a ``cnn search`` epoch 7x slower
    threads: int = setting(1, "CPU threads used by torch, at most the CPUs this process may use (more: a warning, and that "
                           "count); more help only big models on an idle machine (may change on --resume).",
                           type=click.IntRange(min=1),
                           callback=lambda ctx, param, value: None if value is None else usable_threads(value))
    amp: bool = setting(False, "bfloat16 autocast of the forward passes on CUDA (loss in float32, no gradient scaler); an error "
                        "on the CPU.")
    data_dir: Optional[Union[str, Path]] = setting(None, f"Data root for known names (default: {DATA_ROOT_DEFAULT}).",
                                                   type=click.Path(file_okay=False, path_type=Path))


class WarmupEpochs(click.ParamType):
    """``--warmup-epochs``: a count of epochs (>= 0) or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or isinstance(value, float):
            self.fail(f"{value!r} is not a count of epochs (0, 1, ...) or 'auto'", param, ctx)
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            self.fail(f"{value!r} is not a count of epochs (0, 1, ...) or 'auto'", param, ctx)
        return number


WARMUP_EPOCHS = WarmupEpochs()


class FiniteFloatRange(click.FloatRange):
    """A ``click.FloatRange`` that also rejects NaN (which passes every comparison of a range)."""

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


LEARNING_RATE = FiniteFloatRange(min=0, min_open=True, max=MAX_RATE)
"""``--lr``, ``--arch-lr`` of every command: 0 < rate <= ``MAX_RATE`` (``nasp.config``), not NaN."""
WEIGHT = FiniteFloatRange(min=0, max=MAX_RATE)
"""A loss or decay weight (``--weight-decay``, ``--eta``, ...): 0 <= weight <= ``MAX_RATE``, not NaN."""


class Amount(click.ParamType):
    """A budget: a positive, finite number, optionally with a K, M or G suffix (``3.0M``, ``600M``,
    ``250K``; ``nasp.budget.parse_amount``). A resumed run's saved number passes as it is."""

    name = "AMOUNT"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        from .budget import parse_amount

        if value is None:
            return None
        try:
            return parse_amount(value, _flag(param) if param is not None else "budget")
        except NaspError as exc:
            self.fail(f"{value!r}: {str(exc).split(': ', 1)[-1]}", param, ctx)


AMOUNT = Amount()
"""``--max-params`` and the other budgets of every command: > 0, finite, K/M/G suffixes."""


def option_of(field: dataclasses.Field, hints: dict, command: Optional[str] = None) -> Optional[click.Option]:
    """The Click option of a ``setting`` field (``nasp.config``), or None where ``command`` does
    not offer it (``command=None``: every field declared for the command line)."""
    spec = _option_spec(field, hints, command)
    return None if spec is None else click.Option(spec[0], **spec[1])


def _option_spec(field: dataclasses.Field, hints: dict, command: Optional[str]) -> Optional[tuple[list, dict]]:
    """(declarations, keyword arguments) of ``click.option`` for a ``setting`` field."""
    meta = setting_meta(field)
    if not meta or not meta["cli"] or (command is not None and meta["commands"] is not None and command not in meta["commands"]):
        return None
    flag = meta["option"] or "--" + field.name.replace("_", "-")
    hint = _plain_hint(hints[field.name])
    help_text = meta["help"] + _by_task_help(meta["by_task"])
    kwargs: dict[str, Any] = {"default": field.default, "help": help_text, "show_default": field.default is not None}
    if meta["callback"] is not None:
        kwargs["callback"] = meta["callback"]
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if hint is bool and meta["type"] is None:
        if meta["secondary"]:
            decls = [f"{flag}/{meta['secondary']}"]
        elif field.default is None:
            decls = [f"{flag}/--no-{flag[2:]}"]
        else:
            decls, kwargs["is_flag"] = [flag], True
    else:
        decls = [flag]
        kwargs["type"] = meta["type"] if meta["type"] is not None else _CLICK_TYPES.get(hint, click.STRING)
    if flag[2:].replace("-", "_") != field.name:
        decls.append(field.name)
    return decls, kwargs


_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING, Path: click.Path(path_type=Path)}


def _plain_hint(hint: Any) -> Any:
    """``Optional[X]`` -> X; anything else as it is."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is Union else [hint]
    return args[0] if len(args) == 1 else hint


def _by_task_help(by_task: dict) -> str:
    if not by_task:
        return ""
    shown = ", ".join(f"{v:g} ({task})" if isinstance(v, float) else f"{v} ({task})" for task, v in by_task.items())
    return f" [default: {shown}]"


def options_from(cls: type, command: Optional[str] = None, names: Optional[Sequence[str]] = None,
                 leave_out: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """A decorator adding the Click options of every ``setting`` of dataclass ``cls`` that
    ``command`` offers (or of those ``names``), in the order the fields are declared: the command
    line is generated from the one declaration of each setting."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if (names is None or f.name in names) and f.name not in leave_out]
    shared = {f.name for f in dataclasses.fields(RunOptions)} if issubclass(cls, RunOptions) and cls is not RunOptions else set()
    fields.sort(key=lambda f: f.name in shared)  # a domain's own settings first, then the shared ones
    specs = [s for s in (_option_spec(f, hints, command) for f in fields) if s is not None]

    def decorate(f: Callable) -> Callable:
        for decls, kwargs in reversed(specs):
            f = click.option(*decls, **kwargs)(f)
        return f

    return decorate


def check_settings(config: Any) -> None:
    """The Python caller's values of ``config``'s settings through the same Click types as the
    command line (ranges, choices, finiteness): a ``NaspError`` naming the option, e.g.
    ``--batch-size 0: 0 is not in the range x>=1``. None (not given) always passes."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        option = option_of(field, hints) if setting_meta(field).get("type") is not None else None
        if value is None or option is None or isinstance(value, bool):
            continue
        try:
            option.type.convert(value, option, None)
        except click.BadParameter as exc:
            why = re.sub(r"^.* is not in the range ", "must be in the range ", exc.message.rstrip("."))
            raise NaspError(f"{option.opts[0]} {value!r}: {why}") from None


def _flag(param: click.Parameter) -> str:
    return param.opts[0] if param.opts else param.name

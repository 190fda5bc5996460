"""Typed settings of a command, declared once, and the one pre-run validation every command follows.

A setting is one dataclass field made by ``setting``: its default, its help text, its Click type
(range, choices), the commands that offer it and, where it depends on the task, its default per
task. The Click options are generated from these fields (``nasp.options.options_from``), the
Python APIs take the same fields as keywords and check them with the same Click types
(``RunConfig.checked``), and ``--resume`` checks the saved values with the same options.

A command that trains does, in this order::

    config = Config.from_options(opts, data)   # typed settings; data-set defaults filled in, opts untouched
    config.validate(data)                      # NaspError with one line naming the option: no run directory yet
    run, _, device = start_run(name, {**opts, **config.options()})   # config.json records the values used
    body(config, run, device, data)

Click's parameter types check what one value decides alone (ranges, choices: also the saved
values of a ``--resume``); ``validate`` checks what needs the data or several options (a batch
larger than the data, a warm-up longer than the search, an unknown space). A resume goes through
the same two steps on the saved options, so a tampered ``config.json`` fails before any state is
touched.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
import typing
from typing import Any, Callable, Mapping, Optional, TypeVar, Union

from .errors import NaspError

C = TypeVar("C", bound="RunConfig")

MAX_RATE = 1e4
"""Upper bound of learning rates and loss/decay weights on every command (``nasp.options.LEARNING_RATE``,
``WEIGHT``). torch's optimizers turn the rate into a float32 factor of the parameters (Adam: ``lr /
(1 - beta1^t)``, 10x the rate at the first step with beta1 0.9), so a rate near 1e38 overflowed inside
the optimizer (``RuntimeError: value cannot be converted to type float without overflow``); far
below that every rate diverges anyway (the largest default, the RNN's SGD, is 20)."""


MAX_SEED = 2**32 - 1
"""Largest ``--seed``: NumPy's generators take seeds in [0, 2**32)."""


def check_rate(name: str, value: float, positive: bool = True) -> float:
    """``value`` if it is a finite rate in (0, ``MAX_RATE``] (``positive``; else [0, ``MAX_RATE``]),
    else a ``NaspError`` naming ``name``."""
    low_ok = value > 0 if positive else value >= 0
    if not (math.isfinite(value) and low_ok and value <= MAX_RATE):
        raise NaspError(f"{name} {value!r}: must be a number in {'(0' if positive else '[0'}, {MAX_RATE:g}]")
    return value


def setting(default: Any = None, help: str = "", *, type: Any = None, metavar: Optional[str] = None,
            commands: Optional[tuple[str, ...]] = None, by_task: Optional[Mapping[str, Any]] = None,
            secondary: Optional[str] = None, callback: Optional[Callable] = None, option: Optional[str] = None,
            cli: bool = True, derived: Optional[Callable[[Any], Any]] = None) -> Any:
    """A settings field declared once.

    ``default``: the value when not given (``None``: decided later, by ``by_task`` or the model);
    ``help``: the option's help text (``[default: ...]`` is added from ``default`` or ``by_task``);
    ``type``: a Click type (a range, a choice; the field's annotation otherwise); ``commands``: the
    commands that offer it (None: every command of the config); ``by_task``: the default of each
    task where it differs; ``secondary``: the off switch of a boolean (``--fresh`` for
    ``--warm-start``); ``option``: the flag when it is not ``--field-name``; ``cli=False``: Python only;
    ``derived``: the default as a function of the other settings (``derived(config)``), where it
    depends on them (``resolved``)."""
    meta = {"help": help, "type": type, "metavar": metavar, "commands": commands, "by_task": dict(by_task or {}),
            "secondary": secondary, "callback": callback, "option": option, "cli": cli, "derived": derived}
    return dataclasses.field(default=default, metadata={SETTING: meta})


def with_defaults(**defaults: Any) -> Callable[[type], type]:
    """Class decorator, under ``@dataclass``: a subclass's own defaults of settings its base
    declares, each kept as declared there (help, type, place); ``@with_defaults(epochs=50)``."""

    def decorate(cls: type) -> type:
        declared = {f.name: f for f in dataclasses.fields(cls)}  # the base's, before @dataclass runs on cls
        if "__annotations__" not in cls.__dict__:
            cls.__annotations__ = {}
        for name, default in defaults.items():
            cls.__dict__["__annotations__"][name] = declared[name].type
            setattr(cls, name, dataclasses.field(default=default, metadata=declared[name].metadata))
        return cls

    return decorate


SETTING = "nasp.setting"
"""The field metadata key of ``setting``."""


def setting_meta(field: dataclasses.Field) -> dict:
    """What ``setting`` declared for ``field`` ({} for a plain field)."""
    return dict(field.metadata.get(SETTING, {}))


def task_default(cls: type, name: str, task: str) -> Any:
    """The default of setting ``name`` of ``cls`` for ``task`` (its ``by_task`` entry, else its default)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return setting_meta(field).get("by_task", {}).get(task, field.default)


def resolved(config: Any, name: str, task: str) -> Any:
    """Setting ``name`` of ``config``: as given, else its ``derived`` default computed from the
    other settings, else its default for ``task`` (``task_default``)."""
    value = getattr(config, name)
    if value is not None:
        return value
    field = {f.name: f for f in dataclasses.fields(config)}[name]
    derived = setting_meta(field).get("derived")
    return derived(config) if derived is not None else task_default(type(config), name, task)


class RunConfig:
    """Base of a command's settings dataclass: field names are the command's Click option names."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def of(cls: type[C], options: Mapping[str, Any]) -> C:
        """The config of the fields ``options`` holds (other keys, e.g. ``--out`` or ``--threads``,
        belong to the run, not to the settings)."""
        return cls(**{name: options[name] for name in cls.field_names() if name in options})

    def validate(self, *context: Any) -> None:
        """Raise ``NaspError`` (one line naming the option) for settings that cannot run on
        ``context`` (the data); called before the run directory exists."""

    def check_types(self) -> None:
        """A ``NaspError`` naming the option for a value of the wrong type (``seed="x"``,
        ``test_ratio="0.5"``): what Click's types check on the command line, for Python callers.
        An int passes for a float; a bool never passes for a number."""
        hints = typing.get_type_hints(type(self))
        for name in self.field_names():
            value, allowed = getattr(self, name), _accepted(hints[name])
            if allowed is None or any(_is_a(value, kind) for kind in allowed):
                continue
            names = sorted({_KIND_NAMES.get(k, k.__name__) for k in allowed if k is not type(None)})
            raise NaspError(f"--{name.replace('_', '-')} {value!r}: must be {' or '.join(names)}")

    def options(self) -> dict[str, Any]:
        """The settings as ``config.json`` records them (paths as text)."""
        values = {name: getattr(self, name) for name in self.field_names()}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


_KIND_NAMES = {int: "an integer", float: "a number", str: "text", bool: "True or False", Path: "a path"}


def _accepted(hint: Any) -> Union[tuple, None]:
    """The plain classes a field's annotation allows (None when it names something else)."""
    args = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
    out = []
    for arg in args:
        origin = typing.get_origin(arg) or arg  # Sequence[int] -> collections.abc.Sequence
        if isinstance(origin, type):
            out.append(origin)
        else:
            return None
    return tuple(out)


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool) and kind in (int, float):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)

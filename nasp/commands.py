"""What every domain's Click commands share when they run: ``RunCommand`` (--help order, --resume
reloads and checks the saved options), the start/finish of a run, data fingerprints, logging.
The options themselves are generated in ``nasp.options``. A domain command stays short::

    @group.command(cls=RunCommand)   # --resume reloads and checks the saved options
    @run_options                     # --seed --device --out --json (nasp.options)
    @resume_option                   # --resume (every command that trains; nasp.options)
    def search(**opts):
        run, opts, device = start_run("sif-search", opts)
        ...
        finish_run(run, summary, opts["as_json"])
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any

import click
import torch

from . import __version__
from . import distributed
from .data import data_files, fingerprint
from .devices import check_amp, flush_denormals, resolve_device, set_deterministic
from .errors import NaspError
from .options import _flag
from .runs import CONFIG, RunDir, read_json
from .seeding import seed_everything

RESUME_CHANGEABLE = ("threads", "device")
"""Options a ``--resume`` may change (given: honoured and recorded in config.json; else the saved value)."""
INVOCATION_ONLY = ("out", "resume", "as_json")
"""Options that belong to one invocation, never to the saved run."""
RUN_META = "nasp.run"
"""``ctx.meta`` key: the run directory the current command opened (for the Ctrl-C message)."""


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (Click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201 - logging's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """The ``nasp`` loggers write to stderr at ``level``: INFO (the default) gives one line per
    epoch, WARNING (``-q``) warnings only, DEBUG (``-v``) everything."""
    logger = logging.getLogger("nasp")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def _verbosity(ctx: click.Context, param: click.Parameter, value: object) -> None:
    if not value:  # not given: keep what the group (or the default) set
        return
    explicit = ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    if not explicit and ctx.meta.get("nasp.verbosity_given"):
        return  # NASP_QUIET never overrides a -v/-q typed on the command line
    if explicit:
        ctx.meta["nasp.verbosity_given"] = True
    configure_logging(logging.WARNING if param.name == "quiet" else logging.DEBUG)


_VERBOSITY = (
    (("-q", "--quiet"), {"is_flag": True, "envvar": "NASP_QUIET", "show_envvar": True,
                         "help": "Warnings and errors only on stderr (no per-epoch lines, no progress bar)."}),
    (("-v", "--verbose"), {"count": True, "show_default": False, "help": "Debug output on stderr too."}),
)


def verbosity_options(f: Any) -> Any:
    """``-q/--quiet`` and ``-v/--verbose`` on a command function or an existing Click command."""
    for decls, kwargs in (_VERBOSITY if isinstance(f, click.Command) else reversed(_VERBOSITY)):
        kwargs = {**kwargs, "expose_value": False, "callback": _verbosity}
        if isinstance(f, click.Command):
            f.params.append(click.Option(list(decls), **kwargs))
        else:
            f = click.option(*decls, **kwargs)(f)
    return f


class RequiredUnlessResume(click.Option):
    """An option a new run needs (``--data``, ``--genotype``) but ``--resume`` takes from the saved run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["help"] = (kwargs.get("help") or "").rstrip() + " Required, except with --resume."
        super().__init__(*args, **kwargs)


HELP_FIRST = ("arch", "ifc", "genotype", "strategy", "space", "data")
"""--help of a command that trains lists these first (what to run, how, on what data), then the
domain's other options as declared, then the shared ones in ``HELP_LAST`` order."""
HELP_LAST = ("threads", "seed", "device", "out", "as_json", "resume", "quiet", "verbose")


class RunCommand(click.Command):
    """A command that trains. Without ``--resume`` it checks the options a new run needs; with
    ``--resume`` it replaces the options by the saved ones from ``--out``'s config.json, each
    checked by the command's own parameter (type, range, choice, callback) as if typed on the
    command line, and refuses an option given now that conflicts with the saved run.
    Its --help shows every default and lists the options in one order for every domain."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"show_default": True, **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = self.get_params(ctx)
        rank = {name: i for i, name in enumerate(HELP_FIRST)}
        last = {name: len(HELP_FIRST) + 1 + i for i, name in enumerate(HELP_LAST)}
        help_option = self.get_help_option(ctx)
        ordered = sorted((p for p in params if p is not help_option),
                         key=lambda p: rank.get(p.name, last.get(p.name, len(HELP_FIRST))))
        ordered += [help_option] if help_option is not None else []
        rows = [row for row in (p.get_help_record(ctx) for p in ordered) if row is not None]
        if rows:
            with formatter.section("Options"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.params.get("resume"):
            ctx.params = resumed_options(ctx, self)
        else:
            for param in self.params:
                if isinstance(param, RequiredUnlessResume) and ctx.params.get(param.name) is None:
                    raise NaspError(f"{_flag(param)} is required (except with --resume)")
        if "device" in ctx.params:  # an unusable --device (or --amp on the CPU) fails first, before the data is read
            check_amp(bool(ctx.params.get("amp")), resolve_device(ctx.params["device"]))
        return super().invoke(ctx)

    def run_name(self, ctx: click.Context) -> str:
        """``<group>-<command>`` (``sif-search``): the ``command`` field of config.json."""
        return f"{ctx.parent.command.name}-{self.name}" if ctx.parent is not None else str(self.name)


def _no_default(param: click.Parameter) -> bool:
    """True when the option's value is None unless given (Click 8.2+ marks "no default" with UNSET)."""
    return param.default is None or param.default is getattr(click.core, "UNSET", None)


def _check_saved(ctx: click.Context, param: click.Parameter, value: Any, path: Path) -> Any:
    """A value from config.json through ``param``'s own checks; a bad one is a NaspError naming both."""
    def bad(why: str) -> NaspError:
        return NaspError(f"{path}: option {_flag(param)} = {json.dumps(value)}: {why}")

    if value is None:
        if isinstance(param, RequiredUnlessResume) or not _no_default(param):
            raise bad("null, but this option always has a value")
        return param.process_value(ctx, None)
    if isinstance(value, (list, dict)) and not param.multiple:
        raise bad(f"a JSON {'list' if isinstance(value, list) else 'object'}, expected one value")
    kind = param.type
    if isinstance(value, bool) != isinstance(kind, click.types.BoolParamType):
        raise bad(f"true/false where a value of type {kind.name!r} belongs" if isinstance(value, bool) else "expected true or false")
    if isinstance(kind, click.types.IntParamType) and isinstance(value, float) and not value.is_integer():
        raise bad("not a whole number")
    try:
        return param.process_value(ctx, value)
    except click.BadParameter as exc:
        raise bad(exc.message) from None
    except Exception as exc:  # a click type meeting a JSON value the shell never produces
        raise bad(str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__) from None


def resumed_options(ctx: click.Context, command: click.Command) -> dict:
    """The options of the run in ``--out``, checked, with the invocation's ``RESUME_CHANGEABLE``
    and ``INVOCATION_ONLY`` options applied; any other option given now must equal the saved one."""
    given = ctx.params
    if given.get("out") is None:
        raise NaspError("--resume needs --out: the run directory to continue")
    path = Path(given["out"]) / CONFIG
    if not path.exists():
        raise NaspError(f"--resume: {given['out']} is not a run directory (no {CONFIG})")
    config = read_json(path, "run config")
    if not isinstance(config, dict):
        raise NaspError(f"{path}: not a run config (a JSON {type(config).__name__}, expected an object)")
    name = command.run_name(ctx) if isinstance(command, RunCommand) else command.name
    if not isinstance(config.get("command"), str):
        raise NaspError(f"{path}: not a nasp run config (no 'command' entry)")
    if config.get("command") != name:
        raise NaspError(f"--resume: {given['out']} is a {config.get('command')!r} run, not {name!r}")
    saved = config.get("options")
    if not isinstance(saved, dict):
        raise NaspError(f"{path}: 'options' is {'missing' if saved is None else 'not a JSON object'}")
    params = [p for p in command.params if p.expose_value]  # not -v/-q: they belong to the invocation
    known = {p.name for p in params}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise NaspError(f"{path}: unknown option {unknown[0]!r} for {name}")
    options: dict = {}
    for param in params:
        key = param.name
        from_user = ctx.get_parameter_source(key) in (click.core.ParameterSource.COMMANDLINE,
                                                       click.core.ParameterSource.ENVIRONMENT)
        if key in INVOCATION_ONLY or (key in RESUME_CHANGEABLE and (from_user or key not in saved)):
            options[key] = given.get(key)
            continue
        if key not in saved:
            raise NaspError(f"{path}: option {_flag(param)} is missing")
        value = _check_saved(ctx, param, saved[key], path)
        if from_user and key not in RESUME_CHANGEABLE and given.get(key) != value:
            raise NaspError(f"{_flag(param)} {_show(given.get(key))}: conflicts with the resumed run's "
                            f"{_show(value)} ({path}); drop it, or start a new run")
        options[key] = value
    return options


def _show(value: Any) -> str:
    return str(value) if isinstance(value, (Path, str)) else json.dumps(value, default=str)


def release_with_command(run: RunDir) -> RunDir:
    """Release ``run``'s lock when the running Click command ends, however it ends (in a test
    harness the process lives on; in a shell the lock dies with the process anyway)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(run.close)
    return run


def default_out(command: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{command}-{stamp}"


def _jsonable(options: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}


def start_run(command: str, options: dict) -> tuple[RunDir, dict, torch.device]:
    """Open (and lock) the run directory, seed, set the threads, flush denormal floats to zero on
    the CPU, resolve the device and write ``config.json``. With ``--resume`` the options are the saved ones already (``RunCommand``
    resolves them); the ones this invocation changed are recorded under ``resumes``.
    Returns (run, options, device)."""
    if options.get("resume") and options.get("out") is None:
        raise NaspError("--resume needs --out: the run directory to continue")
    device = resolve_device(options.get("device", "auto"))
    world = join_world(device)
    out = options.get("out") or world.share(default_out(command))  # rank 0's name on every rank
    run = release_with_command(RunDir(out, resume=bool(options.get("resume"))))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[RUN_META] = run.path
    options = {**options, "out": out}
    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    seed_everything(int(options.get("seed", 0)))
    set_deterministic(bool(options.get("deterministic")))
    if ctx is not None:  # for the command's length
        ctx.with_resource(flush_denormals())
    config = {
        "command": command,
        "options": _jsonable(options),
        "nasp_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "world_size": world.size,
        "argv": sys.argv[1:],
    }
    if run.resume:
        saved = run.read_config()
        if not isinstance(saved, dict) or saved.get("command") != command:
            raise NaspError(f"--resume: {out} is not a {command!r} run")
        check_world_size(saved, world.size, run.file(CONFIG))
        check_data(saved, run.file(CONFIG))
        changed = {k: v for k, v in config["options"].items() if k in RESUME_CHANGEABLE and saved.get("options", {}).get(k) != v}
        resumes = list(saved.get("resumes", [])) + [{
            "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "device": str(device), "changed": changed}]
        config = {**saved, "options": {**saved.get("options", {}), **{k: config["options"][k] for k in RESUME_CHANGEABLE if k in config["options"]}},
                  "resumes": resumes}
    else:
        config["data_files"] = data_fingerprints(options)
    run.write_config(config)
    return run, options, device


def join_world(device: torch.device) -> distributed.World:
    """Join the other ranks when torchrun started this process with several (gloo on CPU, NCCL on
    CUDA); the process group is left when the command ends. One process: the world of one."""
    world = distributed.init(device)
    ctx = click.get_current_context(silent=True)
    if world.parallel and ctx is not None:
        ctx.call_on_close(distributed.shutdown)
    if not world.main:  # rank 0 logs the run; the others only their errors
        logging.getLogger("nasp").setLevel(logging.ERROR)
    return world


DATA_OPTIONS = ("data", "valid_data", "test_data")
"""The options that name data a run reads (a path, or a known name under ``--data-dir``)."""


def data_fingerprints(options: dict) -> dict:
    """``data_files`` of config.json: the size and digest of every file the data options read."""
    paths = [p for key in DATA_OPTIONS if options.get(key) is not None for p in data_files(options[key], options.get("data_dir"))]
    return {str(p.resolve()): fingerprint(p) for p in paths}


def check_data(saved: dict, path: Path) -> None:
    """A NaspError unless every data file recorded when the run started (``data_files``) is
    unchanged: a resume on other data would mix the results of two data sets."""
    recorded = saved.get("data_files", {})  # runs started before fingerprints were recorded have none
    if not isinstance(recorded, dict) or not all(isinstance(v, dict) for v in recorded.values()):
        raise NaspError(f"{path}: 'data_files' is not an object of file fingerprints")
    for name, before in recorded.items():
        if not Path(name).exists():
            raise NaspError(f"--resume: {name}, read when the run started, is gone; put it back or start a new run")
        if fingerprint(name) != before:
            raise NaspError(f"--resume: {name} changed since the run started (other size or contents); resume on the "
                            "same data or start a new run")


def check_world_size(saved: dict, size: int, path: Path) -> None:
    """A NaspError unless a resumed run continues on as many processes as it started on (the
    batches each rank sees, hence the run, depend on it)."""
    started = saved.get("world_size", 1)
    if started != size:
        raise NaspError(f"--resume: the run was started on {started} process(es) ({path}), this is {size}; resume it "
                        f"with the same number ({'torchrun --nproc-per-node ' + str(started) if started > 1 else 'one process, without torchrun'})")


def finish_run(run: RunDir, summary: dict, as_json: bool) -> None:
    """Write ``summary.json`` last (with ``world_size``: the processes of the run), then print it
    (JSON on stdout with ``--json``; rank 0 only in a data-parallel run)."""
    world = distributed.world()
    summary = run.finish({**summary, "world_size": world.size, "run_dir": str(run.path)})
    if not world.main:
        return
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        for key, value in summary.items():
            if isinstance(value, float):
                value = f"{value:.4f}"
            if not isinstance(value, (dict, list)):
                click.echo(f"{key:>20s}  {value}")

"""The ``nasp`` command: a Click root group that mounts each domain's group.

Importing this module changes nothing in the process and loads neither torch nor a domain:
``main`` (the console script ``nasp``) installs its Ctrl-C guard, then loads the domains
(``RootGroup.load``), and tunes the host allocator only when a command line is run.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

import click

from . import __version__
from .errors import NaspError

#: the entry-point group through which domains mount their Click groups (setup.py lists ours)
DOMAINS = "nasp.domains"
#: the built-in domains (also mounted from a source tree that is not installed)
BUILTIN_DOMAINS = {"sif": "sif.cli:sif", "cnn": "nasp.cnn.cli:cnn", "rnn": "nasp.rnn.cli:rnn", "data": "nasp.data_cli:data"}


def _interrupted_during_start_up(signum: int, frame: object) -> None:
    """Ctrl-C while the libraries load (seconds for torch): one line and exit 130, no traceback.

    Nothing has been written yet, so the process ends at once (``os._exit``): an exception
    raised here could land inside torch's native import code, which turns it into an abort."""
    sys.stderr.write("Interrupted.\n")
    sys.stderr.flush()
    os._exit(130)


class _StartUpGuard:
    """``_interrupted_during_start_up`` as the SIGINT handler while the libraries load, and
    Python's default back afterwards; only where Ctrl-C would raise KeyboardInterrupt (the main
    thread, SIGINT neither ignored nor taken over by someone else)."""

    def __enter__(self) -> "_StartUpGuard":
        self.active = (threading.current_thread() is threading.main_thread()
                       and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.active:
            signal.signal(signal.SIGINT, _interrupted_during_start_up)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.signal(signal.SIGINT, signal.default_int_handler)


class NaspGroup(click.Group):
    """Turns library errors (``NaspError``) into one ``Error: ...`` line and exit status 1, and
    Ctrl-C into one line and exit status 130; sets up logging and the host allocator when a
    command line is run."""

    def make_context(self, info_name: Optional[str], args: list[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        from .commands import configure_logging
        from .devices import tune_host_allocator

        configure_logging()  # the default (one line per epoch); -v/-q, before or after the subcommand, change it
        tune_host_allocator()  # freed step memory stays with the process (nasp.devices)
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's signature
        from .commands import RUN_META

        try:
            return super().invoke(ctx)
        except NaspError as exc:
            raise click.ClickException(str(exc)) from None
        except RuntimeError as exc:  # a peer of a data-parallel run stopped; an op --deterministic lacks
            from .devices import nondeterministic_op
            from .distributed import lost_peer

            message = lost_peer(exc) or nondeterministic_op(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None
        except KeyboardInterrupt:
            run = ctx.meta.get(RUN_META)
            if run is not None and (run / "checkpoint.pt").exists():
                click.echo(f"Interrupted; continue the run with --resume --out {run}", err=True)
            else:
                click.echo("Interrupted.", err=True)
            ctx.exit(130)


class RootGroup(NaspGroup):
    """The ``nasp`` group. Its domains and -v/-q are loaded on first use (``load``), so that
    importing this module stays cheap and free of side effects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loaded = False
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:  # type: ignore[override]
        """The domain groups (loaded on first access)."""
        self.load()
        return self._commands

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._commands = value

    def load(self) -> None:
        """Mount the domains and add -v/-q to every command, once."""
        if self._loaded:
            return
        self._loaded = True
        from .commands import verbosity_options

        verbosity_options(self)
        _mount(self)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - click's signature
        """Run the command line; Ctrl-C while the domains (and torch) load ends in one line."""
        with _StartUpGuard():
            self.load()
        return super().main(*args, **kwargs)

    def make_context(self, info_name: Optional[str], args: list[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        self.load()  # -v/-q are among the root's options
        return super().make_context(info_name, args, parent=parent, **extra)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nasp")
def main() -> None:
    """Neural architecture search by proximal iterations (NASP).

    \b
    Domains:
      sif   search the interaction function of collaborative filtering (MovieLens, ...)
      cnn   search image cells (DARTS / NASP spaces) and retrain them (CIFAR-10, ImageNet, digits)
      rnn   search and retrain a recurrent cell for language modelling (Penn Treebank)
      data  list the known data sets, fetch them into the data root, prepare derived ones

    Commands that train log one line per epoch to stderr (-q: warnings only, -v: debug too);
    -v and -q work before or after the subcommand.
    """


def _domain_groups() -> dict[str, Callable[[], click.Command]]:
    """Name -> loader of every domain's group: the built-ins, then the installed entry points
    (which add domains, or replace a built-in of the same name)."""
    from importlib.metadata import EntryPoint, entry_points

    found = {name: EntryPoint(name, value, DOMAINS) for name, value in BUILTIN_DOMAINS.items()}
    found.update({ep.name: ep for ep in entry_points(group=DOMAINS)})
    return {name: ep.load for name, ep in found.items()}


def _mount(group: click.Group) -> None:
    """Attach the domain groups to ``group`` (each domain owns its own commands); every command
    gets -v/-q. A domain that fails to load is reported in one line and left out."""
    for name, load in _domain_groups().items():
        try:
            domain = load()
        except Exception as exc:  # a broken plug-in must not take the other domains down
            click.echo(f"Warning: domain {name!r} not loaded ({exc.__class__.__name__}: {exc})", err=True)
            continue
        group.add_command(domain, name)
    _add_verbosity(group)


def _add_verbosity(group: click.Group) -> None:
    """-v/-q on every subcommand, so ``nasp sif search -q ...`` works as ``nasp -q sif search ...``."""
    from .commands import verbosity_options

    for command in group.commands.values():
        names = {opt for param in command.params for opt in param.opts}
        if not names & {"-v", "-q", "--verbose", "--quiet"}:
            verbosity_options(command)
        if isinstance(command, click.Group):
            _add_verbosity(command)


if __name__ == "__main__":
    main()

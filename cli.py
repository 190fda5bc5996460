"""The ``nasp`` command: a Click root group that mounts each domain's group."""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable


def _interrupted_during_start_up(signum: int, frame: object) -> None:
    """Ctrl-C while the libraries load (seconds for torch): one line and exit 130, no traceback.

    Nothing has been written yet, so the process ends at once (``os._exit``): an exception
    raised here could land inside torch's native import code, which turns it into an abort."""
    sys.stderr.write("Interrupted.\n")
    sys.stderr.flush()
    os._exit(130)


# only where Ctrl-C would raise KeyboardInterrupt (the main thread, SIGINT not ignored or taken over)
_GUARD = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _GUARD:
    signal.signal(signal.SIGINT, _interrupted_during_start_up)

import click  # noqa: E402  (after the start-up handler on purpose)

from nasp import NaspError, __version__  # noqa: E402
from nasp.commands import RUN_META, configure_logging, verbosity_options  # noqa: E402
from nasp.devices import tune_host_allocator  # noqa: E402


class NaspGroup(click.Group):
    """Turns library errors (``NaspError``) into one ``Error: ...`` line and exit status 1, and
    Ctrl-C into one line and exit status 130."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001 - click's signature
        configure_logging()  # the default (one line per epoch); -v/-q, before or after the subcommand, change it
        tune_host_allocator()  # freed step memory stays with the process (nasp.devices)
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NaspError as exc:
            raise click.ClickException(str(exc)) from None
        except RuntimeError as exc:  # a peer of a data-parallel run stopped; an op --deterministic lacks
            from nasp.devices import nondeterministic_op
            from nasp.distributed import lost_peer

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


@click.group(cls=NaspGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nasp")
@verbosity_options
def main() -> None:
    """Neural architecture search by proximal iterations (NASP).

    \b
    Domains:
      sif   search the interaction function of collaborative filtering (MovieLens, ...)
      cnn   search image cells (DARTS / NASP spaces) and retrain them (CIFAR-10, ImageNet, digits)
      rnn   search and retrain a recurrent cell for language modelling (Penn Treebank)
      data  list the known data sets and fetch them into the data root

    Commands that train log one line per epoch to stderr (-q: warnings only, -v: debug too);
    -v and -q work before or after the subcommand.
    """


#: the entry-point group through which domains mount their Click groups (setup.py lists ours)
DOMAINS = "nasp.domains"
#: the built-in domains (also mounted from a source tree that is not installed)
BUILTIN_DOMAINS = {"sif": "sif.cli:sif", "cnn": "nasp.cnn.cli:cnn", "rnn": "nasp.rnn.cli:rnn", "data": "nasp.data_cli:data"}


def _domain_groups() -> dict[str, Callable[[], click.Command]]:
    """Name -> loader of every domain's group: the built-ins, then the installed entry points
    (which add domains, or replace a built-in of the same name)."""
    from importlib.metadata import EntryPoint, entry_points

    found = {name: EntryPoint(name, value, DOMAINS) for name, value in BUILTIN_DOMAINS.items()}
    found.update({ep.name: ep for ep in entry_points(group=DOMAINS)})
    return {name: ep.load for name, ep in found.items()}


def _mount() -> None:
    """Attach the domain groups (each domain owns its own commands); every command gets -v/-q.
    A domain that fails to load is reported in one line and left out."""
    for name, load in _domain_groups().items():
        try:
            group = load()
        except Exception as exc:  # a broken plug-in must not take the other domains down
            click.echo(f"Warning: domain {name!r} not loaded ({exc.__class__.__name__}: {exc})", err=True)
            continue
        main.add_command(group, name)
    _add_verbosity(main)


def _add_verbosity(group: click.Group) -> None:
    """-v/-q on every subcommand, so ``nasp sif search -q ...`` works as ``nasp -q sif search ...``."""
    for command in group.commands.values():
        names = {opt for param in command.params for opt in param.opts}
        if not names & {"-v", "-q", "--verbose", "--quiet"}:
            verbosity_options(command)
        if isinstance(command, click.Group):
            _add_verbosity(command)


_mount()
if _GUARD:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if __name__ == "__main__":
    main()

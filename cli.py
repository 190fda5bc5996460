"""The ``nasp`` command: a Click root group that mounts each domain's group."""
from __future__ import annotations

import logging
import sys

import click

from nasp import NaspError, __version__


class NaspGroup(click.Group):
    """Turns library errors (``NaspError``) into one ``Error: ...`` line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NaspError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; continue a search with --resume.", err=True)
            ctx.exit(130)


@click.group(cls=NaspGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="nasp")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Neural architecture search by proximal iterations (NASP).

    \b
    Domains:
      sif   search the interaction function of collaborative filtering (MovieLens, ...)
      cnn   search image cells (DARTS / NASP spaces) and retrain them (CIFAR-10, ImageNet, digits)
      rnn   search and retrain a recurrent cell for language modelling (Penn Treebank)
      data  list the known data sets and fetch them into the data root
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("nasp").setLevel(level)


def _mount() -> None:
    """Attach the domain groups (each domain owns its own commands)."""
    from nasp.cnn.cli import cnn
    from nasp.data_cli import data
    from nasp.rnn.cli import rnn
    from sif.cli import sif

    for group in (sif, cnn, rnn, data):
        main.add_command(group)


_mount()

if __name__ == "__main__":
    main()

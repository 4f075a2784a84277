"""The ``streamon`` command line. Errors a user can cause print one line and exit non-zero."""

from __future__ import annotations

import sys

import click

from streamon import __version__
from streamon.errors import StreamonError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamon")
def cli() -> None:
    """streamon: real-time ML model monitoring over Kafka."""


@cli.command()
def demo() -> None:
    """Run the zero-install demo.

    \b
    Example:
      streamon demo
    """
    raise StreamonError("the demo is not built yet (placeholder): run `make test` to see streamon work")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="streamon", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StreamonError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)

"""The ``streamon`` command line. Errors a user can cause print one line and exit non-zero."""

from __future__ import annotations

import sys
from pathlib import Path

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


@cli.command("check-config")
# No exists=True: a missing file must go through ConfigError (one line, exit 2), not click's usage text.
@click.argument("file", type=click.Path(path_type=Path))
def check_config(file: Path) -> None:
    """Validate a configuration file and print what it sets up.

    Exits 0 with a one-line summary when the file is valid, or prints one
    `error: ...` line naming the bad key and exits 2.

    \b
    Example:
      streamon check-config configs/monitoring_config.yaml
    """
    # Imported here so commands that do not need pydantic start faster.
    from streamon.config import load_config

    settings = load_config(file)
    click.echo(f"ok: {file}: {settings.summary()}")


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

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


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("configs/monitoring_config.yaml"),
    show_default=True,
    help="streamon configuration file",
)


@cli.group()
def reference() -> None:
    """Reference profiles: the pinned distribution drift is measured against."""


@reference.command("build")
@CONFIG_OPTION
@click.option(
    "--input", "input_path", type=click.Path(path_type=Path), required=True, help="reference events, JSONL"
)
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path), required=True, help="profile file to write"
)
def reference_build(config_path: Path, input_path: Path, out_path: Path) -> None:
    """Build a reference profile from prediction events.

    Bin edges are the quantiles of the reference values; categories are the
    reference's own. Lines may carry a `label` (0/1) for a performance baseline.

    \b
    Example:
      streamon reference build --config configs/monitoring_config.yaml \\
          --input reference.jsonl --out reference.profile.json
    """
    from streamon.config import load_config
    from streamon.engine import build_engine
    from streamon.replay import build_reference

    engine = build_engine(load_config(config_path), profile=None)
    click.echo(f"reading {input_path} ...", err=True)
    counts = build_reference(engine, input_path, out_path)
    summary = ", ".join(f"{m}: {n} predictions" for m, n in counts.items())
    click.echo(f"wrote {out_path} ({summary})")


@cli.command()
@CONFIG_OPTION
@click.option(
    "--predictions", type=click.Path(path_type=Path), required=True, help="prediction events, JSONL"
)
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="label events, JSONL")
@click.option(
    "--reference",
    "reference_path",
    type=click.Path(path_type=Path),
    default=None,
    help="reference profile (overrides the config's reference_profile)",
)
@click.option(
    "--metrics-out",
    type=click.Path(path_type=Path),
    default=None,
    help="final metrics, Prometheus text format",
)
@click.option("--alerts-out", type=click.Path(path_type=Path), default=None, help="alert events, JSONL")
def replay(
    config_path: Path,
    predictions: Path,
    labels: Path | None,
    reference_path: Path | None,
    metrics_out: Path | None,
    alerts_out: Path | None,
) -> None:
    """Run the streaming pipeline over files, in event-time order.

    The same stage-1 and stage-2 logic as the workers; "now" is the last event
    time. Bad lines are reported with their line numbers and skipped.

    \b
    Example:
      streamon replay --config configs/monitoring_config.yaml \\
          --predictions predictions.jsonl --labels labels.jsonl \\
          --metrics-out metrics.prom --alerts-out alerts.jsonl
    """
    import time

    import orjson

    from streamon.config import load_config
    from streamon.engine import build_engine
    from streamon.exporter import render
    from streamon.replay import replay_files

    engine = build_engine(load_config(config_path), profile=reference_path)
    started = time.perf_counter()
    result = replay_files(
        engine, predictions, labels, progress=lambda n: click.echo(f"  {n:,} events ...", err=True)
    )
    elapsed = time.perf_counter() - started
    for bad in result.bad_lines[:20]:
        where = f"{bad.file}:{bad.line}" if bad.line else bad.file
        click.echo(f"skipped {where}: {bad.reason}: {bad.detail}", err=True)
    if len(result.bad_lines) > 20:
        click.echo(f"... and {len(result.bad_lines) - 20} more bad lines", err=True)
    if metrics_out:
        metrics_out.write_bytes(render(result.snapshot))
    if alerts_out:
        alerts_out.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in result.alerts))
    firing = sum(1 for a in result.alerts if a["status"] == "firing")
    click.echo(
        f"replayed {result.predictions:,} predictions and {result.labels:,} labels in {elapsed:.1f}s; "
        f"{len(result.bad_lines)} bad lines skipped; {result.evaluations} evaluations; "
        f"{firing} alerts fired, {len(result.alerts) - firing} resolved"
    )


@cli.command()
@CONFIG_OPTION
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="where the RocksDB join stores live [default: $STREAMON_STATE_DIR or ./streamon-state]",
)
@click.option(
    "--instance-id", default=None, help="stable id of this worker (transactional ids); default host-pid"
)
@click.option(
    "--metrics-port", type=int, default=None, help="override monitoring.prometheus.port (0 = any free)"
)
@click.option("--bootstrap-servers", default=None, help="override kafka.bootstrap_servers")
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR")
def worker(
    config_path: Path,
    state_dir: Path | None,
    instance_id: str | None,
    metrics_port: int | None,
    bootstrap_servers: str | None,
    log_level: str,
) -> None:
    """Run a streamon worker: both stages, until SIGTERM.

    Start as many as the input topics have partitions; they share the work through
    the consumer group. SIGTERM finishes the batch, commits and leaves the group.

    \b
    Example:
      streamon worker --config configs/monitoring_config.yaml --state-dir /var/lib/streamon
    """
    import logging
    import os

    from streamon.config import load_config
    from streamon.runtime.worker import Worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_config(config_path)
    if bootstrap_servers:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})}
        )
    state = state_dir or Path(os.environ.get("STREAMON_STATE_DIR", "streamon-state"))
    w = Worker(settings, state, instance_id=instance_id, metrics_port=metrics_port)
    w.install_signal_handlers()
    w.run()


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

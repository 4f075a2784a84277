"""The ``streamon`` command line. Errors a user can cause print one line and exit non-zero."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from streamon import __version__
from streamon.errors import StreamonError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamon")
def cli() -> None:
    """streamon: real-time ML model monitoring over Kafka."""


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
    from streamon.errors import ConfigError

    settings = load_config(file)
    # Replay and the worker load the reference profiles at start: a missing one fails here, in
    # one line saying how to build it, and build_engine checks the others as they will.
    profiles = [(i, m.reference_profile) for i, m in enumerate(settings.models) if m.reference_profile]
    for i, profile in profiles:
        if not Path(profile).is_file():
            what = "is not a file" if Path(profile).exists() else "not found"
            raise ConfigError(
                f"config {file}: models.{i}.reference_profile: {profile} {what}: build it with "
                f"`streamon reference build --config {file} --input REFERENCE.jsonl --out {profile}`"
            )
    if profiles:
        from streamon.engine import build_engine  # numpy and scipy: only when there is a profile

        build_engine(settings)
    # kafka.client as written: secrets appear only as their _file / _env references.
    client = ", ".join(f"{k}={v}" for k, v in sorted(settings.kafka.client.items()))
    click.echo(f"ok: {file}: {settings.summary()}" + (f"; kafka.client {client}" if client else ""))


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("configs/monitoring_config.yaml"),
    show_default=True,
    help="streamon configuration file",
)
# The inputs replay, report and ab report share.
LABELS_OPTION = click.option(
    "--labels", type=click.Path(path_type=Path), default=None, help="label events, JSONL"
)
REFERENCE_OPTION = click.option(
    "--reference",
    "reference_path",
    type=click.Path(path_type=Path),
    default=None,
    help="reference profile (overrides the config's reference_profile)",
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
    from streamon.progress import progress
    from streamon.replay import build_reference, summarise_bad_lines

    engine = build_engine(load_config(config_path), profile=None)
    if input_path.is_file():  # a missing file is reported by build_reference, in one line
        click.echo(f"reading {input_path} ...", err=True)
    counts, bad = build_reference(engine, input_path, out_path, progress=progress)
    for line in summarise_bad_lines(bad):
        click.echo(line, err=True)
    summary = ", ".join(f"{m}: {n} predictions" for m, n in counts.items())
    skipped = f"; {len(bad)} bad lines skipped" if bad else ""
    click.echo(f"wrote {out_path} ({summary}){skipped}")


@cli.command()
@CONFIG_OPTION
@click.option(
    "--predictions", type=click.Path(path_type=Path), required=True, help="prediction events, JSONL"
)
@LABELS_OPTION
@REFERENCE_OPTION
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
    time. Events more than windows.max_event_age before the newest one, or ahead
    of the wall clock, are rejected as a worker would. Bad lines are reported as
    file:line: field: reason (detail) and skipped.

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
    from streamon.progress import progress
    from streamon.replay import replay_files, summarise_bad_lines

    engine = build_engine(load_config(config_path), profile=reference_path)
    started = time.perf_counter()
    result = replay_files(engine, predictions, labels, progress=progress)
    elapsed = time.perf_counter() - started
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in summarise_bad_lines(result.bad_lines):
        click.echo(line, err=True)
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
    for note in result.notes:
        click.echo(note)


@cli.command()
@CONFIG_OPTION
@click.option("--predictions", type=click.Path(path_type=Path), default=None, help="prediction events, JSONL")
@LABELS_OPTION
@click.option(
    "--bootstrap-servers",
    default=None,
    help="read the config's predictions and labels topics from this cluster instead of files",
)
@REFERENCE_OPTION
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path), required=True, help="the HTML file to write"
)
@click.option("--title", default=None, help="the report's title [default: from the predictions file]")
def report(
    config_path: Path,
    predictions: Path | None,
    labels: Path | None,
    bootstrap_servers: str | None,
    reference_path: Path | None,
    out_path: Path,
    title: str | None,
) -> None:
    """Write one self-contained HTML report of a replay (opens offline, no server).

    The same inputs and the same replay as `streamon replay`; per model: performance
    over time with the alert thresholds, confusion matrix, calibration, estimated vs
    realised performance, feature drift and distributions, data integrity, segments,
    business value, the experiment's arms, and the alerts with their evidence.

    With --bootstrap-servers it reads the config's predictions and labels topics from the
    beginning to their current end (the inputs of `streamon ab report --bootstrap-servers`).

    \b
    Example:
      streamon report --config configs/monitoring_config.yaml \\
          --predictions predictions.jsonl --labels labels.jsonl --out report.html
    """
    import time

    from streamon.api import Monitor
    from streamon.config import load_config
    from streamon.errors import InputError
    from streamon.progress import progress
    from streamon.replay import summarise_bad_lines

    started = time.perf_counter()
    settings = _with_bootstrap(load_config(config_path), bootstrap_servers)
    monitor = Monitor(settings, reference=reference_path)
    if bootstrap_servers:
        if predictions is not None or labels is not None:
            raise InputError("give --predictions/--labels or --bootstrap-servers, not both")
        from streamon.abreport import read_topic

        topics = settings.kafka.topics
        monitor.add_predictions_raw(read_topic(monitor.engine, topics.predictions), topics.predictions)
        monitor.add_labels_raw(read_topic(monitor.engine, topics.labels), topics.labels)
        source = f"{settings.kafka.bootstrap_servers} ({topics.predictions}, {topics.labels})"
    elif predictions is not None:
        monitor.add_prediction_file(predictions)
        if labels is not None:
            monitor.add_label_file(labels)
        source = predictions.name
    else:
        raise InputError("give --predictions (and --labels) JSONL files, or --bootstrap-servers")
    result = monitor.run(progress=progress)
    for line in summarise_bad_lines(result.bad_events):
        click.echo(line, err=True)
    result.report(title or f"streamon report: {source}").save(out_path)
    click.echo(
        f"wrote {out_path} ({result.predictions:,} predictions, {result.labels:,} labels, "
        f"{len(result.alerts)} alert events) in {time.perf_counter() - started:.1f}s"
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
    "--instance-id",
    default=None,
    help="stable id of this worker: transactional ids and static group membership (a restart "
    "within kafka.session_timeout keeps its partitions); default host-pid (dynamic)",
)
@click.option(
    "--metrics-port", type=int, default=None, help="override monitoring.prometheus.port (0 = any free)"
)
@click.option("--bootstrap-servers", default=None, help="override kafka.bootstrap_servers")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    help="DEBUG, INFO, WARNING or ERROR; JSON lines unless stderr is a terminal",
)
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
    the consumer group. SIGTERM finishes (or aborts) the batch and exits 0 within
    kafka.shutdown_grace; with --instance-id the worker stays a member of the group for
    kafka.session_timeout, so a restart gets its partitions back. A worker that cannot make progress
    (Kafka gone for kafka.stall_timeout, a fatal Kafka error) exits with code 4 and one
    line, for its supervisor to restart it.

    \b
    Example:
      streamon worker --config configs/monitoring_config.yaml --state-dir /var/lib/streamon
    """
    import os

    from streamon.config import load_config
    from streamon.logs import setup_logging
    from streamon.runtime.worker import Worker

    setup_logging(log_level)
    settings = load_config(config_path)
    if bootstrap_servers:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})}
        )
    state = state_dir or Path(os.environ.get("STREAMON_STATE_DIR", "streamon-state"))
    from confluent_kafka import KafkaException

    from streamon.errors import KafkaUnavailableError

    try:
        w = Worker(settings, state, instance_id=instance_id, metrics_port=metrics_port)
        w.install_signal_handlers()
        w.run()
    except StreamonError:
        raise
    except KafkaException as exc:  # a client call outside the loop's own handling
        raise KafkaUnavailableError(f"Kafka: {exc.args[0] if exc.args else exc}") from None
    except Exception as exc:
        # One line for the operator; the traceback only with --log-level DEBUG.
        logging.getLogger("streamon.worker").debug("worker failed", exc_info=True)
        raise StreamonError(
            f"worker failed: {type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)"
        ) from None


# --------------------------------------------------------------------------- simulate, demo, ab


def _with_bootstrap(settings: Any, bootstrap_servers: str | None) -> Any:
    if not bootstrap_servers:
        return settings
    return settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})}
    )


@cli.command()
@CONFIG_OPTION
@click.option("--bootstrap-servers", default=None, help="override kafka.bootstrap_servers")
@click.option("--rate", type=float, default=50.0, show_default=True, help="predictions per second")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--count", type=int, default=None, help="stop after this many predictions")
@click.option(
    "--models", default=None, help="comma-separated model names [default: every model of the config]"
)
@click.option("--variants", default=None, help="A/B arms, e.g. A,B (two arms are routed by entity id)")
@click.option("--experiment", default="exp-1", show_default=True, help="experiment name of the A/B arms")
@click.option("--label-delay", type=float, default=30.0, show_default=True, help="mean label delay, seconds")
@click.option(
    "--label-fraction", type=float, default=1.0, show_default=True, help="share of predictions labelled"
)
@click.option("--label-noise", type=float, default=0.0, show_default=True, help="share of labels flipped")
@click.option("--fraud-rate", type=float, default=0.03, show_default=True, help="share of fraud")
@click.option(
    "--drift",
    multiple=True,
    help="sudden, gradual, categorical, missing, calibration or degrade (repeat or comma-separate)",
)
@click.option(
    "--drift-after", type=float, default=60.0, show_default=True, help="seconds before drift starts"
)
@click.option(
    "--drift-ramp", type=float, default=120.0, show_default=True, help="ramp of gradual drift, seconds"
)
@click.option("--drift-variant", multiple=True, help="drift only this A/B arm (repeatable)")
@click.option(
    "--wait-for-labels", is_flag=True, help="at the end, keep sending the pending labels until all are due"
)
@click.option("--seed", type=int, default=7, show_default=True, help="random seed")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="write predictions.jsonl, labels.jsonl and reference.jsonl to this directory instead of Kafka",
)
@click.option(
    "--start",
    default=None,
    help="with --out: event time of the first prediction, epoch seconds or RFC 3339 "
    "[default: so that the last label is in the past]",
)
@click.option(
    "--reference-count",
    type=int,
    default=None,
    help="with --out: reference events to write [default: as many as predictions]",
)
def simulate(
    config_path: Path,
    bootstrap_servers: str | None,
    rate: float,
    duration: float | None,
    count: int | None,
    models: str | None,
    variants: str | None,
    experiment: str,
    label_delay: float,
    label_fraction: float,
    label_noise: float,
    fraud_rate: float,
    drift: tuple[str, ...],
    drift_after: float,
    drift_ramp: float,
    drift_variant: tuple[str, ...],
    wait_for_labels: bool,
    seed: int,
    out_dir: Path | None,
    start: str | None,
    reference_count: int | None,
) -> None:
    """Produce fraud-like predictions and delayed labels to Kafka, in real time, or to files.

    To Kafka: event time is the wall clock; each label is produced once its delay
    has elapsed; drift starts --drift-after seconds into the run. Works against any
    cluster; the input topics are created (co-partitioned) when missing. Ctrl-C
    stops cleanly. A status line goes to stderr every 5 seconds.

    With --out DIR: the same traffic in event time, at once, as predictions.jsonl,
    labels.jsonl (sorted by arrival) and reference.jsonl (undrifted, labelled
    events from just before the stream, for `streamon reference build`):
    --count predictions (default 10,000), or --rate x --duration seconds of event
    time, on average 1/--rate apart. The same --seed and --start give the same files.

    \b
    Example:
      streamon simulate --config configs/monitoring_config.yaml \\
          --bootstrap-servers 127.0.0.1:9092 --rate 200 --duration 600 \\
          --variants A,B --drift sudden --drift categorical --drift-after 120
      streamon simulate --config configs/monitoring_config.yaml --out data \\
          --count 20000 --variants A,B --drift sudden --drift-after 120
    """
    from streamon.config import load_config
    from streamon.errors import InputError
    from streamon.simulate import SimulationSpec, parse_drift, parse_variants, run_simulation

    settings = _with_bootstrap(load_config(config_path), bootstrap_servers)
    chosen = parse_variants(models) or settings.model_names
    spec = SimulationSpec(
        rate=rate,
        models=chosen,
        variants=parse_variants(variants),
        experiment=experiment,
        fraud_rate=fraud_rate,
        label_fraction=label_fraction,
        label_delay_s=label_delay,
        label_noise=label_noise,
        drift=parse_drift(drift),
        drift_after_s=drift_after,
        drift_ramp_s=drift_ramp,
        drift_variants=drift_variant,
        seed=seed,
        # The config's regression models get credit-limit traffic (a value, numeric labels).
        regression=tuple(m.name for m in settings.models if m.task == "regression" and m.name in chosen),
        # Its multiclass models get transaction-router traffic (scores over their classes).
        multiclass=tuple(m.name for m in settings.models if m.task == "multiclass" and m.name in chosen),
        classes=tuple((m.name, m.classes) for m in settings.models if m.task == "multiclass"),
    )
    if out_dir is not None:
        if bootstrap_servers:
            raise InputError("give --out or --bootstrap-servers, not both")
        _simulate_to_files(settings, spec, out_dir, duration, count, start, reference_count)
        return
    if start is not None or reference_count is not None:
        raise InputError("--start and --reference-count need --out")
    stats = run_simulation(
        settings, spec, duration, count, wait_for_labels, lambda line: click.echo(line, err=True)
    )
    how = "stopped" if stats.stopped_early else "done"
    pending = (
        f"; {stats.pending_labels:,} labels not yet due were not sent (see --wait-for-labels)"
        if stats.pending_labels
        else ""
    )
    click.echo(
        f"{how}: sent {stats.predictions:,} predictions and {stats.labels:,} labels "
        f"in {stats.elapsed:.1f}s{pending}"
    )


def _simulate_to_files(
    settings: Any,
    spec: Any,
    out_dir: Path,
    duration: float | None,
    count: int | None,
    start: str | None,
    reference_count: int | None,
) -> None:
    """``simulate --out``: the files, with a progress bar on stderr."""
    import time

    from streamon.config import format_duration
    from streamon.core.events import parse_ts
    from streamon.errors import InputError
    from streamon.progress import progress
    from streamon.simulate import DEFAULT_FILE_COUNT, check_request, default_file_start, write_files

    check_request(settings, spec, duration, count)
    if duration is not None:
        count = max(1, round(spec.rate * duration))
    n = DEFAULT_FILE_COUNT if count is None else count
    n_ref = n if reference_count is None else reference_count
    if start is None:
        begin = default_file_start(spec, n, time.time())
    else:
        parsed = parse_ts(float(start) if _is_number(start) else start)
        if parsed is None:
            raise InputError(f"--start {start!r}: give epoch seconds or an RFC 3339 time")
        begin = parsed
    drift = (
        f"; drift {'+'.join(spec.drift)} after {spec.drift_after_s:g}s of event time" if spec.drift else ""
    )
    click.echo(
        f"simulate: {n:,} predictions at {spec.rate:g}/s of event time "
        f"({format_duration(n / spec.rate)}) and {n_ref:,} reference events to {out_dir}{drift}",
        err=True,
    )
    with progress("simulate", total=n + n_ref, unit="predictions") as tick:
        stats = write_files(settings, spec, out_dir, n, begin, n_ref, tick)
    first = _utc(stats.start)
    click.echo(
        f"wrote {stats.predictions:,} predictions ({first} to {_utc(stats.end)}) and {stats.labels:,} labels "
        f"(last at {_utc(stats.last)}) to {stats.paths[0]} and {stats.paths[1]}; "
        f"{stats.reference:,} reference events to {stats.paths[2]}"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _utc(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="demo configuration [default: configs/demo_config.yaml]",
)
@click.option(
    "--bootstrap-servers",
    default=None,
    help="a real Kafka cluster [default: an embedded librdkafka mock cluster, for demos only]",
)
@click.option("--duration", type=float, default=None, help="stop after this many seconds [default: Ctrl-C]")
@click.option("--headless", is_flag=True, help="plain log lines instead of the live view")
@click.option(
    "--drift-after", type=float, default=60.0, show_default=True, help="seconds before drift is injected"
)
@click.option(
    "--drift",
    multiple=True,
    help="drift kinds to inject [default: sudden, categorical, degrade]; see `streamon simulate --help`",
)
@click.option("--rate", type=float, default=100.0, show_default=True, help="predictions per second")
@click.option(
    "--metrics-port", type=int, default=None, help="port of /metrics [default: the config's; 0 = any free]"
)
@click.option("--seed", type=int, default=7, show_default=True, help="random seed of the traffic")
def demo(
    config_path: Path | None,
    bootstrap_servers: str | None,
    duration: float | None,
    headless: bool,
    drift_after: float,
    drift: tuple[str, ...],
    rate: float,
    metrics_port: int | None,
    seed: int,
) -> None:
    """Run the zero-install demo: simulated traffic, a worker and a live view.

    Without --bootstrap-servers the demo starts an embedded librdkafka mock
    cluster (in this process; for demos only, not a real Kafka broker). It runs
    the traffic simulator and a streamon worker against it, injects drift after
    --drift-after seconds, serves /metrics and shows throughput, label coverage,
    performance per model and variant, the most drifting features and the alerts
    as they fire and resolve. Ctrl-C stops everything cleanly.

    \b
    Example:
      streamon demo
      streamon demo --headless --duration 180 --drift-after 30
      streamon demo --bootstrap-servers 127.0.0.1:9092
    """
    from streamon.demo import DemoOptions, run_demo
    from streamon.simulate import parse_drift

    run_demo(
        DemoOptions(
            config=config_path,
            bootstrap=bootstrap_servers,
            duration=duration,
            headless=headless,
            drift_after=drift_after,
            drift=parse_drift(drift) if drift else ("sudden", "categorical", "degrade"),
            rate=rate,
            metrics_port=metrics_port,
            seed=seed,
        )
    )


@cli.group()
def ab() -> None:
    """A/B experiments: compare the arms of a model experiment."""


@ab.command("report")
@click.option("--experiment", required=True, help="experiment name (the predictions' experiment field)")
@CONFIG_OPTION
@click.option("--predictions", type=click.Path(path_type=Path), default=None, help="prediction events, JSONL")
@LABELS_OPTION
@click.option("--bootstrap-servers", default=None, help="read the config's topics from this cluster instead")
@click.option("--model", default=None, help="only this model's predictions")
@click.option(
    "--control",
    default=None,
    help="the control arm [default: ab_testing.control, else A, control, or the first by name]",
)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="significance level")
@click.option(
    "--sequential-tau",
    type=float,
    default=None,
    help="mSPRT mixing scale, in per-unit standard deviations [default: ab_testing.sequential_tau]",
)
@click.option(
    "--look-every", default="1h", show_default=True, help="event time between the sequential test's looks"
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def ab_report(
    experiment: str,
    config_path: Path,
    predictions: Path | None,
    labels: Path | None,
    bootstrap_servers: str | None,
    model: str | None,
    control: str | None,
    alpha: float,
    sequential_tau: float | None,
    look_every: str,
    as_json: bool,
) -> None:
    """Compare the arms of an A/B experiment: rates, business value and significance.

    Per arm: predictions, labelled predictions, accuracy, precision, recall,
    detection rate and mean business value per labelled prediction (from the
    configured costs by outcome). Tests against the control arm: two-proportion
    z-tests on the error rate and the detection rate, a Welch t-test on the
    per-prediction business value, each with effect size, confidence interval and
    p-value. Below 30 labelled predictions per arm the status is insufficient_data.
    Next to each, the always-valid sequential test (mSPRT), replayed with a look every
    --look-every of event time: its p-value and confidence sequence stay valid
    however often the experiment is checked.

    \b
    Example:
      streamon ab report --experiment exp-1 --config configs/monitoring_config.yaml \\
          --predictions predictions.jsonl --labels labels.jsonl
      streamon ab report --experiment exp-1 --bootstrap-servers 127.0.0.1:9092 --json
    """
    import orjson

    from streamon.abreport import analyse, collect_from_files, collect_from_kafka, print_report
    from streamon.config import load_config, parse_duration
    from streamon.engine import build_engine
    from streamon.errors import InputError

    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be in (0, 1) (got {alpha:g})")
    try:
        look_s = parse_duration(look_every)
    except ValueError as exc:
        raise InputError(f"--look-every {look_every!r}: {exc}") from None
    settings = _with_bootstrap(load_config(config_path), bootstrap_servers)
    engine = build_engine(settings)
    if predictions is not None:
        if bootstrap_servers:
            raise InputError("give --predictions/--labels or --bootstrap-servers, not both")
        data = collect_from_files(engine, predictions, labels, experiment, model)
    elif bootstrap_servers:
        if labels is not None:
            raise InputError("--labels needs --predictions")
        data = collect_from_kafka(engine, experiment, model)
    else:
        raise InputError("give --predictions (and --labels) JSONL files, or --bootstrap-servers")
    ab_cfg = settings.ab_testing
    report = analyse(
        data,
        engine.evaluation.costs,
        control=control if control is not None else ab_cfg.control,
        alpha=alpha,
        tau=sequential_tau if sequential_tau is not None else ab_cfg.sequential_tau,
        look_every=look_s,
    )
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print_report(report)


# --------------------------------------------------------------------------- alert-router, doctor, dashboards


@cli.command("alert-router")
@CONFIG_OPTION
@click.option(
    "--alertmanager-url",
    "alertmanager_urls",
    multiple=True,
    envvar="STREAMON_ALERTMANAGER_URL",
    help="Alertmanager base URL, e.g. http://alertmanager:9093 (repeatable; env STREAMON_ALERTMANAGER_URL)",
)
@click.option(
    "--webhook",
    "webhooks",
    multiple=True,
    envvar="STREAMON_WEBHOOKS",
    help="generic webhook URL that receives each event's JSON (repeatable; env STREAMON_WEBHOOKS, "
    "space-separated, keeps secret URLs off the command line)",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="state of the de-duplication table [default: $STREAMON_STATE_DIR/alert-router or "
    "./streamon-router-state]",
)
@click.option(
    "--store",
    type=click.Choice(["rocksdb", "memory"]),
    default="rocksdb",
    show_default=True,
    help="table store; both are restored from the table's changelog topic when empty",
)
@click.option("--bootstrap-servers", default=None, help="override kafka.bootstrap_servers")
@click.option(
    "--attempt-timeout", type=float, default=5.0, show_default=True, help="seconds per delivery attempt"
)
@click.option(
    "--retry-initial", type=float, default=0.5, show_default=True, help="first retry delay, seconds"
)
@click.option("--retry-max", type=float, default=30.0, show_default=True, help="longest retry delay, seconds")
@click.option(
    "--resend-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="re-send firing alerts to Alertmanager this often, seconds",
)
@click.option(
    "--start-from",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    show_default=True,
    help="where a router group with no committed offset starts in the alerts topic",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="KEY=VALUE added to every alert sent to Alertmanager (repeatable); give Prometheus' "
    "external_labels so both sources send the same alert, e.g. --label monitor=streamon",
)
@click.option("--web-port", type=int, default=None, help="serve faust's web endpoint on 127.0.0.1:PORT")
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR")
def alert_router(
    config_path: Path,
    alertmanager_urls: tuple[str, ...],
    webhooks: tuple[str, ...],
    data_dir: Path | None,
    store: str,
    bootstrap_servers: str | None,
    attempt_timeout: float,
    retry_initial: float,
    retry_max: float,
    resend_interval: float,
    start_from: str,
    labels: tuple[str, ...],
    web_port: int | None,
    log_level: str,
) -> None:
    """Forward alert events from Kafka to Alertmanager (API v2) and webhooks.

    A faust agent reads the alerts topic, forwards each state change once (a firing
    alert already forwarded is not forwarded again; its resolve is), and moves past
    an event only once every target accepted it: an unreachable target is retried
    with exponential backoff, without limit, so no alert is lost. Firing alerts are
    re-sent to Alertmanager every --resend-interval. SIGTERM stops cleanly.

    \b
    Example:
      streamon alert-router --config configs/monitoring_config.yaml \\
          --alertmanager-url http://alertmanager:9093 --data-dir /var/lib/streamon/router
    """
    import os

    from streamon.config import load_config
    from streamon.errors import InputError
    from streamon.router import RouterOptions, run_router

    extra: list[tuple[str, str]] = []
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label must be KEY=VALUE (got {item!r})")
        extra.append((key, value))

    settings = _with_bootstrap(load_config(config_path), bootstrap_servers)
    if data_dir is None:
        base = os.environ.get("STREAMON_STATE_DIR")
        data_dir = Path(base) / "alert-router" if base else Path("streamon-router-state")
    options = RouterOptions(
        alertmanager_urls=alertmanager_urls,
        webhooks=webhooks,
        data_dir=data_dir,
        store=store,  # type: ignore[arg-type]
        attempt_timeout=attempt_timeout,
        retry_initial=retry_initial,
        retry_max=retry_max,
        resend_interval=resend_interval,
        start_from=start_from,  # type: ignore[arg-type]
        web_port=web_port,
        extra_labels=tuple(extra),
    )
    run_router(settings, options, log_level)


@cli.command()
@CONFIG_OPTION
@click.option(
    "--prometheus-url",
    default=None,
    envvar="STREAMON_PROMETHEUS_URL",
    help="Prometheus base URL [default: http://prometheus:9090, the docker-compose service]",
)
@click.option(
    "--alertmanager-url",
    default=None,
    envvar="STREAMON_ALERTMANAGER_URL",
    help="Alertmanager base URL [default: http://alertmanager:9093, the docker-compose service]",
)
@click.option(
    "--grafana-url", default=None, help="Grafana base URL [default: monitoring.dashboards.grafana_url]"
)
@click.option(
    "--worker-url",
    "worker_urls",
    multiple=True,
    help="a worker's metrics endpoint base, e.g. http://127.0.0.1:8080 (repeatable; optional)",
)
@click.option("--bootstrap-servers", default=None, help="override kafka.bootstrap_servers")
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(["prometheus", "alertmanager", "grafana"]),
    help="do not check this service (repeatable)",
)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds per check")
def doctor(
    config_path: Path,
    prometheus_url: str | None,
    alertmanager_url: str | None,
    grafana_url: str | None,
    worker_urls: tuple[str, ...],
    bootstrap_servers: str | None,
    skip: tuple[str, ...],
    timeout: float,
) -> None:
    """Check that everything streamon needs is reachable and set up right.

    Kafka (reachable, topics exist, predictions and labels co-partitioned, partials
    retention long enough), Prometheus, Alertmanager, Grafana and, when given, workers'
    /metrics. Prints one OK or FAIL line per check, with what is wrong and how to fix it;
    exits 0 when every check passes, else 1. Secrets are never printed.

    \b
    Example:
      streamon doctor --config configs/monitoring_config.yaml \\
          --prometheus-url http://127.0.0.1:9090 --alertmanager-url http://127.0.0.1:9093
    """
    from streamon.config import load_config
    from streamon.doctor import DoctorOptions, run_checks

    settings = _with_bootstrap(load_config(config_path), bootstrap_servers)
    options = DoctorOptions(
        prometheus_url=prometheus_url,
        alertmanager_url=alertmanager_url,
        grafana_url=grafana_url,
        worker_urls=worker_urls,
        skip=frozenset(skip),
        timeout=timeout,
    )
    ok = run_checks(settings, options, click.echo)
    sys.exit(0 if ok else 1)


@cli.group()
def dashboards() -> None:
    """Grafana dashboards (deploy/grafana/dashboards)."""


@dashboards.command("deploy")
@CONFIG_OPTION
@click.option(
    "--grafana-url", default=None, help="Grafana base URL [default: monitoring.dashboards.grafana_url]"
)
@click.option("--folder", default=None, help="folder title [default: monitoring.dashboards.folder]")
@click.option(
    "--datasource",
    default=None,
    help="uid (or name) of the Prometheus datasource the panels use "
    "[default: monitoring.dashboards.datasource]",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=None,
    help="file holding a Grafana service-account token [default: env GRAFANA_TOKEN]",
)
@click.option(
    "--dashboards-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="directory of dashboard JSON files [default: deploy/grafana/dashboards]",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="seconds per HTTP request")
def dashboards_deploy(
    config_path: Path,
    grafana_url: str | None,
    folder: str | None,
    datasource: str | None,
    token_file: Path | None,
    dashboards_dir: Path | None,
    timeout: float,
) -> None:
    """Create or update the streamon dashboards in Grafana through its HTTP API.

    Creates the folder when missing, points every panel at the given datasource and
    saves each dashboard (overwrite); a dashboard already identical is left alone, so
    running it twice changes nothing. The token is sent as a Bearer header, never printed.

    \b
    Example:
      GRAFANA_TOKEN=... streamon dashboards deploy --config configs/monitoring_config.yaml \\
          --grafana-url http://127.0.0.1:3000
    """
    from streamon.config import load_config
    from streamon.dashboards import deploy_dashboards, read_token

    settings = load_config(config_path)
    results = deploy_dashboards(
        settings,
        grafana_url=grafana_url,
        folder=folder,
        datasource=datasource,
        token=read_token(token_file),
        dashboards_dir=dashboards_dir,
        timeout=timeout,
    )
    for r in results:
        click.echo(r.line())


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


def entry() -> None:
    """The ``streamon`` console script: :func:`main`, and a failed run exits without teardown.

    A command that fails (refused credentials, an unreachable cluster) may leave librdkafka
    threads behind, in the middle of a TLS handshake; tearing the interpreter down under
    them can crash the process (SIGSEGV) after the one error line was printed, turning exit
    code 3 into -11. A failed run has nothing left to save: flush what was written and leave.
    """
    try:
        main()
    except SystemExit as exc:
        if not isinstance(exc.code, int) or exc.code == 0:
            raise
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code)

"""``streamon doctor``: is everything streamon needs reachable and set up right?

One line per check, ``OK`` or ``FAIL`` (or ``SKIP`` when asked), a FAIL saying what is wrong
and how to fix it. The checks:

- ``kafka``: the brokers answer a metadata request (AdminClient.list_topics, short timeout);
- ``topics``: every configured topic exists;
- ``co-partitioning``: predictions and labels have the same partition count (the join
  needs partition *i* of both on one worker);
- ``partials retention``: the partials topic (stage 2's changelog) keeps at least
  current + reference window, is not size-capped and is not compacted;
- ``prometheus``, ``alertmanager``: ``/-/ready``; ``prometheus targets``: Prometheus scrapes
  at least one streamon worker (``up{job=~"streamon|streamon-file-sd"}``);
- ``grafana``: ``/api/health`` reports its database ok;
- ``worker <url>`` (only for --worker-url): /metrics answers with streamon's metrics.

Secrets are never printed: kafka.client values whose key contains password, secret, token
or key are masked (``<property>_file`` / ``_env`` references are shown: they name where the
secret is, not the secret), URLs are shown without credentials or query, and error texts are
scrubbed of every secret, including those read from the references.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamon.config import Settings, format_duration
from streamon.errors import StreamonError
from streamon.kafka_client import (
    kafka_client_config,
    probe,
    resolve_client,
    scrub,
    secret_values,
    split_reference,
)

DEFAULT_PROMETHEUS_URL = "http://prometheus:9090"
DEFAULT_ALERTMANAGER_URL = "http://alertmanager:9093"
SECRET_WORDS = ("password", "secret", "token", "key")
MASK = "****"
WORKER_JOBS = 'up{job=~"streamon|streamon-file-sd"}'


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str  # OK | FAIL | SKIP
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"

    def line(self) -> str:
        """One output line.

        >>> Check("kafka", "FAIL", "cannot reach 127.0.0.1:1", "start the broker").line()
        'FAIL kafka: cannot reach 127.0.0.1:1; fix: start the broker'
        >>> Check("grafana", "OK", "http://g:3000 healthy").line()
        'OK   grafana: http://g:3000 healthy'
        """
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text}; fix: {self.fix}" if self.status == "FAIL" and self.fix else text


@dataclass(frozen=True)
class DoctorOptions:
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    grafana_url: str | None = None
    worker_urls: tuple[str, ...] = ()
    skip: frozenset[str] = field(default_factory=frozenset)
    timeout: float = 5.0


def is_secret(key: str) -> bool:
    """True for a kafka.client property whose value must not be shown.

    >>> [k for k in ("sasl.password", "ssl.key.location", "sasl.oauthbearer.token", "client.id")
    ...  if is_secret(k)]
    ['sasl.password', 'ssl.key.location', 'sasl.oauthbearer.token']
    """
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_client(client: Mapping[str, Any]) -> dict[str, Any]:
    """kafka.client with the secret values replaced by ``****`` (references are shown as is).

    >>> mask_client({"security.protocol": "SASL_SSL", "sasl.password": "hunter2"})
    {'security.protocol': 'SASL_SSL', 'sasl.password': '****'}
    >>> mask_client({"sasl.password_file": "/run/secrets/kafka"})
    {'sasl.password_file': '/run/secrets/kafka'}
    """
    return {k: (MASK if is_secret(k) and split_reference(k) is None else v) for k, v in client.items()}


def display_url(url: str) -> str:
    """``url`` without user info and query (either may carry a credential).

    >>> display_url("https://admin:pw@grafana.example.com:3000/grafana?token=x")
    'https://grafana.example.com:3000/grafana'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class _Scrubber:
    """Removes every secret value from a text (error messages may echo configuration)."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s for s in secrets if len(s) >= 3]

    def __call__(self, text: str) -> str:
        return " ".join(scrub(text, self.secrets, MASK).split())


def _secrets(settings: Settings, urls: list[str]) -> list[str]:
    out = [str(v) for k, v in settings.kafka.client.items() if is_secret(k) and split_reference(k) is None]
    try:
        out += secret_values(resolve_client(settings.kafka.client))
    except StreamonError:
        pass  # the kafka check reports the unresolvable reference
    for url in urls:
        parts = urlsplit(url)
        out += [p for p in (parts.password, parts.query) if p]
    return out


# --------------------------------------------------------------------------- Kafka


def _admin(settings: Settings) -> Any:
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("streamon.doctor.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False  # librdkafka's connection errors are summarised in our FAIL line
    conf: dict[str, Any] = kafka_client_config(settings)  # secrets resolved; error_cb a SecurityWatch
    conf["logger"] = quiet
    return AdminClient(conf)


def _kafka_reason(exc: Exception, scrub: Callable[[str], str]) -> str:
    err = exc.args[0] if exc.args else exc
    text = err.str() if hasattr(err, "str") else str(err)  # KafkaError: its message, not its repr
    return scrub(str(text))


def _problem_and_fix(line: str) -> tuple[str, str]:
    """A one-line error split into what is wrong and what to do.

    >>> _problem_and_fix("Kafka authentication failed for SASL/PLAIN user 'u' at h:1: check kafka.client x")
    ("Kafka authentication failed for SASL/PLAIN user 'u' at h:1", 'check kafka.client x')
    >>> _problem_and_fix("kafka.client.sasl.password_env: environment variable PW is not set; set it")
    ('kafka.client.sasl.password_env: environment variable PW is not set', 'set it')
    """
    for sep, keep in ((": check ", "check "), ("; ", "")):
        if sep in line:
            problem, _, fix = line.rpartition(sep)
            return problem, keep + fix
    return line, ""


def kafka_checks(settings: Settings, timeout: float, scrub: Callable[[str], str]) -> Iterator[Check]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, ResourceType

    k = settings.kafka
    t = k.topics
    bootstrap = k.bootstrap_servers
    dependent = ("topics", "co-partitioning", "message size", "partials retention")
    started = time.monotonic()
    try:
        admin = _admin(settings)
        md = probe(admin, timeout)
    except StreamonError as exc:  # a secret reference that cannot be resolved, refused credentials, TLS
        yield Check("kafka", "FAIL", *_problem_and_fix(scrub(str(exc))))
        for name in dependent:
            yield Check(name, "FAIL", "not checked: no connection to Kafka", "fix the kafka check first")
        return
    except (KafkaException, ValueError, TypeError) as exc:
        yield Check(
            "kafka",
            "FAIL",
            f"cannot reach {bootstrap} within {timeout:g}s ({_kafka_reason(exc, scrub)})",
            "check kafka.bootstrap_servers (or --bootstrap-servers), that the brokers run and are "
            "reachable from here, and the kafka.client security settings",
        )
        for name in dependent:
            yield Check(name, "FAIL", "not checked: Kafka is unreachable", "fix the kafka check first")
        return
    took = time.monotonic() - started
    yield Check("kafka", "OK", f"{bootstrap} answered in {took:.2f}s ({len(md.brokers)} broker(s))")

    counts = {name: len(tm.partitions) for name, tm in md.topics.items() if tm.error is None}
    wanted = {
        "predictions": (t.predictions, k.partitions),
        "labels": (t.labels, k.partitions),
        "partials": (t.partials, k.partials_partitions),
        "alerts": (t.alerts, 1),
        "dead_letter": (t.dead_letter, 1),
    }
    missing = [(key, name, n) for key, (name, n) in wanted.items() if name not in counts]
    if missing:
        names = ", ".join(f"{name} (kafka.topics.{key})" for key, name, _ in missing)
        create = "; ".join(
            f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {name} --partitions {n}"
            for _, name, n in missing
        )
        yield Check(
            "topics",
            "FAIL",
            f"missing: {names}",
            f"start a streamon worker once (it creates missing topics), or create them: {create}",
        )
    else:
        yield Check("topics", "OK", ", ".join(f"{name} ({counts[name]})" for name, _ in wanted.values()))

    n_pred, n_lab = counts.get(t.predictions), counts.get(t.labels)
    if n_pred is None or n_lab is None:
        yield Check(
            "co-partitioning",
            "FAIL",
            "not checked: predictions or labels topic missing",
            "fix the topics check first",
        )
    elif n_pred != n_lab:
        more, target = (t.labels, n_pred) if n_lab < n_pred else (t.predictions, n_lab)
        yield Check(
            "co-partitioning",
            "FAIL",
            f"{t.predictions} has {n_pred} partitions but {t.labels} has {n_lab}; the join needs the same "
            "count (and both keyed by prediction_id)",
            f"kafka-topics.sh --bootstrap-server {bootstrap} --alter --topic {more} --partitions {target} "
            "(adding partitions moves keys: do it before traffic, or recreate both topics)",
        )
    else:
        yield Check("co-partitioning", "OK", f"{t.predictions} and {t.labels} both have {n_pred} partitions")

    yield _message_size_check(admin, settings, counts, timeout, scrub)

    if t.partials not in counts:
        yield Check(
            "partials retention", "FAIL", f"not checked: {t.partials} missing", "fix the topics check first"
        )
        return
    w = settings.windows
    needed_ms = int((w.current + w.reference) * 1000)
    try:
        resource = ConfigResource(ResourceType.TOPIC, t.partials)
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout)
    except KafkaException as exc:
        yield Check(
            "partials retention",
            "FAIL",
            f"cannot read the configuration of {t.partials} ({_kafka_reason(exc, scrub)})",
            "grant DescribeConfigs on the topic to this principal",
        )
        return
    config = {name: entry.value for name, entry in entries.items()}
    retention = int(config.get("retention.ms") or -1)
    size_cap = int(config.get("retention.bytes") or -1)
    policy = str(config.get("cleanup.policy") or "delete")
    alter = (
        f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
        f"--entity-name {t.partials}"
    )
    problems, fixes = [], []
    if retention != -1 and retention < needed_ms:
        problems.append(
            f"retention.ms {retention} ({format_duration(retention / 1000)}) < current + reference window "
            f"{needed_ms} ({format_duration(needed_ms / 1000)}): stage 2 could not rebuild its windows"
        )
        fixes.append(f"retention.ms={needed_ms + 86_400_000}")
    if size_cap != -1:
        problems.append(f"retention.bytes {size_cap} may delete partials inside the window")
        fixes.append("retention.bytes=-1")
    if "compact" in policy:
        problems.append(f"cleanup.policy {policy} keeps one partial per model, not the window")
        fixes.append("cleanup.policy=delete")
    if problems:
        yield Check(
            "partials retention", "FAIL", "; ".join(problems), f"{alter} --add-config {','.join(fixes)}"
        )
    else:
        shown = "unlimited" if retention == -1 else format_duration(retention / 1000)
        yield Check(
            "partials retention",
            "OK",
            f"{t.partials} keeps {shown} >= current + reference {format_duration(needed_ms / 1000)}",
        )


def _message_size_check(
    admin: Any, settings: Settings, counts: Mapping[str, int], timeout: float, scrub: Callable[[str], str]
) -> Check:
    """The worker's own start check: the partials and dead-letter topics take the largest
    message stage 1 produces (else every transaction carrying one fails)."""
    from streamon.runtime.topics import check_message_limits, produce_limit

    t = settings.kafka.topics
    absent = [name for name in (t.partials, t.dead_letter) if name not in counts]
    if absent:
        return Check(
            "message size", "FAIL", f"not checked: {', '.join(absent)} missing", "fix the topics check first"
        )
    try:
        check_message_limits(admin, settings, timeout)
    except StreamonError as exc:
        problem, _, fix = scrub(str(exc)).partition(": raise it ")
        return Check("message size", "FAIL", problem, f"raise it {fix}")
    return Check(
        "message size",
        "OK",
        f"{t.partials} and {t.dead_letter} take the {produce_limit(settings)} bytes stage 1 may send",
    )


# --------------------------------------------------------------------------- HTTP services


def _get(
    url: str, timeout: float, scrub: Callable[[str], str], params: dict[str, str] | None = None
) -> tuple[Any, str]:
    """(response or None, one-line reason of the failure)."""
    import requests

    try:
        return requests.get(url, params=params, timeout=timeout), ""
    except requests.Timeout:
        return None, f"no answer within {timeout:g}s"
    except requests.ConnectionError as exc:
        root = exc.args[0] if exc.args else exc
        reason = getattr(root, "reason", root)
        text = str(reason).split(": ", 1)[-1] if ": " in str(reason) else str(reason)
        return None, scrub(f"cannot connect ({text})")
    except requests.RequestException as exc:
        return None, scrub(f"{type(exc).__name__}: {exc}")


def _ready_check(
    name: str, base: str, path: str, timeout: float, scrub: Callable[[str], str], fix: str
) -> Check:
    shown = display_url(base)
    resp, reason = _get(base.rstrip("/") + path, timeout, scrub)
    if resp is None:
        return Check(name, "FAIL", f"{shown}{path}: {reason}", fix)
    if resp.status_code != 200:
        body = scrub(resp.text[:120])
        return Check(name, "FAIL", f"{shown}{path} answered HTTP {resp.status_code} {body}".rstrip(), fix)
    return Check(name, "OK", f"{shown} ready")


def prometheus_checks(base: str, timeout: float, scrub: Callable[[str], str]) -> Iterator[Check]:
    fix = (
        "start Prometheus with deploy/prometheus/prometheus.yml, or pass --prometheus-url "
        "(env STREAMON_PROMETHEUS_URL) with its address"
    )
    ready = _ready_check("prometheus", base, "/-/ready", timeout, scrub, fix)
    yield ready
    targets_fix = (
        "list the workers' host:port (monitoring.prometheus.port) in deploy/prometheus/prometheus.yml "
        "(job streamon) or deploy/prometheus/targets/*.json, and check they serve /metrics"
    )
    if not ready.ok:
        yield Check(
            "prometheus targets",
            "FAIL",
            "not checked: Prometheus is not ready",
            "fix the prometheus check first",
        )
        return
    resp, reason = _get(f"{base.rstrip('/')}/api/v1/query", timeout, scrub, {"query": WORKER_JOBS})
    if resp is None or resp.status_code != 200:
        detail = reason or f"HTTP {resp.status_code if resp is not None else '?'}"
        yield Check("prometheus targets", "FAIL", f"cannot query {WORKER_JOBS}: {detail}", targets_fix)
        return
    series = resp.json().get("data", {}).get("result", [])
    up = [s["metric"].get("instance", "?") for s in series if s.get("value", [0, "0"])[1] == "1"]
    down = [s["metric"].get("instance", "?") for s in series if s.get("value", [0, "0"])[1] != "1"]
    if not series:
        yield Check("prometheus targets", "FAIL", "Prometheus scrapes no streamon worker", targets_fix)
    elif not up:
        yield Check(
            "prometheus targets", "FAIL", f"every streamon worker is down: {', '.join(down)}", targets_fix
        )
    else:
        extra = f"; down: {', '.join(down)}" if down else ""
        yield Check("prometheus targets", "OK", f"{len(up)} streamon worker(s) up{extra}")


def grafana_check(base: str, timeout: float, scrub: Callable[[str], str]) -> Check:
    fix = (
        "start Grafana (docker-compose service grafana), or set monitoring.dashboards.grafana_url / "
        "pass --grafana-url with its address"
    )
    shown = display_url(base)
    resp, reason = _get(base.rstrip("/") + "/api/health", timeout, scrub)
    if resp is None:
        return Check("grafana", "FAIL", f"{shown}/api/health: {reason}", fix)
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or body.get("database") != "ok":
        return Check(
            "grafana",
            "FAIL",
            f"{shown}/api/health answered HTTP {resp.status_code}, database {body.get('database', '?')}",
            "check Grafana's log and its database",
        )
    return Check("grafana", "OK", f"{shown} healthy (version {body.get('version', '?')})")


def worker_check(url: str, metrics_path: str, timeout: float, scrub: Callable[[str], str]) -> Check:
    base = url.rstrip("/")
    full = base if base.endswith(metrics_path.rstrip("/")) else base + metrics_path
    name = f"worker {display_url(url)}"
    fix = (
        "start the worker (streamon worker), check monitoring.prometheus.port / --metrics-port and "
        "that the port is reachable from here"
    )
    resp, reason = _get(full, timeout, scrub)
    if resp is None:
        return Check(name, "FAIL", f"{display_url(full)}: {reason}", fix)
    if resp.status_code == 401:  # monitoring.prometheus.web_config_file has basic_auth_users
        return Check(
            name, "FAIL", f"{display_url(full)} requires basic auth (HTTP 401)",
            "give the user in the URL: --worker-url https://USER:PASSWORD@host:port",
        )  # fmt: skip
    if resp.status_code != 200:
        return Check(name, "FAIL", f"{display_url(full)} answered HTTP {resp.status_code}", fix)
    if "streamon_" not in resp.text:
        return Check(
            name, "FAIL", f"{display_url(full)} serves no streamon metrics", "point at a streamon worker"
        )
    models = resp.text.count("\nml_model_accuracy{")
    return Check(name, "OK", f"/metrics answers ({models} ml_model_accuracy series)")


# --------------------------------------------------------------------------- all together


def run_checks(settings: Settings, options: DoctorOptions, echo: Callable[[str], Any] = print) -> bool:
    """Run every check, echo one line per check as it completes; True when none failed."""
    prometheus = options.prometheus_url or DEFAULT_PROMETHEUS_URL
    alertmanager = options.alertmanager_url or DEFAULT_ALERTMANAGER_URL
    grafana = options.grafana_url or settings.monitoring.dashboards.grafana_url
    scrub = _Scrubber(_secrets(settings, [prometheus, alertmanager, grafana, *options.worker_urls]))
    client = mask_client(settings.kafka.client)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(client.items()))
    echo(f"streamon doctor: kafka {settings.kafka.bootstrap_servers}" + (f" ({shown})" if shown else ""))

    def checks() -> Iterator[Check]:
        yield from kafka_checks(settings, options.timeout, scrub)
        if "prometheus" in options.skip:
            yield Check("prometheus", "SKIP", "--skip prometheus")
        else:
            yield from prometheus_checks(prometheus, options.timeout, scrub)
        if "alertmanager" in options.skip:
            yield Check("alertmanager", "SKIP", "--skip alertmanager")
        else:
            yield _ready_check(
                "alertmanager",
                alertmanager,
                "/-/ready",
                options.timeout,
                scrub,
                "start Alertmanager with deploy/alertmanager/alertmanager.yml, or pass --alertmanager-url "
                "(env STREAMON_ALERTMANAGER_URL) with its address",
            )
        if "grafana" in options.skip:
            yield Check("grafana", "SKIP", "--skip grafana")
        else:
            yield grafana_check(grafana, options.timeout, scrub)
        for url in options.worker_urls:
            yield worker_check(url, settings.monitoring.prometheus.metrics_path, options.timeout, scrub)

    ok = True
    for check in checks():
        echo(check.line())
        ok = ok and check.ok
    return ok

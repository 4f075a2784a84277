"""``streamon alert-router``: the alerts topic -> Alertmanager API v2 and generic webhooks.

A faust-streaming agent (design.md §5: faust is for this low-rate path only, never the hot
path) reads the alert events that stage 2 publishes (JSON, key = fingerprint) and forwards
each state change once:

- De-duplication: a faust Table keyed by fingerprint holds the last event forwarded. A
  ``firing`` event for a fingerprint already firing is not forwarded again; ``resolved``
  after ``firing`` is, and so is a new ``firing`` after ``resolved``. The table is
  co-partitioned with the alerts topic (same key, same partition count) and backed by a
  changelog topic, with a local RocksDB (rocksdict) or in-memory store.
- Delivery: every target (each Alertmanager, each webhook) must accept the event (2xx)
  before the agent moves on. Failures are retried with exponential backoff, each attempt
  bounded by a timeout, with no overall limit, one log line per failed attempt. faust acks
  (and so commits the offset of) an event only after the agent's loop body for it returned,
  so an unreachable target holds the partition at that event: nothing after it is
  committed and nothing is lost, across restarts too. HTTP 400/422 (the target says the
  alert itself is invalid, retrying cannot help) is logged as an error with the whole event
  and skipped for that target, so one bad event cannot block every later alert.
- Re-assertion: Alertmanager forgets an alert whose ``endsAt`` passed, and keeps alerts
  only in memory. Like Prometheus, the router sends firing alerts with ``endsAt`` = now +
  4 x the resend interval and re-sends every firing alert of its table on that interval,
  so Alertmanager never times out a firing alert while the router runs, and a restarted
  Alertmanager has them again within one interval.

Delivery is at-least-once: after a crash between a delivery and the commit, the event is
forwarded again (Alertmanager merges identical alerts; webhook receivers should key on
``fingerprint`` + ``status``).

Pure helpers (payload mapping, de-duplication rule, backoff) are at the top and have
doctests; the faust app is built by :func:`build_app`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import orjson

from streamon.config import Settings
from streamon.errors import InputError, StreamonError
from streamon.kafka_client import kafka_client_config, resolve_client

log = logging.getLogger("streamon.router")

TABLE_NAME = "forwarded"
# Set on a table value whose event an Alertmanager rejected as invalid (HTTP 400/422).
REJECTED = "_streamon_router_rejected"
# Statuses Alertmanager (and this router) know.
STATUSES = ("firing", "resolved")
# Dashboards a generatorURL points at, by alert category (deploy/grafana/dashboards).
CATEGORY_DASHBOARDS = {
    "model_performance": "streamon-model-performance",
    "data_quality": "streamon-data-drift",
    "business_impact": "streamon-business-impact",
    "infrastructure": "streamon-pipeline",
}
# HTTP answers that say the alert itself is bad: retrying the same body cannot succeed.
PERMANENT_STATUSES = (400, 422)


# --------------------------------------------------------------------------- pure helpers


def redact_url(url: str) -> str:
    """``url`` without credentials, path details or query, for log lines and output.

    Webhook URLs often are the secret (Slack, Teams); a log must not leak them.

    >>> redact_url("https://user:pw@hooks.example.com/services/T0/B0/XXXX?x=1")
    'https://hooks.example.com/…'
    >>> redact_url("http://127.0.0.1:9093")
    'http://127.0.0.1:9093'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    tail = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{netloc}{tail}"


def should_forward(previous: str | None, status: str) -> bool:
    """The de-duplication rule: forward unless ``status`` is what was last forwarded.

    >>> should_forward(None, "firing"), should_forward("firing", "firing")
    (True, False)
    >>> should_forward("firing", "resolved"), should_forward("resolved", "resolved")
    (True, False)
    >>> should_forward("resolved", "firing")  # fires again
    True
    """
    return previous != status


def backoff_delays(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """Endless exponential backoff: initial, initial*factor, ... capped at ``maximum``.

    >>> import itertools
    >>> list(itertools.islice(backoff_delays(0.5, 4.0), 6))
    [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    """
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * factor, maximum)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def generator_url(event: Mapping[str, Any], grafana_url: str) -> str:
    """The Grafana dashboard that shows the alert's metric, filtered to its model.

    >>> generator_url({"category": "data_quality", "model": "fraud detector"}, "http://g:3000/")
    'http://g:3000/d/streamon-data-drift?var-model=fraud%20detector'
    """
    uid = CATEGORY_DASHBOARDS.get(str(event.get("category")), "streamon-pipeline")
    url = f"{grafana_url.rstrip('/')}/d/{uid}"
    model = event.get("model")
    return f"{url}?var-model={quote(str(model), safe='')}" if model else url


def alertmanager_alert(
    event: Mapping[str, Any],
    *,
    now: float,
    validity: float,
    grafana_url: str,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One postable alert of Alertmanager's API v2 for an alert event.

    Labels are the event's labels plus alertname, severity, category and model (empty
    values dropped: Prometheus treats an empty label as absent), plus ``extra_labels`` where
    the event has no such label (like Prometheus' ``external_labels``). Firing alerts get
    ``endsAt`` = now + ``validity`` (re-sent before it passes); resolved ones their own
    ``ends_at``.

    >>> ev = {"fingerprint": "f1", "status": "resolved", "alertname": "A", "severity": "warning",
    ...       "category": "data_quality", "model": "m", "labels": {"feature": "x", "variant": ""},
    ...       "value": 0.3, "threshold": 0.1, "starts_at": "2026-01-01T00:00:00Z",
    ...       "ends_at": "2026-01-01T01:00:00Z", "summary": "s", "description": "d", "window": "current"}
    >>> a = alertmanager_alert(ev, now=0.0, validity=240.0, grafana_url="http://g")
    >>> sorted(a["labels"])  # the empty variant is dropped
    ['alertname', 'category', 'feature', 'model', 'severity']
    >>> a["startsAt"], a["endsAt"], a["annotations"]["value"]
    ('2026-01-01T00:00:00Z', '2026-01-01T01:00:00Z', '0.3')
    """
    labels = {str(k): str(v) for k, v in (event.get("labels") or {}).items() if v not in (None, "")}
    for key in ("alertname", "severity", "category", "model"):
        value = event.get(key)
        if value not in (None, ""):
            labels[key] = str(value)
    for key, value in (extra_labels or {}).items():
        labels.setdefault(key, value)
    annotations = {
        "summary": str(event.get("summary") or event.get("alertname") or ""),
        "description": str(event.get("description") or ""),
        "fingerprint": str(event.get("fingerprint", "")),
    }
    for key in ("value", "threshold", "window"):
        if event.get(key) is not None:
            annotations[key] = f"{event[key]:.6g}" if isinstance(event[key], float) else str(event[key])
    starts_at = str(event.get("starts_at") or _iso(now))
    start = _parse_iso(starts_at) or now
    if event.get("status") == "resolved":
        ends_at = str(event.get("ends_at") or _iso(max(now, start)))
    else:
        # Never before startsAt: Alertmanager rejects an alert that ends before it starts.
        ends_at = _iso(max(now, start) + validity)
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": generator_url(event, grafana_url),
    }


def parse_event(raw: bytes | None) -> tuple[dict[str, Any] | None, str]:
    """The alert event in ``raw``, or (None, why it cannot be routed).

    >>> parse_event(b'{"fingerprint": "f", "status": "firing", "alertname": "A"}')[0]["status"]
    'firing'
    >>> parse_event(b'not json')
    (None, 'not JSON')
    >>> parse_event(b'{"fingerprint": "f", "status": "pending"}')
    (None, "status must be firing or resolved (got 'pending')")
    """
    if raw is None:
        return None, "empty message"
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(event, dict):
        return None, "not a JSON object"
    if not isinstance(event.get("fingerprint"), str) or not event["fingerprint"]:
        return None, "missing fingerprint"
    if event.get("status") not in STATUSES:
        return None, f"status must be firing or resolved (got {event.get('status')!r})"
    if not isinstance(event.get("alertname"), str) or not event["alertname"]:
        return None, "missing alertname"
    return event, ""


def faust_credentials(client: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """faust (aiokafka) credentials for the librdkafka ``kafka.client`` properties.

    ``client`` is resolved (secrets read from their ``_file`` / ``_env`` keys, see
    :func:`streamon.kafka_client.resolve_client`). Returns (credentials or None, the property
    names the router cannot apply). Supports security.protocol PLAINTEXT / SSL /
    SASL_PLAINTEXT / SASL_SSL with sasl.mechanism PLAIN or SCRAM-SHA-256/512, the CA
    (ssl.ca.location or ssl.ca.pem; the system CAs otherwise), a client certificate
    (ssl.certificate.location + ssl.key.location [+ ssl.key.password]) and
    ssl.endpoint.identification.algorithm / enable.ssl.certificate.verification.

    >>> faust_credentials({"client.id": "x"})
    (None, ['client.id'])
    >>> creds, _ = faust_credentials({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
    ...                               "sasl.username": "u", "sasl.password": "p"})
    >>> creds.mechanism.value, creds.username, creds.ssl_context.check_hostname
    ('SCRAM-SHA-512', 'u', True)
    """
    import faust

    props = dict(client)
    for own in ("bootstrap.servers", "error_cb", "logger"):  # set by streamon itself
        props.pop(own, None)
    protocol = str(props.pop("security.protocol", "PLAINTEXT")).upper()
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=props.pop("ssl.ca.location", None),
            cadata=props.pop("ssl.ca.pem", None),
        )
        cert, key = props.pop("ssl.certificate.location", None), props.pop("ssl.key.location", None)
        if cert:
            context.load_cert_chain(cert, key, props.pop("ssl.key.password", None))
        if str(props.pop("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
            context.check_hostname = False
        if str(props.pop("enable.ssl.certificate.verification", "true")).lower() in ("false", "0"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    credentials: Any = None
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanism = str(props.pop("sasl.mechanism", props.pop("sasl.mechanisms", "PLAIN"))).upper()
        if mechanism == "OAUTHBEARER":
            raise StreamonError(
                "the alert router does not support sasl.mechanism OAUTHBEARER (aiokafka under faust has no "
                "OIDC token client): give it a PLAIN or SCRAM principal in its own config's kafka.client"
            )
        if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise StreamonError(
                f"kafka.client sasl.mechanism {mechanism} is not supported by the alert router "
                "(aiokafka under faust): use PLAIN or SCRAM-SHA-256/512"
            )
        credentials = faust.SASLCredentials(
            username=props.pop("sasl.username", None),
            password=props.pop("sasl.password", None),
            mechanism=mechanism,
            ssl_context=context,
        )
    elif protocol == "SSL":
        # faust.SSLCredentials() without a context fails (faust 0.15: purpose=None); pass one.
        credentials = faust.SSLCredentials(context)
    elif protocol != "PLAINTEXT":
        raise StreamonError(f"kafka.client security.protocol {protocol} is not supported by the alert router")
    return credentials, sorted(props)


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Target:
    """One place alerts go: an Alertmanager (API v2) or a generic webhook (event JSON)."""

    kind: Literal["alertmanager", "webhook"]
    url: str

    @property
    def endpoint(self) -> str:
        if self.kind == "alertmanager":
            return self.url.rstrip("/") + "/api/v2/alerts"
        return self.url

    def __str__(self) -> str:
        return f"{self.kind} {redact_url(self.url)}"


@dataclass
class RouterOptions:
    """What ``streamon alert-router`` was asked to do (see its --help)."""

    alertmanager_urls: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    data_dir: Path = Path("streamon-router-state")
    store: Literal["rocksdb", "memory"] = "rocksdb"
    attempt_timeout: float = 5.0
    retry_initial: float = 0.5
    retry_max: float = 30.0
    resend_interval: float = 60.0
    start_from: Literal["earliest", "latest"] = "earliest"
    web_port: int | None = None
    app_id: str | None = None
    # Added to every alert sent to Alertmanager unless the event has the label: set them to
    # Prometheus' external_labels so both sources produce the same label set (one alert).
    extra_labels: tuple[tuple[str, str], ...] = ()

    @property
    def targets(self) -> list[Target]:
        return [Target("alertmanager", u) for u in self.alertmanager_urls] + [
            Target("webhook", u) for u in self.webhooks
        ]


@dataclass
class Deliverer:
    """Delivers alert events to every target, retrying each until it accepts."""

    targets: list[Target]
    grafana_url: str
    attempt_timeout: float = 5.0
    retry_initial: float = 0.5
    retry_max: float = 30.0
    validity: float = 240.0
    extra_labels: dict[str, str] = field(default_factory=dict)
    failures: int = field(default=0, init=False)

    async def deliver(self, event: dict[str, Any], raw: bytes) -> list[Target]:
        """Return once every target accepted ``event``, or rejected it as invalid (returned)."""
        import aiohttp

        async with aiohttp.ClientSession() as session:
            accepted = await asyncio.gather(
                *(self._until_accepted(session, t, event, raw) for t in self.targets)
            )
        return [t for t, ok in zip(self.targets, accepted, strict=True) if not ok]

    def _body(self, target: Target, event: dict[str, Any], raw: bytes) -> bytes:
        if target.kind == "alertmanager":
            alert = alertmanager_alert(
                event,
                now=time.time(),
                validity=self.validity,
                grafana_url=self.grafana_url,
                extra_labels=self.extra_labels,
            )
            return orjson.dumps([alert])
        return raw

    async def _until_accepted(self, session: Any, target: Target, event: dict[str, Any], raw: bytes) -> bool:
        what = f"{event['alertname']} {event['status']} (fingerprint {event['fingerprint']})"
        delays = backoff_delays(self.retry_initial, self.retry_max)
        attempt = 0
        while True:
            attempt += 1
            status, detail = await self._post(session, target, self._body(target, event, raw))
            if status is not None and 200 <= status < 300:
                log.info("forwarded %s to %s", what, target)
                return True
            if status in PERMANENT_STATUSES:
                log.error(
                    "%s rejected %s as invalid (HTTP %d: %s); not retrying, event: %s",
                    target, what, status, detail, raw.decode(errors="replace"),
                )  # fmt: skip
                return False
            self.failures += 1
            delay = next(delays)
            log.warning(
                "delivery of %s to %s failed (attempt %d): %s; retrying in %.1fs",
                what, target, attempt, detail, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _post(self, session: Any, target: Target, body: bytes) -> tuple[int | None, str]:
        """(HTTP status or None, one-line detail) of one bounded attempt."""
        import aiohttp

        try:
            async with session.post(
                target.endpoint,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.attempt_timeout),
            ) as resp:
                text = " ".join((await resp.text(errors="replace")).split())[:200]
                return resp.status, f"HTTP {resp.status}" + (f": {text}" if text else "")
        except TimeoutError:
            return None, f"no answer within {self.attempt_timeout:g}s"
        except aiohttp.ClientError as exc:
            return None, " ".join(f"{type(exc).__name__}: {exc}".split())[:200]

    async def reassert(self, events: list[dict[str, Any]]) -> None:
        """Re-send firing alerts to every Alertmanager once (no retry: the next interval is one)."""
        import aiohttp

        ams = [t for t in self.targets if t.kind == "alertmanager"]
        if not events or not ams:
            return
        now = time.time()
        body = orjson.dumps(
            [
                alertmanager_alert(
                    e,
                    now=now,
                    validity=self.validity,
                    grafana_url=self.grafana_url,
                    extra_labels=self.extra_labels,
                )
                for e in events
            ]
        )
        async with aiohttp.ClientSession() as session:
            for target in ams:
                status, detail = await self._post(session, target, body)
                if status is None or not 200 <= status < 300:
                    log.warning("re-sending %d firing alerts to %s failed: %s", len(events), target, detail)


# --------------------------------------------------------------------------- the faust app


def alerts_partitions(settings: Settings, timeout: float = 15.0) -> int:
    """Partition count of the alerts topic; created (1 partition, like the workers do) if missing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from streamon.runtime.topics import partition_counts

    k = settings.kafka
    from streamon.logs import librdkafka_logger

    # librdkafka's own lines as JSON log lines (secrets scrubbed), like every other client.
    conf: dict[str, Any] = {**kafka_client_config(settings), "logger": librdkafka_logger(k.client)}
    admin = AdminClient(conf)
    topic = k.topics.alerts
    existing = partition_counts(admin, timeout, bootstrap=k.bootstrap_servers)
    if topic in existing:
        return existing[topic]
    future = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=k.replication_factor)])
    try:
        future[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise StreamonError(f"cannot create topic {topic}: {exc.args[0]}") from None
    return len(admin.list_topics(topic, timeout=timeout).topics[topic].partitions)


def build_app(settings: Settings, options: RouterOptions, partitions: int) -> Any:
    """The faust app: one agent over the alerts topic and the de-duplication table."""
    import faust

    k = settings.kafka
    credentials, ignored = faust_credentials(resolve_client(k.client))
    if ignored:
        log.warning("kafka.client properties not applied by the alert router (aiokafka): %s", ignored)
    brokers = [f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",") if h.strip()]
    app_id = options.app_id or f"{k.group_id}-alert-router"
    options.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=brokers,
        broker_credentials=credentials,
        store="rocksdb://" if options.store == "rocksdb" else "memory://",
        datadir=str(options.data_dir),
        web_enabled=options.web_port is not None,
        web_port=options.web_port or 6066,
        web_bind="127.0.0.1",
        topic_replication_factor=k.replication_factor,
        topic_partitions=partitions,
        table_standby_replicas=0,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset=options.start_from,
        autodiscover=False,
        producer_acks=-1,
        # Events and table values are JSON bytes, parsed here (a bad event is logged, not fatal).
        key_serializer="raw",
        value_serializer="raw",
    )
    topic = app.topic(
        k.topics.alerts,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    # fingerprint -> the last event forwarded (JSON bytes).
    table = app.Table(TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes)
    validity = 4 * options.resend_interval
    deliverer = Deliverer(
        options.targets,
        settings.monitoring.dashboards.grafana_url,
        attempt_timeout=options.attempt_timeout,
        retry_initial=options.retry_initial,
        retry_max=options.retry_max,
        validity=validity,
        extra_labels=dict(options.extra_labels),
    )

    @app.agent(topic)
    async def route(stream: Any) -> None:
        async for event_msg in stream.events():
            raw: bytes | None = event_msg.value
            where = f"{event_msg.message.topic}:{event_msg.message.partition}@{event_msg.message.offset}"
            event, why = parse_event(raw)
            if event is None or raw is None:
                log.error("skipping the alert event at %s: %s", where, why)
                continue
            key = event["fingerprint"].encode()
            previous = table.get(key)
            prev_status = orjson.loads(previous).get("status") if previous else None
            if not should_forward(prev_status, event["status"]):
                log.info(
                    "%s %s (fingerprint %s) already forwarded; skipped",
                    event["alertname"], event["status"], event["fingerprint"],
                )  # fmt: skip
                continue
            rejected = await deliverer.deliver(event, raw)
            if any(t.kind == "alertmanager" for t in rejected):
                # Remembered as forwarded (no endless retry), but never re-sent: a batch with
                # an alert Alertmanager rejects would be rejected whole.
                table[key] = orjson.dumps({**event, REJECTED: True})
            else:
                table[key] = raw

    @app.timer(interval=options.resend_interval)
    async def reassert() -> None:
        firing = []
        for value in table.values():
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if event.get("status") == "firing" and not event.get(REJECTED):
                firing.append(event)
        await deliverer.reassert(firing)

    return app


def run_router(settings: Settings, options: RouterOptions, log_level: str = "INFO") -> None:
    """Run the router until SIGTERM / SIGINT (faust's worker handles both: clean stop)."""
    from faust.worker import Worker as FaustWorker

    if not options.targets:
        raise InputError("give at least one --alertmanager-url or --webhook")
    for target in options.targets:
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{target.kind} URL must be http(s)://host[:port][/path] (got {target})")
    for key, _ in options.extra_labels:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InputError(f"--label {key}=...: not a Prometheus label name (letters, digits, '_')")
    for name, value in (
        ("--attempt-timeout", options.attempt_timeout),
        ("--retry-initial", options.retry_initial),
        ("--retry-max", options.retry_max),
        ("--resend-interval", options.resend_interval),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise InputError(f"{name} must be > 0 (got {value:g})")
    level = log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if level != "DEBUG":  # faust, mode and aiokafka narrate every rebalance at INFO
        for name in ("faust", "mode", "aiokafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
    partitions = alerts_partitions(settings)
    app = build_app(settings, options, partitions)
    log.info(
        "alert router %s: %s (%d partitions) -> %s; table store %s in %s",
        app.conf.id, settings.kafka.topics.alerts, partitions,
        ", ".join(str(t) for t in options.targets), options.store, options.data_dir,
    )  # fmt: skip
    worker = FaustWorker(
        app,
        loglevel=level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal progress spinner; it writes escape codes into log files
    worker.execute_from_commandline()

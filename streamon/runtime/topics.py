"""Topic checks and creation: co-partitioning of the inputs, retention of the partials, and
the message size stage 1 produces to the partials and dead-letter topics."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streamon.config import Settings
from streamon.errors import KafkaUnavailableError, StreamonError
from streamon.kafka_client import probe

log = logging.getLogger("streamon.topics")

DAY_MS = 86_400_000

# A dead letter's bytes beyond its value: the streamon.* headers (the detail is cut to 1000
# bytes) and the source key, kept only up to DEAD_LETTER_KEY_BYTES.
DEAD_LETTER_KEY_BYTES = 1024
# What a dead letter keeps of a value it cannot hold whole (too large, or quarantined).
DEAD_LETTER_PREVIEW_BYTES = 1024
DEAD_LETTER_OVERHEAD = 8192
# Record and batch framing around one message, with room to spare.
FRAMING_BYTES = 16384


def produce_limit(settings: Settings) -> int:
    """The largest message stage 1 produces, framing included: its producer's message.max.bytes.

    Partials are split to ``kafka.max_partial_bytes``; a dead letter holds at most
    ``kafka.max_message_bytes`` of value (larger input is dead-lettered as a reference). The
    producer batches messages up to this size too, so a topic accepting record batches of
    this size (``max.message.bytes``) accepts everything stage 1 sends it.

    >>> from streamon.config import default_settings
    >>> produce_limit(default_settings())
    540672
    """
    k = settings.kafka
    return max(k.max_partial_bytes, k.max_message_bytes + DEAD_LETTER_OVERHEAD) + FRAMING_BYTES


def partition_counts(admin: AdminClient, timeout: float = 10.0, *, bootstrap: str) -> dict[str, int]:
    """Topic -> partition count; one KafkaUnavailableError line naming ``bootstrap`` when unreachable."""
    try:
        # In short attempts: refused credentials raise from the client's SecurityWatch at once.
        md = probe(admin, timeout)
    except KafkaException as exc:
        reason = exc.args[0].str() if hasattr(exc.args[0], "str") else str(exc)
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {bootstrap} ({reason}): check kafka.bootstrap_servers "
            "(or --bootstrap-servers) and that the brokers run; for a local broker run "
            "`python3 deploy/kafka/broker.py start`, or try `streamon demo` (needs no Kafka)"
        ) from None
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def ensure_topics(admin: AdminClient, settings: Settings, check_limits: bool = True) -> dict[str, int]:
    """Create missing topics; refuse when predictions and labels are not co-partitioned, or
    (``check_limits``) when the partials or dead-letter topic accepts less than stage 1 sends.

    Returns topic -> partition count.
    """
    k = settings.kafka
    t = k.topics
    w = settings.windows
    partials_retention = int((w.current + w.reference) * 1000) + DAY_MS  # its changelog horizon + a day
    limit = {"max.message.bytes": str(produce_limit(settings))}
    wanted = {
        t.predictions: (k.partitions, {}),
        t.labels: (k.partitions, {}),
        t.partials: (k.partials_partitions, {"retention.ms": str(partials_retention), **limit}),
        t.alerts: (1, {}),
        t.dead_letter: (1, limit),
    }
    existing = partition_counts(admin, bootstrap=k.bootstrap_servers)
    # Co-partitioning is decided by what exists: a new labels topic follows the predictions topic.
    if t.predictions in existing and t.labels not in existing:
        wanted[t.labels] = (existing[t.predictions], {})
    if t.labels in existing and t.predictions not in existing:
        wanted[t.predictions] = (existing[t.labels], {})
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=k.replication_factor, config=cfg)
        for name, (n, cfg) in wanted.items()
        if name not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing).items():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StreamonError(f"cannot create topic {name}: {exc.args[0]}") from None
            except Exception as exc:  # a timeout: the cluster did not answer in time
                raise StreamonError(
                    f"cannot create topic {name} ({type(exc).__name__}): "
                    "check the brokers, or create the topic yourself"
                ) from None
        existing = partition_counts(admin, bootstrap=k.bootstrap_servers)
    n_pred, n_lab = existing.get(t.predictions), existing.get(t.labels)
    if n_pred != n_lab:
        raise StreamonError(
            f"topics {t.predictions} ({n_pred} partitions) and {t.labels} ({n_lab} partitions) are not "
            "co-partitioned: give them the same partition count (and key both by prediction_id)"
        )
    if check_limits:
        check_message_limits(admin, settings)
    return existing


def check_message_limits(admin: AdminClient, settings: Settings, timeout: float = 10.0) -> None:
    """Refuse to start when the partials or dead-letter topic accepts smaller messages than
    stage 1 produces: every transaction carrying one would fail (and be retried forever)."""
    t = settings.kafka.topics
    need = produce_limit(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in (t.partials, t.dead_letter)]
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entry = future.result(timeout=timeout).get("max.message.bytes")
        except Exception as exc:  # e.g. no DescribeConfigs permission: the broker enforces it anyway
            log.warning("cannot read max.message.bytes of topic %s (%s): not checked", resource.name, exc)
            continue
        if entry is None or entry.value is None:
            continue
        have = int(entry.value)
        if have < need:
            raise StreamonError(
                f"topic {resource.name} accepts messages up to {have} bytes (max.message.bytes) but "
                f"streamon produces up to {need}: raise it (kafka-configs.sh --alter --entity-type "
                f"topics --entity-name {resource.name} --add-config max.message.bytes={need}) or "
                "lower kafka.max_partial_bytes / kafka.max_message_bytes"
            )

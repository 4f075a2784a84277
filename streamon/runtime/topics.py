"""Topic checks and creation: co-partitioning of the inputs, retention of the partials."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streamon.config import Settings
from streamon.errors import KafkaUnavailableError, StreamonError
from streamon.kafka_client import probe

DAY_MS = 86_400_000


def partition_counts(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    try:
        # In short attempts: refused credentials raise from the client's SecurityWatch at once.
        md = probe(admin, timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"cannot reach Kafka ({exc.args[0]}): check kafka.bootstrap_servers and that the brokers run"
        ) from None
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def ensure_topics(admin: AdminClient, settings: Settings) -> dict[str, int]:
    """Create missing topics; refuse when predictions and labels are not co-partitioned.

    Returns topic -> partition count.
    """
    k = settings.kafka
    t = k.topics
    w = settings.windows
    partials_retention = int((w.current + w.reference) * 1000) + DAY_MS  # its changelog horizon + a day
    wanted = {
        t.predictions: (k.partitions, {}),
        t.labels: (k.partitions, {}),
        t.partials: (k.partials_partitions, {"retention.ms": str(partials_retention)}),
        t.alerts: (1, {}),
        t.dead_letter: (1, {}),
    }
    existing = partition_counts(admin)
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
        existing = partition_counts(admin)
    n_pred, n_lab = existing.get(t.predictions), existing.get(t.labels)
    if n_pred != n_lab:
        raise StreamonError(
            f"topics {t.predictions} ({n_pred} partitions) and {t.labels} ({n_lab} partitions) are not "
            "co-partitioned: give them the same partition count (and key both by prediction_id)"
        )
    return existing

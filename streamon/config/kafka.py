"""``kafka``: the cluster, topics, client settings and the worker's limits and timeouts."""

from __future__ import annotations

import re

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamon.config._base import (
    ClientValue,
    Duration,
    Int,
    NonEmptyStr,
    _config_relative_path,
    _PathError,
    _require_positive,
    _Section,
)

# --------------------------------------------------------------------------- kafka

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CLIENT_KEY = re.compile(r"[a-z][a-z0-9._]*")
# streamon sets these itself: overriding them would break the group or exactly-once.
_RESERVED_CLIENT_KEYS = {
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "group.id": "use kafka.group_id",
    "transactional.id": "streamon derives it per worker for exactly-once",
    "group.instance.id": "streamon derives it from --instance-id (static membership)",
    "session.timeout.ms": "use kafka.session_timeout",
    "enable.auto.commit": "offsets are committed inside transactions",
    "isolation.level": "streamon reads read_committed for exactly-once",
}


class Topics(_Section):
    predictions: NonEmptyStr = "predictions"
    labels: NonEmptyStr = "labels"
    partials: NonEmptyStr = "streamon-partials"
    alerts: NonEmptyStr = "streamon-alerts"
    dead_letter: NonEmptyStr = "streamon-dead-letter"

    @field_validator("*")
    @classmethod
    def _legal(cls, value: str) -> str:
        if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError("not a legal Kafka topic name (1-249 of letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Topics:
        # Sharing a topic would feed partials or alerts back into the input decoder.
        seen: dict[str, str] = {}
        for key, topic in self.model_dump().items():
            if topic in seen:
                raise _PathError(
                    (key,), f"topic '{topic}' is also kafka.topics.{seen[topic]}; topics must differ"
                )
            seen[topic] = key
        return self


class KafkaConfig(_Section):
    bootstrap_servers: NonEmptyStr = "127.0.0.1:9092"
    group_id: NonEmptyStr = "streamon"
    topics: Topics = Field(default_factory=Topics)
    # Used only when streamon creates missing topics. Predictions and labels must be
    # co-partitioned (same count, key = prediction_id) for the join to see both sides.
    partitions: Int = Field(default=6, ge=1, le=10000)
    partials_partitions: Int = Field(default=6, ge=1, le=10000)
    replication_factor: Int = Field(default=1, ge=1, le=32)
    batch_size: Int = Field(default=5000, ge=1, le=1_000_000)
    flush_interval: Duration = 1.0
    max_message_bytes: Int = Field(default=65536, ge=1024)
    # How long the group waits for a silent worker before its partitions move (session.timeout.ms).
    # With --instance-id (static membership) it is also how long a restarting worker keeps its
    # partitions: a restart within it restores only the gap. Bounds: the broker's defaults for
    # group.min/max.session.timeout.ms.
    session_timeout: Duration = 30.0
    # Stage 1 splits a batch's partial deltas into messages of at most this many bytes (the
    # producer's message.max.bytes and the topics' max.message.bytes follow, see topics.py).
    # >= 256 KiB: one indivisible part of a bucket (a full quantile sketch) always fits.
    max_partial_bytes: Int = Field(default=524288, ge=262144, le=64 * 1024 * 1024)
    # Failed tries of the same stage-1 batch, for a reason carried by its messages (too large
    # for a topic), before the message at fault is isolated and dead-lettered as `quarantined`.
    quarantine_after: Int = Field(default=3, ge=1, le=100)
    # A worker that has work but commits no transaction for this long (brokers gone, a call
    # stuck in librdkafka) exits with code 4 so that its supervisor restarts it.
    stall_timeout: Duration = 120.0
    # After SIGTERM the worker finishes or aborts its batch and leaves the groups; past this
    # it exits at once (code 4). Keep it below the supervisor's own kill timeout.
    shutdown_grace: Duration = 30.0
    client: dict[str, ClientValue] = Field(default_factory=dict)

    @field_validator("flush_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _require_positive(value)

    @field_validator("stall_timeout", "shutdown_grace")
    @classmethod
    def _liveness_bounds(cls, value: float) -> float:
        if not 1.0 <= value <= 86400.0:
            raise ValueError("must be between 1s and 24h")
        return value

    @field_validator("session_timeout")
    @classmethod
    def _session_timeout(cls, value: float) -> float:
        if not 6.0 <= value <= 1800.0:
            raise ValueError("must be between 6s and 30m (the broker's session timeout bounds)")
        return value

    @field_validator("client")
    @classmethod
    def _client_keys(
        cls, value: dict[str, str | int | float | bool], info: ValidationInfo
    ) -> dict[str, str | int | float | bool]:
        # Secrets come from <property>_file / <property>_env, resolved only when a client is
        # built (streamon.kafka_client): the settings never hold them.
        from streamon.kafka_client import client_entry_problem, split_reference

        out = dict(value)
        for key, item in value.items():
            ref = split_reference(key)
            prop = ref[0] if ref else key
            if prop in _RESERVED_CLIENT_KEYS:
                raise _PathError((key,), f"set by streamon, not here: {_RESERVED_CLIENT_KEYS[prop]}")
            if not _CLIENT_KEY.fullmatch(key):
                raise _PathError((key,), "not a librdkafka property name (e.g. 'security.protocol')")
            problem = client_entry_problem(key, item)
            if problem:
                raise _PathError((key,), problem)
            twin = next((k for k in (prop, f"{prop}_file", f"{prop}_env") if k != key and k in value), None)
            if ref and twin:
                raise _PathError((key,), f"{twin} is given as well: keep one of the two")
            if ref and ref[1] == "file":  # a non-empty string (checked above)
                out[key] = str(_config_relative_path(item, info))
        return out

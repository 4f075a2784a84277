"""Shared fixtures. The ``kafka`` fixture gives a REAL Apache Kafka broker.

The broker is started once per session by ``deploy/kafka/broker.py`` (real Kafka 4.x,
KRaft, no Docker), unless ``STREAMON_TEST_BOOTSTRAP`` names an existing broker.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "kafka"))

import broker as broker_script  # noqa: E402


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("STREAMON_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    state_dir = Path(tempfile.mkdtemp(prefix="streamon-test-kafka-"))
    info = broker_script.start(state_dir)
    print(f"\nreal Kafka broker at {info.bootstrap}, ready in {info.started_s}s", file=sys.stderr)
    try:
        yield info.bootstrap
    finally:
        broker_script.stop(state_dir)


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics for one test; they are deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def create(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            try:
                future.result(timeout=30)
            except Exception:  # best effort: a topic may already be gone
                pass

"""``streamon doctor``'s message-size check against the real broker: a dead-letter topic that
takes smaller messages than stage 1 produces fails with the command that fixes it, the same
verdict as the worker's start check; topics as the worker creates them pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streamon.config import Settings
from streamon.doctor import kafka_checks
from streamon.runtime.topics import ensure_topics, produce_limit
from tests.integration import harness as h

pytestmark = pytest.mark.integration


def _message_size(settings: Settings) -> tuple[str, str, str]:
    (check,) = [c for c in kafka_checks(settings, 10.0, lambda s: s) if c.name == "message size"]
    return check.status, check.detail, check.fix


def test_doctor_checks_the_message_size_the_worker_needs(kafka_bootstrap: str, tmp_path: Path) -> None:
    d = h.settings_dict(kafka_bootstrap, partitions=1)
    _, settings = h.write_config(tmp_path, d)
    t = settings.kafka.topics
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    small = NewTopic(
        t.dead_letter, num_partitions=1, replication_factor=1, config={"max.message.bytes": "100000"}
    )
    admin.create_topics([small])[t.dead_letter].result(timeout=30)
    ensure_topics(admin, settings, check_limits=False)  # the others as the worker creates them
    status, detail, fix = _message_size(settings)
    assert status == "FAIL", detail
    assert f"topic {t.dead_letter} accepts messages up to 100000 bytes" in detail, detail
    assert f"--entity-name {t.dead_letter} --add-config max.message.bytes={produce_limit(settings)}" in fix, (
        fix
    )

    d2 = h.settings_dict(kafka_bootstrap, partitions=1)
    _, fresh = h.write_config(tmp_path, d2)
    ensure_topics(admin, fresh)
    status, detail, _ = _message_size(fresh)
    assert status == "OK", detail

"""Fixtures of the integration tests (the session-wide ``stack`` is in ``tests/conftest.py``)."""

from __future__ import annotations

import uuid

import pytest

TOPIC_PARTITIONS = 4


@pytest.fixture
def topic(stack):
    """A fresh topic of ``TOPIC_PARTITIONS`` partitions, deleted afterwards."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"test.topic_{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="test-topic")
    try:
        admin.create_topics([NewTopic(name, TOPIC_PARTITIONS, 1)], timeout_ms=30_000)
        yield name
        admin.delete_topics([name], timeout_ms=30_000)
    finally:
        admin.close()

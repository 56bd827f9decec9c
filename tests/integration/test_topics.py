"""Consumer-group lag against the real broker: :class:`pipeline.topics.LagProbe` (one
connection polled many times) and :func:`pipeline.topics.group_lag` (one-off) agree, and
follow commits and new messages between polls."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _send(bootstrap: str, topic: str, n: int, start: int = 0) -> dict[int, int]:
    """Send ``n`` keyed messages; messages per partition."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=f"k{i}".encode(), value=b"x") for i in range(start, start + n)]
        producer.flush(timeout=30)
        per: dict[int, int] = {}
        for f in futures:
            p = f.get(timeout=30).partition
            per[p] = per.get(p, 0) + 1
        return per
    finally:
        producer.close(timeout=10)


def test_lag_probe_follows_commits_and_new_messages(stack, topic):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from pipeline.topics import LagProbe, group_lag

    group = f"test-lag-{uuid.uuid4().hex[:8]}"
    per = _send(stack.kafka_bootstrap, topic, 100)
    assert sum(per.values()) == 100 and len(per) > 1
    with LagProbe(stack.kafka_bootstrap, group) as probe:
        assert probe(topic) == (100, 100)  # nothing committed: all of it is lag
        # the group commits the end of one partition and half of another
        p0, p1 = sorted(per)[:2]
        committer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False)
        try:
            committer.commit({TopicPartition(topic, p0): OffsetAndMetadata(per[p0], "", -1),
                              TopicPartition(topic, p1): OffsetAndMetadata(per[p1] // 2, "", -1)})  # fmt: skip
        finally:
            committer.close()
        expected = 100 - per[p0] - per[p1] // 2
        assert probe(topic) == (expected, 100)
        assert group_lag(stack.kafka_bootstrap, group, topic) == (expected, 100)
        # new messages raise the end offsets and the lag, seen by the same probe
        _send(stack.kafka_bootstrap, topic, 20, start=100)
        assert probe(topic) == (expected + 20, 120)
        assert group_lag(stack.kafka_bootstrap, group, topic) == (expected + 20, 120)

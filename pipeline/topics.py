"""Kafka topics of the pipeline: creation and consumer-group lag (kafka-python admin)."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.settings import Settings
from schemas._errors import RoadsenseError

__all__ = ["ensure_topics", "group_lag", "TopicError"]


class TopicError(RoadsenseError):
    """The broker refused or could not be reached for a topic operation."""


def _admin(bootstrap: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="roadsense-admin", request_timeout_ms=15000)
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline's named topics if absent (partitions from settings); returns created."""
    names = [settings.frames_topic, settings.dlq_topic, settings.passes_topic, settings.impacts_topic,
             settings.alerts_topic]
    admin = _admin(settings.kafka_bootstrap)
    created: list[str] = []
    try:
        # Workers starting together race to create: one that loses re-lists and goes on.
        for _ in range(3):
            existing = set(admin.list_topics())
            new = [NewTopic(n, settings.partitions, 1) for n in names if n not in existing]
            if not new:
                break
            try:
                admin.create_topics(new, timeout_ms=15000)
                created += [t.name for t in new]
                break
            except TopicAlreadyExistsError:
                continue
        return created
    finally:
        admin.close()


def group_lag(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(messages not yet committed by ``group``, end offset sum) over ``topic``'s partitions."""
    admin = _admin(bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="roadsense-lag", enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({group: tps}).get(group, {})
        lag = 0
        for tp in tps:
            c = committed.get(tp)
            off = c.offset if c is not None and c.offset >= 0 else 0
            lag += max(0, ends[tp] - off)
        return lag, sum(ends.values())
    finally:
        consumer.close()
        admin.close()

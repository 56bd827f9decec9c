"""Kafka topics of the pipeline: creation and consumer-group lag (kafka-python admin)."""

from __future__ import annotations

import time
from collections.abc import Collection

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.settings import Settings
from schemas._errors import RoadsenseError

__all__ = ["ensure_topics", "changelog_topics", "delete_topics", "list_topics", "pipeline_topics", "group_lag",
           "LagProbe", "TopicError"]

# The Faust app's tables (``pipeline.app`` names them from here); Faust names their
# changelogs ``{app_id}-{table}-changelog``.
VEHICLE_TABLE = "vehicle_state"
SEGMENT_TABLE = "segment_state"
TABLES = (VEHICLE_TABLE, SEGMENT_TABLE)


class TopicError(RoadsenseError):
    """The broker refused or could not be reached for a topic operation."""


def _admin(bootstrap: str) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="roadsense-admin", request_timeout_ms=15000)
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc


def changelog_topics(settings: Settings) -> list[str]:
    """Names of the changelog topics Faust keeps for the app's tables."""
    return [f"{settings.app_id}-{t}-changelog" for t in TABLES]


def pipeline_topics(settings: Settings) -> list[str]:
    """Every topic of one app: its five named topics, its tables' changelogs and the topic
    Faust makes for its partition assignor (``{app_id}-__assignor-__leader``)."""
    s = settings
    return [s.frames_topic, s.dlq_topic, s.passes_topic, s.impacts_topic, s.alerts_topic, *changelog_topics(s),
            f"{s.app_id}-__assignor-__leader"]


def list_topics(bootstrap: str, prefixes: tuple[str, ...] = ()) -> list[str]:
    """The broker's topics (those starting with one of ``prefixes`` when given), sorted."""
    admin = _admin(bootstrap)
    try:
        return sorted(t for t in admin.list_topics() if not prefixes or t.startswith(prefixes))
    except KafkaError as exc:
        raise TopicError(f"listing topics at {bootstrap} failed: {exc!r}") from exc
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Collection[str], *, timeout_s: float = 60.0) -> list[str]:
    """Delete those of ``names`` that exist (for runs that make their own topics: tests,
    benches); returns the deleted ones. Topics pile up on a long-lived development broker
    otherwise, and thousands of them cost the broker CPU."""
    admin = _admin(bootstrap)
    try:
        gone = sorted(set(names) & set(admin.list_topics()))
        for i in range(0, len(gone), 200):
            admin.delete_topics(gone[i : i + 200], timeout_ms=int(timeout_s * 1000))
        return gone
    except KafkaError as exc:
        raise TopicError(f"deleting topics at {bootstrap} failed: {exc!r}") from exc
    finally:
        admin.close()


def ensure_topics(settings: Settings, *, wait_s: float = 30.0) -> list[str]:
    """Create the pipeline's topics if absent, tables' changelogs included; returns created.

    The changelogs are created here, not left to Faust: a worker that starts while its
    client's metadata does not yet list a changelog fails the first table write
    (``PartitionsMismatch``: "changelog has 0 partitions"). Returns once a fresh client
    sees every topic with its partitions (at most ``wait_s``), so that a worker started
    next finds them.
    """
    names = [settings.frames_topic, settings.dlq_topic, settings.passes_topic, settings.impacts_topic,
             settings.alerts_topic]
    compacted = changelog_topics(settings)
    admin = _admin(settings.kafka_bootstrap)
    created: list[str] = []
    try:
        # Workers starting together race to create: one that loses re-lists and goes on.
        for _ in range(3):
            existing = set(admin.list_topics())
            new = [NewTopic(n, settings.partitions, 1) for n in names if n not in existing]
            new += [NewTopic(n, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"})
                    for n in compacted if n not in existing]
            if not new:
                break
            try:
                admin.create_topics(new, timeout_ms=15000)
                created += [t.name for t in new]
                break
            except TopicAlreadyExistsError:
                continue
    finally:
        admin.close()
    seen = _wait_visible(settings.kafka_bootstrap, names + compacted, wait_s)
    # Keyed topics and the tables' changelogs must agree (a table partition is a source
    # partition; stage 2 joins impacts and passes by partition).
    keyed = [settings.frames_topic, settings.passes_topic, settings.impacts_topic, *compacted]
    wrong = {t: seen[t] for t in keyed if seen[t] != settings.partitions}
    if wrong:
        raise TopicError(
            f"topics with a partition count other than the configured {settings.partitions}: "
            + ", ".join(f"{t} has {n}" for t, n in wrong.items())
            + " (set ROADSENSE_PARTITIONS to match, or recreate them; a table's changelog must have "
            "as many partitions as its source topic)"
        )
    return created


def _wait_visible(bootstrap: str, topics: list[str], wait_s: float) -> dict[str, int]:
    """Partition count of each topic, once a fresh client's metadata lists them all."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="roadsense-topics", enable_auto_commit=False)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            seen = {t: len(consumer.partitions_for_topic(t)) for t in topics}
            missing = [t for t, n in seen.items() if not n]
            if not missing:
                return seen
            if time.monotonic() > deadline:
                raise TopicError(f"topics created but not visible after {wait_s:.0f} s: {', '.join(missing)}")
            time.sleep(0.2)  # partitions_for_topic fetches fresh metadata for a topic it lacks
    finally:
        consumer.close()


class LagProbe:
    """A consumer group's lag, asked repeatedly over one admin and one consumer connection.

    Each :func:`group_lag` call opens (and closes) both clients: about 14 ms of CPU here,
    plus the broker's side. A loop that polls the lag every half second while workers run
    would take that from them; a probe pays it once. Use as a context manager.
    """

    def __init__(self, bootstrap: str, group: str) -> None:
        self.group = group
        self._admin = _admin(bootstrap)
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="roadsense-lag",
                                           enable_auto_commit=False)  # fmt: skip
        except BaseException:
            self._admin.close()
            raise
        self._tps: dict[str, list[TopicPartition]] = {}

    def __call__(self, topic: str) -> tuple[int, int]:
        """(messages not yet committed by the group, end offset sum) over ``topic``'s partitions."""
        tps = self._tps.get(topic)
        if not tps:  # unknown, or no metadata yet: ask again next time
            parts = self._consumer.partitions_for_topic(topic) or set()
            tps = self._tps[topic] = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = self._consumer.end_offsets(tps)
        committed = self._admin.list_group_offsets({self.group: tps}).get(self.group, {})
        lag = 0
        for tp in tps:
            c = committed.get(tp)
            off = c.offset if c is not None and c.offset >= 0 else 0
            lag += max(0, ends[tp] - off)
        return lag, sum(ends.values())

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> LagProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def group_lag(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(messages not yet committed by ``group``, end offset sum) over ``topic``'s partitions
    (one-off: opens and closes its clients; see :class:`LagProbe` to poll)."""
    with LagProbe(bootstrap, group) as probe:
        return probe(topic)

"""The local stack against real processes: Kafka 3.9.1 (KRaft), PostgreSQL, PGlite+TimescaleDB.

Every test makes its own uniquely named topic or table and removes it, so reruns against
a long-running stack start clean.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import psycopg
import pytest

from pipeline import stack as stack_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N_MESSAGES = 200
PARTITIONS = 4  # the `topic` fixture's (tests/integration/conftest.py)


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _payloads() -> dict[bytes, bytes]:
    return {f"vehicle-{i}".encode(): f'{{"i": {i}}}'.encode() for i in range(N_MESSAGES)}


# -- Kafka --------------------------------------------------------------------------------


def test_kafka_python_round_trip(stack, topic):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        assert [b["port"] for b in admin.describe_cluster()["brokers"]] == [
            int(stack.kafka_bootstrap.rsplit(":", 1)[1])
        ]
    finally:
        admin.close()

    sent = _payloads()
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in sent.items()]
        producer.flush(timeout=30)
        partitions = {f.get(timeout=30).partition for f in futures}
    finally:
        producer.close(timeout=10)
    assert partitions == set(range(PARTITIONS))  # keys spread over the 4 partitions

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=_name("test-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    received: dict[bytes, bytes] = {}
    try:
        for msg in consumer:
            received[msg.key] = msg.value
            if len(received) == len(sent):
                break
        consumer.commit()
    finally:
        consumer.close()
    assert received == sent


def test_aiokafka_round_trip(stack, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    sent = _payloads()

    async def run() -> dict[bytes, bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            batch = [await producer.send(topic, key=k, value=v) for k, v in sent.items()]
            metas = await asyncio.gather(*batch)
        finally:
            await producer.stop()
        assert {m.partition for m in metas} == set(range(PARTITIONS))

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=_name("test-group"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: dict[bytes, bytes] = {}
        try:
            async with asyncio.timeout(30):
                while len(received) < len(sent):
                    records = await consumer.getmany(timeout_ms=1000)
                    for msgs in records.values():
                        received.update((m.key, m.value) for m in msgs)
            await consumer.commit()
        finally:
            await consumer.stop()
        return received

    assert asyncio.run(run()) == sent


def test_kafka_auto_creates_topics_with_4_partitions(stack):
    """auto.create.topics.enable (default on, see stack/kafka/server.properties.template)."""
    import os

    from aiokafka import AIOKafkaProducer
    from kafka.admin import KafkaAdminClient

    if os.environ.get("ROADSENSE_KAFKA_AUTO_CREATE_TOPICS", "true").lower() == "false":
        pytest.skip("topic auto-creation disabled by ROADSENSE_KAFKA_AUTO_CREATE_TOPICS")
    name = _name("test.autocreate")

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(name, b"x")
            assert len(await producer.partitions_for(name)) == PARTITIONS
        finally:
            await producer.stop()

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        asyncio.run(run())
        admin.delete_topics([name], timeout_ms=30_000)
    finally:
        admin.close()


# -- PostgreSQL ----------------------------------------------------------------------------


def test_postgres(stack):
    table = _name("test_stack")
    with psycopg.connect(stack.pg_dsn, connect_timeout=10) as conn:
        user, db, tz = conn.execute(
            "SELECT current_user, current_database(), current_setting('TimeZone')"
        ).fetchone()
        assert (user, db, tz) == ("roadsense", "roadsense", "UTC")
        conn.execute(f"CREATE TABLE {table} (k text PRIMARY KEY, v int NOT NULL)")
        try:
            conn.execute(
                f"INSERT INTO {table} VALUES ('a', 1), ('b', 2) "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v"
            )
            assert conn.execute(f"SELECT sum(v) FROM {table}").fetchone() == (3,)
        finally:
            conn.execute(f"DROP TABLE {table}")


def test_postgres_refuses_a_wrong_password(stack):
    bad = stack.pg_dsn.replace("roadsense:", "roadsense:wrong", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=10).close()


# -- TimescaleDB tier (PGlite) --------------------------------------------------------------


def test_pglite_timescaledb_hypertable(stack):
    table = _name("test_ht")
    with psycopg.connect(stack.pglite_dsn, connect_timeout=10, autocommit=True) as conn:
        (version,) = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert version.startswith("2.")
        conn.execute(
            f"CREATE TABLE {table} (ts timestamptz NOT NULL, segment_id text NOT NULL, "
            "iri_m_per_km double precision NOT NULL)"
        )
        try:
            conn.execute("SELECT create_hypertable(%s, 'ts')", (table,))
            assert conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = %s",
                (table,),
            ).fetchone() == (1,)
            conn.execute(
                f"INSERT INTO {table} VALUES "
                "('2026-01-01T00:10Z', 's1', 2.0), ('2026-01-01T05:00Z', 's1', 4.0), "
                "('2026-01-02T01:00Z', 's1', 6.0)"
            )
            rows = conn.execute(
                f"SELECT time_bucket('1 day', ts) AS day, avg(iri_m_per_km) FROM {table} "
                "GROUP BY day ORDER BY day"
            ).fetchall()
            assert [r[1] for r in rows] == [3.0, 6.0]
        finally:
            conn.execute(f"DROP TABLE {table}")


# -- The stack module itself ----------------------------------------------------------------


def test_up_is_idempotent_and_status_reports_running(stack):
    assert stack_mod.up(timescale_tier=True) == stack
    states = {s.name: s for s in stack_mod.status()}
    assert all(s.running and s.pid for s in states.values()), states
    assert states["kafka"].address == stack.kafka_bootstrap
    assert "***" in repr(stack) and stack_mod._password() not in repr(stack)


def test_port_taken_by_a_stranger_is_named(stack):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(stack_mod.StackError, match=rf"127\.0\.0\.1:{port} is already in use"):
            stack_mod._check_ports_free("kafka", {"ROADSENSE_KAFKA_PORT": port})


def test_pglite_clients_do_not_inherit_session_state(stack):
    """PGlite is one backend session; server.mjs resets it when a client disconnects."""
    table = _name("test_tmp")
    for _ in range(2):  # psycopg prepares a query after 5 runs, always named "_pg3_0"
        with psycopg.connect(stack.pglite_dsn, connect_timeout=10) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("public",)
            for _ in range(7):
                conn.execute("SELECT %s::int", (1,)).fetchone()
            conn.execute(f"CREATE TEMP TABLE {table} (x int)")
            conn.execute("SET search_path TO pg_catalog")
            conn.execute("BEGIN")  # left open on purpose

"""The Faust app: named topics, the vehicle-state table and the stage-1 agent.

Thin wiring around ``pipeline.stage1.FrameHandler``. Per message, in this order:

1. decode + validate; bad input goes to ``vehicle.frames.dlq`` with its reason (awaited);
2. ``process_frame`` on the vehicle's state from the table;
3. passes and events committed to the database (idempotent inserts), retried while the
   database is unavailable: a message is never acknowledged before its results are stored;
4. new state written to the table, and its changelog record awaited;
5. passes published on ``segment.passes`` (key = segment id), awaited;
6. the event is acknowledged; Faust commits offsets of acknowledged events only.

A crash between 3 and 6 replays the message: the database ignores the duplicate rows, and
the state's ``last_seq`` (if the changelog got through) makes the replay a no-op.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
from pathlib import Path

import faust

from agents.passes import PassParams
from pipeline import db, sink
from pipeline.exceptions import SinkError
from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import Settings
from pipeline.stage1 import FrameHandler, dead_letter
from pipeline.stats import WorkerStats
from roadnet import load_network

__all__ = ["create_app", "run_worker"]

log = logging.getLogger("roadsense.worker")

DB_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def create_app(settings: Settings) -> faust.App:
    """Build the app for these settings (topics, table, agent), without starting it."""
    net = load_network(settings.network_path)
    handler = FrameHandler(
        net=net,
        pseudonymise=Pseudonymiser(settings.pseudonym_key.get_secret_value()),
        params=PassParams(trim_m=settings.trim_m),
    )
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        web_enabled=False,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
    )
    frames = app.topic(settings.frames_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    passes_topic = app.topic(settings.passes_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    states = app.Table(
        "vehicle_state",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        help="per-vehicle processing state (agents.passes.VehicleState), key = pseudonym",
    )
    stats = WorkerStats(settings.stats_file)
    atexit.register(stats.dump)
    dsn = settings.pg_dsn.get_secret_value()
    worker_name = f"{socket.gethostname()}:{os.getpid()}"
    conn_box: dict[str, object] = {}

    def connection():
        conn = conn_box.get("conn")
        if conn is None or conn.closed:  # type: ignore[union-attr]
            conn = db.connect(dsn, timeout_s=settings.db_timeout_s)
            conn_box["conn"] = conn
        return conn

    def write(passes, events) -> None:
        sink.write_results(connection(), passes, events)

    @app.agent(frames, name="stage1")
    async def stage1(stream: faust.Stream) -> None:
        async for event in stream.noack().events():
            msg = event.message
            raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
            out = handler.handle(raw, lambda k: states.get(k.encode()))
            if out.dead_letter is not None:
                etype, reason = out.dead_letter
                log.warning("dead letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
                env = dead_letter(raw, msg.key, etype, reason, topic=msg.topic, partition=msg.partition,
                                  offset=msg.offset, worker=worker_name)
                fut = await dlq.send(key=msg.key, value=env)
                await fut
                await stream.ack(event)
                stats.record(kafka_ts_ms=_ts_ms(msg), samples=0, passes=0, vehicle=None, dead=True)
                continue
            if out.passes or out.events:
                refused = await _with_retry(lambda: asyncio.to_thread(write, out.passes, out.events))
                if refused is not None:  # the database rejected these rows: not retriable
                    env = dead_letter(raw, msg.key, "SinkError", f"database refused the results: {refused}",
                                      topic=msg.topic, partition=msg.partition, offset=msg.offset, worker=worker_name)
                    await (await dlq.send(key=msg.key, value=env))
                    await stream.ack(event)
                    continue
            if out.state is not None:
                key = out.state_key.encode()  # type: ignore[union-attr]
                states.data[key] = out.state
                await states.send_changelog(msg.partition, key, out.state)
            sent = [await passes_topic.send(key=p.segment_id.encode(), value=p.model_dump_json().encode())
                    for p in out.passes]
            for fut in sent:
                await fut
            await stream.ack(event)
            stats.record(kafka_ts_ms=_ts_ms(msg), samples=out.n_samples, passes=len(out.passes),
                         vehicle=out.state_key, dead=False)

    async def _with_retry(make) -> SinkError | None:
        """Run a database write until it succeeds; a non-retriable refusal is returned."""
        for attempt in range(10_000_000):
            try:
                await make()
                return None
            except SinkError as exc:
                if not exc.retriable:
                    return exc
                delay = DB_RETRY_S[min(attempt, len(DB_RETRY_S) - 1)]
                log.error("database unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # connection lost: wait, never drop, never ack
                delay = DB_RETRY_S[min(attempt, len(DB_RETRY_S) - 1)]
                log.error("database write failed (%s); retrying in %.1fs", exc, delay)
                conn = conn_box.pop("conn", None)
                if conn is not None:
                    try:
                        conn.close()  # type: ignore[union-attr]
                    except Exception:
                        pass
                await asyncio.sleep(delay)
        raise RuntimeError("unreachable")

    app.roadsense_handler = handler  # type: ignore[attr-defined]
    return app


def _ts_ms(msg) -> float | None:
    ts = getattr(msg, "timestamp", None)
    return None if ts is None else float(ts) * 1000.0


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run one worker process until SIGTERM/SIGINT (then it commits and stops)."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

"""The Faust app: named topics, the state tables and the two agents (stage 1 and 2).

Thin wiring around ``pipeline.stage1.FrameHandler``. Per frame (a message holds one
frame, or a bundle of several, handled in order within its event: ``schemas.bundle``):

1. decode + validate; bad input goes to ``vehicle.frames.dlq`` with its reason (a bad
   frame of a bundle alone, with its index);
2. ``process_frame`` on the vehicle's state from the table;
3. the new state *and the frame's results* (the outbox, ``pipeline.stage1``) written to
   the table in one record; passes published on ``segment.passes``; the event joins the
   pending batch, unacknowledged.

Every ``batch_max`` frames or ``batch_s`` seconds (a timer covers idle time), the batch is
committed in this order: (a) all its passes and events in one database transaction
(idempotent inserts, retried while the database is down), (b) the producer flushed, so
that every changelog, dead-letter and pass record of the batch is on the broker, (c) the
events acknowledged (Faust commits offsets of acknowledged events only), (d) the outboxes
of those frames marked confirmed.

Stage 2 (keyed by segment) reads ``segment.impacts`` (and ``segment.passes`` with
``stage2_coverage``; co-partitioned), confirms potholes across vehicles
(``pipeline.stage2``) and writes ``road.alerts`` and the ``road_alerts`` table: per impact,
alerts committed, then the segment's state, then the ack (Faust flushes the producer
before committing offsets).

Nothing is lost and nothing is counted twice: a crash before (c) replays the batch; frames
the state already holds are skipped as duplicates (``last_seq``) and their results, still
in the state's outbox, are re-written by the recovery hook (idempotent) when the table is
recovered, before any new message is processed.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import socket
import time
from collections.abc import Collection
from pathlib import Path

import faust
import mode.loop

from agents.passes import PassParams, compile_kernels
from pipeline import alerts_sink, db, sink
from pipeline.exceptions import OffsetHoleError, SinkError
from pipeline.offset_holes import OffsetHoles, split_expired
from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import Settings
from pipeline.stage1 import FrameHandler, dead_letter, outbox_results, unpack_envelope
from pipeline.stage2 import SegmentState, handle_records
from pipeline.stats import WorkerStats
from pipeline.topics import SEGMENT_TABLE, VEHICLE_TABLE
from schemas import frame_cbor
from schemas._errors import SchemaError
from schemas.bundle import is_bundle, split_bundle
from schemas.records import PassImpact, SegmentPass
from roadnet import load_network

__all__ = ["create_app", "run_worker"]

log = logging.getLogger("roadsense.worker")

DB_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)
_OFFSET_HOLES_ATTR = "roadsense_offset_holes"  # the app's OffsetHoles, which the seek patch feeds
FAIL_STOP_EXIT = 70  # EX_SOFTWARE: the worker stopped itself rather than lose a frame (``fail_stop``)


class _Batch:
    """Events awaiting their commit, with their results (grouped per event)."""

    def __init__(self) -> None:
        self.events: list = []
        self.results: list[tuple] = []  # (event, passes, events, frame bytes, index in its bundle or None)
        self.confirm: list[tuple[str, int]] = []
        self.stats: list[dict] = []
        self.started = 0.0

    def __len__(self) -> int:
        """Frames in the batch (a bundle counts its frames)."""
        return len(self.stats)


def create_app(settings: Settings) -> faust.App:
    """Build the app for these settings (topics, table, agent), without starting it."""
    net = load_network(settings.network_path)
    compile_kernels(net)  # not on the first frame: a cold compile takes ~5 s
    frame_cbor.compile_kernels()
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
        # A dead worker's partitions move to the others after this long (default 60 s).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        web_enabled=False,
        producer_acks=-1,
        # Per frame the worker writes a ~10 KB vehicle state and per impact a segment state
        # (tens of KB on a busy segment): with Faust's 16 KB batches nearly every record
        # was its own produce request (py-spy: 10 % of the worker in the socket write).
        # Larger batches and 5 ms of linger: -13 % CPU per sample, +25 % samples/s
        # (docs/benchmarks.md); the batch commit's producer flush bounds the wait anyway.
        producer_max_batch_size=512 * 1024,
        producer_linger=0.005,
        key_serializer="raw",
        value_serializer="raw",
    )
    # filled by the seek after each rebalance (_rewind_uncommitted_partitions), checked per event
    holes = OffsetHoles()
    setattr(app, _OFFSET_HOLES_ATTR, holes)
    frames = app.topic(settings.frames_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    passes_topic = app.topic(settings.passes_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    impacts_topic = app.topic(settings.impacts_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    alerts_topic = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    stats = WorkerStats(settings.stats_file)
    atexit.register(stats.dump)
    dsn = settings.pg_dsn.get_secret_value()
    worker_name = f"{socket.gethostname()}:{os.getpid()}"
    conn_box: dict[str, object] = {}
    batch = _Batch()
    lock = asyncio.Lock()
    stream_box: dict[str, faust.Stream] = {}

    def connection(name: str = "stage1"):
        """One connection per stage: each stage's writes run in their own worker thread."""
        conn = conn_box.get(name)
        if conn is None or conn.closed:  # type: ignore[union-attr]
            conn = db.connect(dsn, timeout_s=settings.db_timeout_s)
            conn_box[name] = conn
        return conn

    def drop_connection(name: str = "stage1") -> None:
        conn = conn_box.pop(name, None)
        if conn is not None:
            try:
                conn.close()  # type: ignore[union-attr]
            except Exception:
                pass

    async def write_until_done(passes, events) -> SinkError | None:
        """Write until it succeeds; a non-retriable refusal is returned, not raised."""
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(sink.write_results, connection(), passes, events)
                return None
            except SinkError as exc:
                if not exc.retriable:
                    return exc
                err: Exception = exc
            except Exception as exc:  # connection lost: wait, never drop, never ack
                err = exc
            await pause_before_retry("database write", err, attempt, "stage1")
            attempt += 1

    async def pause_before_retry(what: str, err: BaseException, attempt: int, conn_name: str) -> None:
        """After failed write number ``attempt`` (from 0): wait before the next one, with a
        fresh connection; a worker asked to stop exits instead (:func:`exit_unstored`)."""
        if app.should_stop:
            exit_unstored(what, err)
        delay = DB_RETRY_S[min(attempt, len(DB_RETRY_S) - 1)]
        log.error("%s failed (%s); retrying in %.1fs", what, err, delay)
        drop_connection(conn_name)
        await app.sleep(delay)  # returns early when the worker is asked to stop

    async def recover_outboxes() -> None:
        """After the table is recovered: re-write every outbox (idempotent), then confirm."""
        passes, events, done = [], [], []
        for key, value in states.items():
            try:
                state, outbox = unpack_envelope(value)
            except ValueError:
                continue
            if outbox:
                p, e, i = outbox_results(outbox)
                passes += p
                events += e
                for imp in i:  # stage 2 ignores impacts it has already seen
                    await impacts_topic.send(key=imp.segment_id.encode(), value=imp.model_dump_json().encode())
                done.append((key.decode(), max(x["seq"] for x in outbox)))
        if passes or events:
            refused = await write_until_done(passes, events)
            if refused is not None:
                log.error("recovered outbox refused by the database: %s", refused)
            log.info("recovery: re-wrote %d passes, %d events from %d outboxes", len(passes), len(events), len(done))
        for key, seq in done:
            handler.confirm(key, seq)

    states = app.Table(
        VEHICLE_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        on_recover=recover_outboxes,
        help="per-vehicle state + outbox (pipeline.stage1 envelope), key = pseudonym",
    )

    async def flush() -> None:
        """Commit the pending batch: database, producer, acknowledgements, confirmations."""
        async with lock:
            if not batch:
                return
            t0 = time.monotonic()
            passes = [p for r in batch.results for p in r[1]]
            events = [e for r in batch.results for e in r[2]]
            if passes or events:
                refused = await write_until_done(passes, events)
                if refused is not None:
                    # One frame's rows are invalid: write frame by frame, dead-letter the refused.
                    for ev, ps, es, raw, index in batch.results:
                        bad = await write_until_done(ps, es)
                        if bad is not None:
                            m = ev.message
                            env = dead_letter(raw, m.key, "SinkError", f"database refused the results: {bad}",
                                              topic=m.topic, partition=m.partition, offset=m.offset,
                                              worker=worker_name, bundle_index=index)
                            await dlq.send(key=m.key, value=env)
            await app.producer.flush()
            stream = stream_box["stream"]
            for ev in batch.events:
                await stream.ack(ev)
            for key, seq in batch.confirm:
                handler.confirm(key, seq)
            stats.commit_wait_s += time.monotonic() - t0  # before the records: they mark the seconds
            for kw in batch.stats:
                stats.record(**kw)
            batch.__init__()

    @app.agent(frames, name="stage1")
    async def stage1(stream: faust.Stream) -> None:
        stream_box["stream"] = stream
        async for event in stream.noack().events():
            try:
                full = await stage1_event(event)
                if full:
                    await flush()
            except Exception as exc:
                fail_stop(exc, event)

    async def stage1_event(event) -> bool:
        """One message (a frame, or a bundle of frames) into the pending batch; True when
        the batch is due for its commit.

        The event joins the batch only once the state of each of its frames is in the table
        and their records are handed to the producer: an event in the batch is acknowledged
        by the next commit. A bundle's frames are handled in order within the event, so
        every state they write goes to this event's changelog partition, which is their
        vehicles' (``schemas.bundle``: a misrouted frame is dead-lettered).
        """
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        ts_ms = _ts_ms(msg)
        await check_offset("stage 1", msg)
        async with lock:  # the idle commit never takes part of an event's frames
            if not batch:
                batch.started = time.monotonic()
            if not is_bundle(raw):
                await stage1_frame(event, raw, None, None, ts_ms)
            else:
                try:
                    parts = split_bundle(raw)
                except SchemaError as exc:
                    parts = []
                    await stage1_dead(event, raw, None, "SchemaError", str(exc), ts_ms)
                route = (msg.partition, settings.partitions)
                for index, part in enumerate(parts):
                    await stage1_frame(event, part, index, route, ts_ms)
            batch.events.append(event)
            return len(batch) >= settings.batch_max or time.monotonic() - batch.started >= settings.batch_s

    async def stage1_frame(event, raw: bytes, index: int | None, route, ts_ms) -> None:
        """One frame: its state into the table, its records to the producer, its results
        into the batch (or a dead letter). The caller holds the lock."""
        out = handler.handle(raw, lambda k: states.get(k.encode()), route=route)
        if out.dead_letter is not None:
            await stage1_dead(event, raw, index, *out.dead_letter, ts_ms)
            return
        if out.state is not None:
            states[out.state_key.encode()] = out.state  # type: ignore[union-attr]
        for p in out.passes:
            await passes_topic.send(key=p.segment_id.encode(), value=p.model_dump_json().encode())
        for imp in out.impacts:
            await impacts_topic.send(key=imp.segment_id.encode(), value=imp.model_dump_json().encode())
        if out.passes or out.events or out.impacts:
            batch.results.append((event, out.passes, out.events, raw, index))
            batch.confirm.append((out.state_key, out.seq))  # type: ignore[arg-type]
        batch.stats.append(dict(kafka_ts_ms=ts_ms, samples=out.n_samples, passes=len(out.passes),
                                vehicle=out.state_key, dead=False))

    async def stage1_dead(event, raw: bytes, index: int | None, etype: str, reason: str, ts_ms) -> None:
        """A frame (or a whole message) that is bad input: to the dead-letter topic. The
        caller holds the lock."""
        msg = event.message
        where = "" if index is None else f" (frame {index} of the bundle)"
        log.warning("dead letter %s[%s]@%s%s: %s", msg.topic, msg.partition, msg.offset, where, reason)
        env = dead_letter(raw, msg.key, etype, reason, topic=msg.topic, partition=msg.partition,
                          offset=msg.offset, worker=worker_name, bundle_index=index)
        await dlq.send(key=msg.key, value=env)
        batch.stats.append(dict(kafka_ts_ms=ts_ms, samples=0, passes=0, vehicle=None, dead=True))

    async def check_offset(stage: str, msg) -> None:
        """Raise :class:`OffsetHoleError` (the agent then stops the worker) when records
        before ``msg`` on its partition were fetched and never reached the agent; ``msg``
        is neither handled (a vehicle's frames go in order: an earlier one coming later
        would be taken for a duplicate) nor acknowledged (so the hole is not committed
        past) (pipeline.offset_holes, docs/decisions.md)."""
        hole = holes.handled((msg.topic, msg.partition), msg.offset, app.consumer_generation_id)
        if hole is None:
            return
        starts = await app.consumer.earliest_offsets(msg.tp)
        expired, dropped = split_expired(hole, next(iter(starts.values())))
        if expired is not None:
            log.error("%s: offsets %d..%d of %s[%d] were deleted by the broker before this group read them",
                      stage, *expired, msg.topic, msg.partition)
            stats.offsets_expired += expired[1] - expired[0] + 1
        if dropped is not None:
            before = holes.earlier((msg.topic, msg.partition))
            log.error("%s: offsets %d..%d of %s[%d] never reached the agent; offset %d did (generation %d; %s)",
                      stage, *dropped, msg.topic, msg.partition, msg.offset, app.consumer_generation_id,
                      "nothing handled here in an earlier generation" if before is None
                      else "handled here up to offset %d in generation %d" % (before[1], before[0]))
            stats.offsets_skipped += dropped[1] - dropped[0] + 1
            if settings.offset_holes == "stop":
                raise OffsetHoleError(f"offsets {dropped[0]}..{dropped[1]} of {msg.topic}[{msg.partition}] "
                                      "were fetched and never reached the agent")

    def fail_stop(exc: BaseException, event) -> None:
        """An event that could not be handled for a reason other than its content.

        Bad input never gets here (it is dead-lettered); this is the table, the producer,
        records before it that Faust fetched and dropped (:class:`OffsetHoleError`) or a
        bug. The event cannot be acknowledged (its results are not stored, or records before
        it are missing), and the worker cannot go on past it: Faust would restart the agent,
        later acknowledgements would commit offsets beyond it, and at the next rebalance the
        worker would wait forever for it. So the process exits at once, without committing
        anything more, as if killed: a restarted worker (systemd, Kubernetes, ``roadsense
        worker`` again) resumes from the committed offsets, and its recovery re-writes the
        outboxes (``tests/integration/test_pipeline.py`` kills workers to check that path).
        """
        m = event.message
        log.critical("cannot handle %s[%s]@%s, stopping the worker without committing: %r",
                     m.topic, m.partition, m.offset, exc, exc_info=exc)
        _exit_uncommitted()

    def exit_unstored(what: str, err: BaseException) -> None:
        """Asked to stop while the database is unreachable: exit at once, without committing.

        Faust's stop waits for every pending event to be acknowledged (``Consumer.wait_empty``),
        which events whose results are not stored never are: the worker waited until its
        supervisor killed it. Exiting as ``fail_stop`` does is the same outcome without the
        wait: a restarted worker replays the events (docs/decisions.md).
        """
        log.critical("asked to stop while the %s fails (%s): exiting without committing %d pending frames; "
                     "a restarted worker replays them", what, err, len(batch))
        _exit_uncommitted()

    def _exit_uncommitted() -> None:
        stats.dump()
        logging.shutdown()
        os._exit(FAIL_STOP_EXIT)

    segment_states = app.Table(
        SEGMENT_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        help="stage 2: recent impacts, pass coverage and alerts of a segment (pipeline.stage2.SegmentState)",
    )
    # Stage 2 reads the impacts and, with ``stage2_coverage``, the passes too (co-partitioned:
    # same key, same partition count): impacts are the evidence, passes the coverage (hit
    # rate). Without passes every impact counts as its own pass: the hit-rate rule is void.
    stage2_topics = [settings.impacts_topic, *([settings.passes_topic] if settings.stage2_coverage else [])]
    stage2_source = app.topic(*stage2_topics, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    seg_cache: dict[bytes, tuple[bytes, SegmentState]] = {}  # decoded states while the table holds them

    @app.agent(stage2_source, name="stage2")
    async def stage2(stream: faust.Stream) -> None:
        """Keyed by segment: pothole confirmation across vehicles -> road.alerts + database.

        One message at a time: alerts committed to the database before the segment's state
        is written, then the event acknowledged without waiting for the producer (Faust
        flushes the producer before it commits offsets, so an acknowledged event whose
        changelog record is not yet on the broker is not committed either; a flush per
        message cost a network round trip each). Passes (with ``stage2_coverage``) only
        update the segment's coverage. A replay
        recomputes the same alerts (same ids and revisions; upserts keep the highest
        revision) and stage 2 ignores impacts and passes it has already seen.
        """
        async for event in stream.noack().events():
            try:
                await stage2_event(stream, event)
            except Exception as exc:
                fail_stop(exc, event)

    async def stage2_event(stream: faust.Stream, event) -> None:
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        is_pass = msg.topic == settings.passes_topic
        await check_offset("stage 2", msg)
        try:
            rec = SegmentPass.model_validate_json(raw) if is_pass else PassImpact.model_validate_json(raw)
            key = rec.segment_id.encode()
            value = segment_states.get(key)
            cached = seg_cache.get(key)
            if value is None:
                st = None
            elif cached is not None and cached[0] == value:
                st = cached[1]
            else:
                st = SegmentState.from_bytes(value)
            # event time, so that replayed history is not expired on arrival
            if is_pass:
                new_state, alerts = handle_records(st, [], [rec], rec.exit_time, net=net)
            else:
                new_state, alerts = handle_records(st, [rec], [], rec.time, net=net)
        except Exception as exc:
            log.warning("stage 2 dead letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
            env = dead_letter(raw, msg.key, type(exc).__name__, f"stage 2: {exc}", topic=msg.topic,
                              partition=msg.partition, offset=msg.offset, worker=worker_name)
            await (await dlq.send(key=msg.key, value=env))
            await stream.ack(event)
            return
        if alerts:
            await write_alerts_until_done(alerts)
            for a in alerts:
                await alerts_topic.send(key=a.segment_id.encode(), value=a.model_dump_json().encode())
        state_bytes = new_state.to_bytes()
        segment_states[key] = state_bytes
        seg_cache[key] = (state_bytes, new_state)
        if len(seg_cache) > 4096:
            seg_cache.pop(next(iter(seg_cache)))
        await stream.ack(event)

    async def write_alerts_until_done(alerts) -> None:
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(alerts_sink.write_alerts, connection("stage2"), alerts)
                return
            except Exception as exc:  # database down: wait, never ack before the write
                await pause_before_retry("alert write", exc, attempt, "stage2")
                attempt += 1

    @app.timer(interval=max(0.05, settings.batch_s / 2))
    async def flush_idle() -> None:
        # An exception in a timer stops the worker: log it; the next tick retries.
        try:
            if batch and time.monotonic() - batch.started >= settings.batch_s:
                await flush()
        except Exception:
            log.exception("idle flush failed; will retry")

    return app


def _ts_ms(msg) -> float | None:
    ts = getattr(msg, "timestamp", None)
    return None if ts is None else float(ts) * 1000.0


#: the fetch wait Faust passes to every consumer it creates (faust-streaming 0.15,
#: ``faust.transport.drivers.aiokafka``), not a setting of Faust's
_FAUST_FETCH_WAIT_MS = 1500


def _set_fetch_wait(ms: int) -> None:
    """Make the consumers Faust creates in this process wait at most ``ms`` per fetch.

    Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
    With 10 s frames on a pre-loaded topic, one worker used 0.59 of a core at that value
    and 0.94 at 100 ms, for 135 k → 205 k samples/s (docs/benchmarks.md). Only a consumer
    created with Faust's value is changed (our own clients set their own).
    """
    import aiokafka

    init = aiokafka.AIOKafkaConsumer.__init__
    if getattr(init, "_roadsense_fetch_wait", None) is not None:
        init = init.__wrapped__  # type: ignore[attr-defined]

    @functools.wraps(init)
    def patched(self, *args, **kwargs):
        if kwargs.get("fetch_max_wait_ms") == _FAUST_FETCH_WAIT_MS:
            kwargs["fetch_max_wait_ms"] = ms
        init(self, *args, **kwargs)

    patched._roadsense_fetch_wait = ms  # type: ignore[attr-defined]
    aiokafka.AIOKafkaConsumer.__init__ = patched


async def seek_to_committed_or_start(consumer, topics: Collection[str]) -> dict:
    """``consumer.seek_to_committed()``, and partitions of ``topics`` without a committed
    offset back to their first offset; returns the committed offsets (None: none).

    aiokafka's ``AIOKafkaConsumer.seek_to_committed`` leaves a partition whose committed
    offset is None or 0 where its fetch position is. Faust relies on that seek after every
    rebalance: it drops the records fetched while its flow is stopped, or fetched under the
    previous generation, and expects the seek to fetch them again. On a partition nobody
    has committed yet (a new consumer group, a new partition, the first seconds of a
    deployment) the position stays after the dropped records, so they are never processed,
    and nothing reports it (docs/decisions.md, "Records lost at a rebalance"). Only the
    topics whose offsets the group commits are rewound, not the changelogs, which Faust
    positions itself. Records already processed come again and are recognised as
    duplicates, as after any rebalance (at-least-once).
    """
    committed = await consumer.seek_to_committed()
    rewind = [tp for tp, offset in committed.items() if not offset and tp.topic in topics]
    for tp in rewind:
        # not seek_to_beginning(): it waits for the broker's answer (up to the request
        # timeout), which would hold up a worker stopping during a rebalance. Offset 0, if
        # already deleted, is reset by the fetcher to the first offset (auto_offset_reset).
        consumer.seek(tp, 0)
    return committed


def _rewind_uncommitted_partitions() -> None:
    """Make Faust's seek to committed offsets use :func:`seek_to_committed_or_start`,
    for the topics the app commits (its stream sources)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread.seek_to_committed, "_roadsense", False):
        return

    async def seek_to_committed(self) -> dict:
        acking = set(self.app.topics.acking_topics)
        committed = await self.call_thread(seek_to_committed_or_start, self._ensure_consumer(), acking)
        holes = getattr(self.app, _OFFSET_HOLES_ATTR, None)
        if holes is not None:
            generation = self.app.consumer_generation_id
            for tp, offset in committed.items():
                if tp.topic in acking:
                    holes.sought((tp.topic, tp.partition), offset, generation)
        return committed

    seek_to_committed._roadsense = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]


def _resume_keeps_queued_records() -> None:
    """Make ``FlowControlEvent.resume()`` empty the agents' queues only when it ends a
    suspension, not when the flow is already running.

    Faust's recovery (``Recovery.on_recovery_completed``, and ``_resume_streams`` for an
    app without tables) resumes the stream partitions, seeks them to the committed offsets,
    then calls ``app.flow_control.resume()``, whose queues (``clear_on_resume``) are
    emptied. By then the flow has been running for a while (the changelog and standby reads
    resumed it), so a record fetched after the seek may be in an agent's queue, with its
    offset already recorded as read: it was dropped and never fetched again. A single such
    record was lost silently, since ``Consumer._new_offset`` commits past one
    unacknowledged offset at the committed position; several stalled the partition's
    commits (docs/decisions.md, "A record dropped between the seek and the resume").

    The queues need emptying when a suspension ends: what was queued before it belongs to
    the assignment that was revoked. A queue filled while the flow runs holds records of the
    current assignment, fetched at or after the committed offsets; a record that comes
    again after a seek is a duplicate, as after any rebalance.
    """
    from mode.utils.queues import FlowControlEvent

    resume = FlowControlEvent.resume
    if getattr(resume, "_roadsense", False):
        return

    @functools.wraps(resume)
    def resume_if_suspended(self) -> None:
        if not self.is_active():
            resume(self)

    resume_if_suspended._roadsense = True  # type: ignore[attr-defined]
    FlowControlEvent.resume = resume_if_suspended  # type: ignore[method-assign]


def _seek_before_resuming_streams() -> None:
    """Make Faust's recovery seek the stream partitions to their committed offsets before it
    resumes fetching them, not after.

    ``Recovery.on_recovery_completed`` (and ``_resume_streams``, for an app without tables)
    resumes the stream partitions and then awaits the seek, so the fetcher can hand over
    records of the new assignment before the seek: from the fetch position of the partition
    (its committed offset, but a newly assigned partition was also seen fetched from above
    it), checked against the consumer's read offset of the partition. Faust forgets read
    offsets when partitions are revoked, but the drain loop can write one back afterwards:
    a record whose delivery the revocation cut short is still marked read. With such a
    stale offset, the records before it are dropped as already read and the record at it is
    handed over; the seek then sets the read offset back and the partition is fetched again
    from the committed offset, so the agent gets a later record before an earlier one, or
    (the earlier one now below the read offset again) never gets it (docs/decisions.md,
    "Streams resumed after their seek"). Resumed after the seek, a partition's first fetch
    starts where the seek put both offsets.

    During a recovery step, resumes are held until the next seek is done, or until the
    step ends without one; nothing else resumes stream partitions.
    """
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    if getattr(Recovery.on_recovery_completed, "_roadsense", False):
        return
    resume, seek = Consumer.resume_partitions, Consumer.perform_seek

    @functools.wraps(resume)
    def resume_partitions(self, tps) -> None:
        held = getattr(self, "_roadsense_held", None)
        if held is None:
            resume(self, tps)
        else:
            held.append(set(tps))

    @functools.wraps(seek)
    async def perform_seek(self) -> None:
        try:
            await seek(self)
        finally:
            _release_held(self, end=False)

    Consumer.resume_partitions = resume_partitions  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    Recovery.on_recovery_completed = _hold_resumes(Recovery.on_recovery_completed)  # type: ignore[method-assign]
    Recovery._resume_streams = _hold_resumes(Recovery._resume_streams)  # type: ignore[method-assign]


def _hold_resumes(step):
    """``step`` (a method of Faust's ``Recovery``) with the consumer's partition resumes
    held until its next seek is done, or until it ends (:func:`_seek_before_resuming_streams`)."""

    @functools.wraps(step)
    async def step_seek_first(self, *args, **kwargs):
        consumer = self.app.consumer
        consumer._roadsense_held = []
        try:
            return await step(self, *args, **kwargs)
        finally:
            _release_held(consumer, end=True)

    step_seek_first._roadsense = True  # type: ignore[attr-defined]
    return step_seek_first


def _release_held(consumer, *, end: bool) -> None:
    """Resume the partitions held for ``consumer``; after a seek (not ``end``) later resumes
    of the same recovery step are held again, until the next seek or the step's end."""
    from faust.transport.consumer import Consumer

    held = getattr(consumer, "_roadsense_held", None)
    consumer._roadsense_held = None  # the calls below go through
    for tps in held or ():
        Consumer.resume_partitions(consumer, tps)
    if held is not None and not end:
        consumer._roadsense_held = []


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run one worker process until SIGTERM/SIGINT (then it commits and stops)."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    # uvloop's event loop: cheaper per-message scheduling (the spike measured ~3 %); set
    # before the worker creates its loop.
    mode.loop.use("uvloop")
    _set_fetch_wait(settings.fetch_wait_ms)
    _rewind_uncommitted_partitions()
    _resume_keeps_queued_records()
    _seek_before_resuming_streams()
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

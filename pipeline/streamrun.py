"""Trace files through the whole pipeline in a run of their own: Kafka -> one worker -> database.

For benchmarks and tests that compare the stream path with the offline scorer
(:func:`pipeline.offline.score_traces`) on the same traces. Each run gets a fresh database
(:func:`pipeline.db.create_database`, network loaded) and fresh topic names and consumer
group (a random tag), so runs never see each other's data. :func:`streamed` replays the
traces, runs one worker process (stage 1 and stage 2) until it is done, yields the database
to read, and drops it and deletes the run's topics afterwards.

Done means the group has committed every frame, then every impact (``pipeline.app``):
stage 1 acknowledges a frame only after its passes and events are in the database and the
producer is flushed (so the frame's impacts are on the broker); stage 2 acknowledges an
impact only after its alerts are written; Faust commits offsets of acknowledged messages
only. Zero lag on both input topics therefore means every row is in the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pipeline import db
from pipeline.demo import stop_workers, wait_until_consumed
from pipeline.settings import Settings, settings_env
from pipeline.topics import delete_topics, ensure_topics, group_lag, pipeline_topics
from schemas._errors import RoadsenseError
from schemas.records import RoadAlert, SegmentPass

__all__ = ["StreamRun", "env_of", "pass_rows", "read_alerts", "record_rows", "settings_for", "streamed"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StreamRun:
    """A finished run: its settings, the database to read (``dsn``) and what went through."""

    settings: Settings
    dsn: str
    frames: int
    samples: int
    impacts: int  #: records stage 2 consumed (``segment.impacts``)
    dead_letters: int  #: records on the dead-letter topic
    worker_s: float  #: from the worker's start to zero lag on both topics, s
    log: Path


def settings_for(info, tag: str, dsn: str, *, key: str, frames_topic: str, partitions: int, data_dir: Path,
                 stats_file: Path | None = None, **extra: object) -> Settings:  # fmt: skip
    """Settings of an isolated consumer group: app id ``bench-{tag}``, topics named after
    ``frames_topic`` and ``tag``; ``info`` is the stack's connection info."""
    return Settings(
        kafka_bootstrap=info.kafka_bootstrap, pg_dsn=dsn, pseudonym_key=key, app_id=f"bench-{tag}",
        frames_topic=frames_topic, dlq_topic=f"{frames_topic}.dlq.{tag}", passes_topic=f"{frames_topic}.passes.{tag}",
        impacts_topic=f"{frames_topic}.impacts.{tag}", alerts_topic=f"{frames_topic}.alerts.{tag}",
        partitions=partitions, data_dir=data_dir, stats_file=stats_file, **extra,
    )  # fmt: skip


def env_of(s: Settings) -> dict[str, str]:
    # PYTHONPATH: the workers import this checkout, not another install
    return {**os.environ, **settings_env(s), "PYTHONPATH": str(REPO)}


def pass_rows(conn: psycopg.Connection) -> list[tuple]:
    """The stored passes as (vehicle, segment, entry, exit, samples, IRI, harsh events),
    sorted in Python (the database's text collation may order ids otherwise)."""
    return sorted(conn.execute(
        "SELECT vehicle, segment_id, entry_time, exit_time, n_samples, iri_m_per_km, n_harsh_events "
        "FROM segment_passes").fetchall())  # fmt: skip


def record_rows(passes: Sequence[SegmentPass]) -> list[tuple]:
    """Pass records as :func:`pass_rows` rows, sorted the same way."""
    return sorted((p.vehicle, p.segment_id, p.entry_time, p.exit_time, p.n_samples, p.iri_m_per_km, p.n_harsh_events)
                  for p in passes)  # fmt: skip


def read_alerts(conn: psycopg.Connection) -> list[RoadAlert]:
    """Every stored alert (its highest revision: the sink keeps it), by ``alert_id``."""
    rows = conn.execute("SELECT payload FROM road_alerts ORDER BY alert_id").fetchall()
    return [RoadAlert.model_validate(r[0]) for r in rows]


@contextmanager
def streamed(paths: Sequence[str | Path], info, net, *, key: str, work_dir: Path, frame_s: float = 2.0,
             partitions: int = 4, timeout_s: float = 1800.0, **settings: object) -> Iterator[StreamRun]:  # fmt: skip
    """Replay ``paths`` into fresh topics, run one worker until it is done, yield the run.

    ``info``: the stack's connection info (:func:`pipeline.stack.up`); ``key``: the
    pseudonym key (give the offline scorer the same to compare pseudonyms); ``frame_s``:
    seconds of samples per frame (the offline scorer's default, 2 s); ``timeout_s``: for
    each of the two waits, s; ``settings``: other :class:`Settings` fields. A worker that
    exits early or a wait that times out raises :class:`RoadsenseError` with the worker's
    log tail; the worker is stopped, the database dropped and the run's topics deleted in every
    case.
    """
    from simulator.replay import replay

    dsn = db.create_database(info.pg_dsn, "rs_stream", net=net)
    s = None
    try:
        tag = uuid.uuid4().hex[:8]
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        s = settings_for(info, tag, dsn, key=key, frames_topic=f"stream.{tag}.frames", partitions=partitions,
                         data_dir=work_dir / f"worker-{tag}", frame_s=frame_s, **settings)  # fmt: skip
        ensure_topics(s)
        sent = replay(list(paths), s.kafka_bootstrap, s.frames_topic, frame_s=frame_s, speedup=0.0, progress=False)
        log = work_dir / f"{s.app_id}.log"
        with log.open("ab") as fh:
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env_of(s), cwd=REPO,
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            try:
                wait_until_consumed(s.kafka_bootstrap, s.app_id, s.frames_topic, total=sent.frames, proc=proc,
                                    timeout_s=timeout_s, progress=False)  # fmt: skip
                # every frame committed: its impacts are on the broker, the count is final
                _, n_impacts = group_lag(s.kafka_bootstrap, s.app_id, s.impacts_topic)
                wait_until_consumed(s.kafka_bootstrap, s.app_id, s.impacts_topic, total=n_impacts, proc=proc,
                                    timeout_s=timeout_s, progress=False)  # fmt: skip
                worker_s = time.monotonic() - t0
            except RoadsenseError as exc:
                tail = log.read_text(errors="replace")[-3000:]
                raise RoadsenseError(f"{exc} (worker log {log}):\n{tail}") from exc
            finally:
                stop_workers(proc)
        _, n_dead = group_lag(s.kafka_bootstrap, s.app_id, s.dlq_topic)
        yield StreamRun(s, dsn, sent.frames, sent.samples, n_impacts, n_dead, worker_s, log)
    finally:
        db.drop_database(info.pg_dsn, dsn)
        if s is not None:
            delete_topics(s.kafka_bootstrap, pipeline_topics(s))

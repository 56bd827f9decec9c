"""The whole pipeline through the real broker and the real database.

A simulated fleet is replayed into Kafka (kafka-python), a real stage-1 Faust worker
process consumes it and writes to PostgreSQL; the result must equal the offline scorer's
on the same traces, a second replay must change nothing, and bad messages must reach
the dead-letter topic with their reasons while the good ones around them are processed.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agents.scores import segment_scores
from pipeline import db
from pipeline.demo import stop_workers, wait_until_consumed
from pipeline.offline import score_traces
from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import Settings, settings_env
from pipeline.streamrun import record_rows
from pipeline.topics import ensure_topics
from roadnet import load_network
from schemas.records import DeadLetter

pytestmark = pytest.mark.integration

KEY = "integration-test-pseudonym-key-0123456789"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net():
    return load_network()


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory, net):
    from simulator import simulate_fleet, write_fleet

    out = tmp_path_factory.mktemp("fleet")
    fleet = simulate_fleet(net, n_vehicles=6, seed=20261128, trip_km=(2.0, 4.0), departure_spread_s=600)
    write_fleet(fleet, out, format="parquet")
    return out


@pytest.fixture(scope="module")
def offline(fleet_dir, net):
    return score_traces([fleet_dir], net, pseudonymise=Pseudonymiser(KEY), frame_s=2.0)


@pytest.fixture(scope="module")
def test_db(stack, net):
    """A fresh database on the local PostgreSQL, migrated, with the road network loaded."""
    dsn = db.create_database(stack.pg_dsn, "rs_it", net=net)
    yield dsn
    db.drop_database(stack.pg_dsn, dsn)


@pytest.fixture(scope="module")
def settings(stack, test_db, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        pg_dsn=test_db,
        pseudonym_key=KEY,
        app_id=f"rs-it-{tag}",
        frames_topic=f"it.{tag}.vehicle.frames",
        dlq_topic=f"it.{tag}.vehicle.frames.dlq",
        passes_topic=f"it.{tag}.segment.passes",
        impacts_topic=f"it.{tag}.segment.impacts",
        alerts_topic=f"it.{tag}.road.alerts",
        partitions=4,
        data_dir=tmp_path_factory.mktemp("worker"),
    )


def _env(s: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(s)}


def _run_worker_until_consumed(s: Settings, total: int, log: Path, *, also: tuple[str, ...] = ()) -> None:
    """One worker until the group has committed ``total`` frames, then every record that
    topics ``also`` (stage 2's) hold by then."""
    from pipeline.topics import group_lag

    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=_env(s), cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.frames_topic, total=total, proc=proc,
                                timeout_s=300, progress=False)
            for topic in also:
                end = group_lag(s.kafka_bootstrap, s.app_id, topic)[1]
                wait_until_consumed(s.kafka_bootstrap, s.app_id, topic, total=end, proc=proc, timeout_s=120,
                                    progress=False)
        except Exception:
            print(log.read_text()[-5000:])
            raise
        finally:
            stop_workers(proc)


BAD_MESSAGES = [
    (b"this is not json", "not JSON"),
    (b'{"schema_version": 7, "vehicle_id": "X"}', "unknown schema_version 7"),
    (b'{"schema_version": 1, "vehicle_id": "VF1BAD", "seq": 0}', "t_s: Field required"),
    (b'{"schema_version": 1, "vehicle_id": "VF1BAD", "seq": 0, "t_s": [1.0], "speed_kmh": ["x"],'
     b' "accel_long_mps2": [0], "accel_lat_mps2": [0], "accel_vert_mps2": [0]}', "speed_kmh.0"),
    (b'{"schema_version": 1, "vehicle_id": "VF1BAD", "seq": 0, "t_s": [1.0], "speed_kmh": [1],'
     b' "accel_long_mps2": [NaN], "accel_lat_mps2": [0], "accel_vert_mps2": [0]}', "finite number"),
    (b'{"schema_version": 1, "vehicle_id": "VF1BAD", "seq": 0, "t_s": [1.0], "speed_kmh": [1],'
     b' "accel_long_mps2": [Infinity], "accel_lat_mps2": [0], "accel_vert_mps2": [0]}', "finite number"),
]


def _produce_raw(bootstrap: str, topic: str, messages: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, m in enumerate(messages):
        producer.send(topic, key=f"VF1BAD{i}".encode(), value=m)
    producer.flush(timeout=30)
    producer.close()


def _consume_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10_000)
    out = []
    for rec in consumer:
        out.append(rec.value)
        if len(out) >= n:
            break
    consumer.close()
    return out


def _db_passes(dsn: str) -> list[tuple]:
    with db.connect(dsn) as conn:
        return conn.execute(
            "SELECT vehicle, segment_id, entry_time, exit_time, n_samples, iri_m_per_km, n_harsh_events "
            "FROM segment_passes ORDER BY vehicle, entry_time, segment_id"
        ).fetchall()


@pytest.fixture(scope="module")
def first_run(settings, offline, fleet_dir, test_db, tmp_path_factory):
    """Bad messages around a replayed fleet, one worker until everything is consumed."""
    from simulator.replay import replay

    s = settings
    ensure_topics(s)
    assert offline.passes, "the fixture fleet produced no pass offline"
    _produce_raw(s.kafka_bootstrap, s.frames_topic, [m for m, _ in BAD_MESSAGES[:3]])
    sent = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    _produce_raw(s.kafka_bootstrap, s.frames_topic, [m for m, _ in BAD_MESSAGES[3:]])
    total = sent.frames + len(BAD_MESSAGES)
    logs = tmp_path_factory.mktemp("logs")
    _run_worker_until_consumed(s, total, logs / "worker1.log")
    return {"sent": sent, "total": total, "rows": _db_passes(test_db), "logs": logs}


def test_replay_gives_exactly_the_offline_passes(first_run, offline):
    assert first_run["sent"].frames == offline.n_frames
    expected = record_rows(offline.passes)
    assert len(first_run["rows"]) == len(offline.passes)
    assert sorted(first_run["rows"]) == expected


def test_bad_messages_reach_the_dead_letter_topic_with_reasons(first_run, settings):
    s = settings
    dlq = [DeadLetter.model_validate_json(v) for v in _consume_all(s.kafka_bootstrap, s.dlq_topic, len(BAD_MESSAGES))]
    assert len(dlq) == len(BAD_MESSAGES)
    reasons = sorted(d.reason for d in dlq)
    for _, expected_reason in BAD_MESSAGES:
        assert any(expected_reason in r for r in reasons), (expected_reason, reasons)
    assert all(d.source_topic == s.frames_topic for d in dlq)


def test_database_scores_equal_offline_scores(first_run, offline, test_db):
    """Stream + the calibration job on the database == roadsense score (which calibrates
    the same passes the same way): same gains, same calibrated segment scores."""
    from pipeline.calibration import run_calibration

    with db.connect(test_db, autocommit=True) as conn:
        db.refresh(conn)
        run = run_calibration(conn)
        got = {r[0]: r[1:] for r in conn.execute(
            "SELECT segment_id, n_passes, n_vehicles, iri_m_per_km, iri_p25_m_per_km, iri_p75_m_per_km, level, confidence "
            "FROM segment_scores"
        ).fetchall()}
    cal = offline.calibration
    assert cal.gains and run.calibration.anchor == cal.anchor
    assert run.calibration.gains == pytest.approx(cal.gains, rel=1e-9)
    assert run.calibration.default_gain == pytest.approx(cal.default_gain, rel=1e-9)
    want = {s.segment_id: s for s in offline.scores}
    assert want == {s.segment_id: s for s in segment_scores(offline.passes, offline.events, cal)}
    assert set(got) == set(want)
    for seg, s in want.items():
        n_passes, n_veh, iri, p25, p75, level, conf = got[seg]
        assert (n_passes, n_veh, level) == (s.n_passes, s.n_vehicles, s.level)
        for a, b in ((iri, s.iri_m_per_km), (p25, s.iri_p25), (p75, s.iri_p75), (conf, s.confidence)):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9, abs=1e-9)


def test_replaying_again_changes_nothing(first_run, settings, fleet_dir, test_db):
    from simulator.replay import replay

    s = settings
    again = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    _run_worker_until_consumed(s, first_run["total"] + again.frames, first_run["logs"] / "worker2.log")
    assert _db_passes(test_db) == first_run["rows"]


def test_hotspot_ranking_from_the_database_equals_the_agents_on_offline_results(first_run, offline, test_db, net):
    from agents.hotspots import rank_hotspots
    from pipeline.report import hotspot_inputs_from_db, hotspot_inputs_from_records

    with db.connect(test_db) as conn:
        from_db = rank_hotspots(*hotspot_inputs_from_db(conn, net), net)
    direct = rank_hotspots(*hotspot_inputs_from_records(offline.passes, offline.events, net), net)
    assert list(from_db.zone_id) == list(direct.zone_id)
    assert list(from_db.n_events) == list(direct.n_events)
    assert from_db.eb_rate_per_vkm == pytest.approx(direct.eb_rate_per_vkm)


def test_before_after_from_the_database_splits_the_offline_results_at_the_date(first_run, offline, settings, net):
    """`roadsense before-after` on the stream's database: the busiest zone's passes and
    events on each side of a date are the offline scorer's; a bad zone id is a clear error."""
    import json

    import numpy as np

    from agents.hotspots import attribute_events, zoning

    times = sorted(p.entry_time for p in offline.passes)
    date = times[len(times) // 2]
    zn = zoning(net)

    def per_zone(passes):
        n = np.zeros(len(net))
        np.add.at(n, net.indices_of([p.segment_id for p in passes]), 1.0)
        return zn.exposure(n)

    pz_b, vkm_b = per_zone([p for p in offline.passes if p.entry_time < date])
    pz_a, vkm_a = per_zone([p for p in offline.passes if p.entry_time >= date])
    z = int(np.argmax(np.minimum(pz_b, pz_a)))
    assert pz_b[z] > 0 and pz_a[z] > 0
    ev_zone = attribute_events(zn, net.indices_of([e.segment_id for e in offline.events]),
                               np.array([e.offset_m for e in offline.events]))  # fmt: skip
    after = np.array([e.start_time >= date for e in offline.events], bool)
    cmd = [sys.executable, "-m", "pipeline.cli", "before-after", "--date", date.isoformat(), "--zone", str(zn.zone_id[z])]
    out = subprocess.run(cmd + ["--json"], env=_env(settings), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (row,) = doc["zones"]
    assert row["zone_id"] == str(zn.zone_id[z])
    assert row["events_before"] == int(((ev_zone == z) & ~after).sum())
    assert row["events_after"] == int(((ev_zone == z) & after).sum())
    assert row["exposure_before"] == pytest.approx(vkm_b[z]) and row["exposure_after"] == pytest.approx(vkm_a[z])
    assert 0.0 <= row["p_value"] <= 1.0 and "OpenStreetMap" in doc["attribution"]
    table = subprocess.run(cmd, env=_env(settings), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and str(zn.zone_id[z]) in table.stdout and "ODbL" in table.stdout
    bad = subprocess.run(cmd[:-1] + ["J-no-such-node"], env=_env(settings), cwd=REPO, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert bad.returncode == 1 and "unknown zone" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("bundle", [0, 4], ids=["frames", "bundles"])
def test_a_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    stack, offline, fleet_dir, net, tmp_path_factory, bundle
):
    """SIGKILL in the middle of the stream, then a new worker: the database must hold
    exactly the offline passes (batched commits + outbox recovery), with frames sent one
    per message or in bundles (a bundle half-processed when killed comes again whole)."""
    import time as _time

    from simulator.replay import replay

    tag = uuid.uuid4().hex[:8]
    dsn = db.create_database(stack.pg_dsn, "rs_it_kill")
    try:
        s = Settings(
            kafka_bootstrap=stack.kafka_bootstrap, pg_dsn=dsn, pseudonym_key=KEY, app_id=f"rs-kill-{tag}",
            frames_topic=f"it.{tag}.k.frames", dlq_topic=f"it.{tag}.k.dlq", passes_topic=f"it.{tag}.k.passes", impacts_topic=f"it.{tag}.k.impacts",
            alerts_topic=f"it.{tag}.k.alerts", partitions=4, data_dir=tmp_path_factory.mktemp("kill"),
            batch_max=50,
        )
        ensure_topics(s)
        sent = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                      bundle=bundle)
        total = sent.messages
        logs = tmp_path_factory.mktemp("killlogs")
        with (logs / "victim.log").open("ab") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=_env(s), cwd=REPO,
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = _time.monotonic() + 120
            from pipeline.topics import group_lag

            while _time.monotonic() < deadline:
                try:
                    lag, end = group_lag(s.kafka_bootstrap, s.app_id, s.frames_topic)
                except Exception:
                    lag, end = total, total
                if end - lag >= total // 3:
                    break
                _time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert end - lag < total, "the worker finished before it could be killed"
        _run_worker_until_consumed(s, total, logs / "survivor.log")
        rows = _db_passes(dsn)
        expected = record_rows(offline.passes)
        assert sorted(rows) == expected
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def _wait_for_group(bootstrap: str, group: str, procs: list, done, what: str, *, timeout_s: float = 120.0,
                    poll_s: float = 0.5) -> None:
    """Until ``done(description)`` holds for the consumer group (kafka-python 3.x
    ``describe_groups``: ``{"group_state": ..., "members": [...]}``); every worker must live."""
    import time as _time

    from kafka import KafkaAdminClient

    # kafka-python warns that it cannot decode Faust's member metadata: not needed here
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = _time.monotonic() + timeout_s
    try:
        while _time.monotonic() < deadline:
            for p in procs:
                assert p.poll() is None, "a worker exited while joining"
            try:
                if done(admin.describe_groups([group])[group]):
                    return
            except Exception:
                pass
            _time.sleep(poll_s)
        raise AssertionError(f"group {group}: {what} not within {timeout_s:.0f}s")
    finally:
        admin.close()


def _wait_for_members(bootstrap: str, group: str, n: int, procs: list) -> None:
    """Until the consumer group has ``n`` members with partitions assigned (stable)."""
    _wait_for_group(bootstrap, group, procs, lambda d: d["group_state"] == "Stable" and len(d["members"]) >= n,
                    f"{n} members, stable")


def _group_settings(stack, dsn: str, name: str, data_dir: Path) -> Settings:
    """Settings of a fresh consumer group (topics and app id unique to this run)."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=stack.kafka_bootstrap, pg_dsn=dsn, pseudonym_key=KEY, app_id=f"rs-{name}-{tag}",
        frames_topic=f"it.{tag}.{name}.frames", dlq_topic=f"it.{tag}.{name}.dlq", passes_topic=f"it.{tag}.{name}.passes",
        impacts_topic=f"it.{tag}.{name}.impacts", alerts_topic=f"it.{tag}.{name}.alerts", partitions=4,
        data_dir=data_dir,
    )


def _stop_all(procs: list, files: list) -> None:
    """Stop the workers :func:`_start_worker` started and close their log files."""
    stop_workers(*procs)
    for fh in files:
        fh.close()


def _start_worker(base: Settings, i: int, logs: Path, procs: list, files: list, *,
                  cmd: list[str] | None = None) -> Path:
    """Worker ``i`` of the group in its own process (own state directory, log ``w{i}.log``;
    ``cmd``: another command than ``roadsense worker``); returns the path of its stats file."""
    stats = logs / f"w{i}.json"
    s = base.model_copy(update={"data_dir": Path(f"{base.data_dir}-{i}"), "stats_file": stats})
    fh = (logs / f"w{i}.log").open("ab")
    files.append(fh)
    # this checkout, also for a command run as a script (its own directory comes first on sys.path)
    env = {**_env(s), "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    procs.append(subprocess.Popen(cmd or [sys.executable, "-m", "pipeline.cli", "worker"], env=env, cwd=REPO,
                                  stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
    return stats


@pytest.mark.parametrize("bundle", [0, 4], ids=["frames", "bundles"])
def test_two_workers_split_the_partitions_and_give_the_offline_passes(
    stack, offline, fleet_dir, net, tmp_path_factory, bundle
):
    """Two worker processes in one consumer group: each gets partitions and processes
    frames, and together they write exactly what one worker (and the offline scorer) does;
    with frames in bundles too (each vehicle's state stays in one partition)."""
    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_two")
    logs = tmp_path_factory.mktemp("twologs")
    procs, files = [], []
    try:
        base = _group_settings(stack, dsn, "two", tmp_path_factory.mktemp("two"))
        ensure_topics(base)
        stats = [_start_worker(base, i, logs, procs, files) for i in range(2)]
        # both in the group before the first frame, so that neither can take everything
        _wait_for_members(base.kafka_bootstrap, base.app_id, 2, procs)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                      bundle=bundle)
        assert (sent.messages < sent.frames) == bool(bundle)
        wait_until_consumed(base.kafka_bootstrap, base.app_id, base.frames_topic, total=sent.messages, proc=procs[0],
                            timeout_s=300, progress=False)
    finally:
        _stop_all(procs, files)
    try:
        import json as _json

        frames = [_json.loads(f.read_text())["frames"] for f in stats]
        assert all(n > 0 for n in frames), f"a worker got no partition: frames per worker {frames}"
        assert sum(frames) >= sent.frames  # at least once (a rebalance may hand a frame over twice)
        expected = record_rows(offline.passes)
        assert sorted(_db_passes(dsn)) == expected
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def test_seek_to_committed_or_start_rewinds_the_partitions_nobody_committed(stack):
    """What Faust's seek after a rebalance does in a worker (pipeline.app), on a real broker.

    aiokafka's own ``seek_to_committed`` leaves a partition without a committed offset at
    its fetch position: the records Faust dropped there are skipped. The worker's version
    rewinds it to its first offset, seeks committed partitions as before, and leaves the
    topics it was not asked about (changelogs) where they are."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from pipeline.app import seek_to_committed_or_start

    tag = uuid.uuid4().hex[:8]
    topic, other = f"it.{tag}.seek", f"it.{tag}.seek.changelog"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(other, 1, 1)], timeout_ms=30_000)
    t0, t1, o0 = TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(other, 0)
    sizes = {t0: 10, t1: 10, o0: 5}

    async def read_to_end(consumer) -> dict:
        got: dict = {tp: [] for tp in sizes}
        async with asyncio.timeout(30):
            while [tp for tp, n in sizes.items() if await consumer.position(tp) < n]:
                for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                    got[tp] += [m.offset for m in msgs]
        return got

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for tp, n in sizes.items():
                for i in range(n):
                    await producer.send_and_wait(tp.topic, value=b"%d" % i, partition=tp.partition)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, other, bootstrap_servers=stack.kafka_bootstrap, group_id=f"it-seek-{tag}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            first = await read_to_end(consumer)
            assert first == {tp: list(range(n)) for tp, n in sizes.items()}
            await consumer.commit({t1: 4})

            committed = await consumer.seek_to_committed()
            assert committed[t0] is None and committed[t1] == 4
            assert await consumer.position(t0) == 10  # the records before are never fetched again
            assert await consumer.position(t1) == 4
            await read_to_end(consumer)

            committed = await seek_to_committed_or_start(consumer, {topic})
            assert committed[t0] is None and committed[t1] == 4 and committed[o0] is None
            assert await consumer.position(t0) == 0
            assert await consumer.position(t1) == 4
            assert await consumer.position(o0) == 5
            again = await read_to_end(consumer)
            assert again == {t0: list(range(10)), t1: list(range(4, 10)), o0: []}
        finally:
            await consumer.stop()

    try:
        asyncio.run(run())
    finally:
        admin.delete_topics([topic, other], timeout_ms=30_000)
        admin.close()


def _wait_for_rebalance(bootstrap: str, group: str, procs: list) -> None:
    """Until the consumer group is rebalancing (a member joined or left)."""
    _wait_for_group(bootstrap, group, procs, lambda d: d["group_state"] in ("PreparingRebalance", "CompletingRebalance"),
                    "a rebalance", poll_s=0.05)


def test_frames_sent_during_a_rebalance_of_a_new_group_are_all_processed(
    stack, offline, fleet_dir, net, tmp_path_factory
):
    """A second worker joins a new group (no offset committed yet) and the fleet's frames
    arrive while the group rebalances, once the first worker has stopped consuming. Frames
    that a worker fetches before its seek to the committed offsets are dropped by Faust and
    must be fetched again (docs/decisions.md, "Records lost at a rebalance"; the seek
    itself is checked deterministically by the test above): the database must end with
    exactly the offline passes."""
    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_join")
    logs = tmp_path_factory.mktemp("joinlogs")
    procs, files = [], []
    try:
        base = _group_settings(stack, dsn, "join", tmp_path_factory.mktemp("join"))
        ensure_topics(base)
        _start_worker(base, 0, logs, procs, files)
        _wait_for_members(base.kafka_bootstrap, base.app_id, 1, procs)
        _start_worker(base, 1, logs, procs, files)
        _wait_for_rebalance(base.kafka_bootstrap, base.app_id, procs)
        # the first worker has stopped consuming (aiokafka logs its revocation): no worker
        # consumes and nothing is committed until the group's new assignment is in place
        w0_log = logs / "w0.log"
        deadline = time.monotonic() + 60
        while w0_log.read_text().count("Revoking previously assigned partitions") < 2:
            assert time.monotonic() < deadline, "the first worker did not revoke its partitions"
            time.sleep(0.02)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
        wait_until_consumed(base.kafka_bootstrap, base.app_id, base.frames_topic, total=sent.frames, proc=procs[0],
                            timeout_s=300, progress=False)
        assert procs[1].poll() is None, "the joining worker exited"
    finally:
        _stop_all(procs, files)
    try:
        expected = record_rows(offline.passes)
        assert sorted(_db_passes(dsn)) == expected
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def test_records_fetched_while_the_streams_resume_are_all_processed(stack, offline, fleet_dir, tmp_path_factory):
    """Two workers whose seek after a rebalance is followed by a 1.5 s pause
    (``seek_pause_worker.py``), the fleet sent in bundles while the group rebalances.

    During the pause the fetcher runs and the agents take records; Faust then resumes the
    streams, which empties the agents' queues, so that a record fetched during the pause
    and still queued was dropped and its offset committed past (docs/decisions.md, "A
    record dropped between the seek and the resume"). Every frame must be processed once
    as new (the workers' samples add up to the fleet's) and the database must hold
    exactly the offline passes."""

    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_resume")
    logs = tmp_path_factory.mktemp("resumelogs")
    procs, files, stats = [], [], []
    base = _group_settings(stack, dsn, "resume", tmp_path_factory.mktemp("resume"))
    launcher = [sys.executable, str(Path(__file__).with_name("seek_pause_worker.py")), "1.5"]
    try:
        ensure_topics(base)
        stats.append(_start_worker(base, 0, logs, procs, files, cmd=launcher))
        _wait_for_members(base.kafka_bootstrap, base.app_id, 1, procs)
        stats.append(_start_worker(base, 1, logs, procs, files, cmd=launcher))
        _wait_for_rebalance(base.kafka_bootstrap, base.app_id, procs)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                      bundle=4)
        # ~20 s on 2 busy cores; a dropped record stalls its partition's commits
        _consumed_by_live_workers(base, sent, procs, timeout_s=120)
    finally:
        _stop_all(procs, files)
    try:
        _assert_each_frame_once(stats, sent, dsn, offline)
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def _consumed_by_live_workers(base: Settings, sent, procs: list, *, timeout_s: float) -> None:
    """Until the group has committed every message of ``sent``; no worker may have exited."""
    wait_until_consumed(base.kafka_bootstrap, base.app_id, base.frames_topic, total=sent.messages, proc=procs[0],
                        timeout_s=timeout_s, progress=False)
    assert all(p.poll() is None for p in procs), "a worker exited"


def _assert_each_frame_once(stats: list[Path], sent, dsn: str, offline) -> None:
    """The workers of a run (their stats files) processed every frame of ``sent`` once as
    new, skipped no offset, and the database holds exactly the offline passes."""
    import json as _json

    counted = [_json.loads(f.read_text()) for f in stats]
    # a duplicate counts as a frame with no samples: a frame never processed is missing here
    assert sum(d["samples"] for d in counted) == sent.samples
    assert [d["offsets_skipped"] for d in counted] == [0] * len(stats)  # the tripwire (pipeline.offset_holes)
    assert sorted(_db_passes(dsn)) == record_rows(offline.passes)


def test_a_stale_read_offset_kept_across_a_rebalance_drops_nothing(stack, offline, fleet_dir, tmp_path_factory):
    """A worker consumes a pre-loaded fleet alone, fetching ahead of what it commits; a
    second joins, and the first keeps partitions whose read offsets it carries over from the
    generation before (``stale_read_offset_worker.py``: what Faust's drain loop leaves when
    a revocation cuts a delivery short), with a 1 s pause before each seek.

    Resumed before their seek, such partitions handed the agent the record at the stale
    offset first, the earlier ones dropped as already read: the worker stopped on the hole,
    or without the tripwire lost them (docs/decisions.md, "Streams resumed after their
    seek"). Resumed after it, nothing is skipped: both workers keep running, every frame is
    processed once as new, and the database holds exactly the offline passes."""

    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_stale")
    logs = tmp_path_factory.mktemp("stalelogs")
    procs, files, stats = [], [], []
    base = _group_settings(stack, dsn, "stale", tmp_path_factory.mktemp("stale"))
    # 1 s pause before each seek, 20 ms more per frame: the fleet keeps a worker busy ~30 s
    launcher = [sys.executable, str(Path(__file__).with_name("stale_read_offset_worker.py")), "1.0", "0.02"]
    try:
        ensure_topics(base)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                      bundle=4)
        go = logs / "start-second"
        stats.append(_start_worker(base, 0, logs, procs, files, cmd=launcher))
        # started now, the second joins within a second or two of the file (imports done)
        stats.append(_start_worker(base, 1, logs, procs, files, cmd=[*launcher, str(go)]))
        _wait_for_members(base.kafka_bootstrap, base.app_id, 1, procs)
        go.touch()  # the first worker fetches far ahead of its commits until the second joins
        _consumed_by_live_workers(base, sent, procs, timeout_s=180)
    finally:
        _stop_all(procs, files)
    try:
        text = (logs / "w0.log").read_text()
        # the set-up did what it is for: records between the committed and the stale offset
        assert "stale read offset" in text, text[-3000:]
        _assert_each_frame_once(stats, sent, dsn, offline)
    finally:
        db.drop_database(stack.pg_dsn, dsn)


# ------------------------------------------------------------------ records never handled
# pipeline.offset_holes: a record Faust fetched and never handed to the agent is caught by
# the next record of its partition. By default the worker stops before that record is
# handled or acknowledged, so the hole is not committed past and a restart reads both in
# order; records the broker deleted before the group read them cannot come again and are
# only reported.

DROP_PARTITION, DROP_OFFSET = 0, 5


def _committed(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    from kafka import KafkaAdminClient, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        c = admin.list_group_offsets({group: [tp]}).get(group, {}).get(tp)
        return c.offset if c is not None and c.offset >= 0 else None
    finally:
        admin.close()


def _replay_for_a_drop(base: Settings, fleet_dir):
    """The fleet as plain frames, with records after the one to drop on its partition."""
    from kafka import KafkaConsumer, TopicPartition

    from simulator.replay import replay

    ensure_topics(base)
    sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    consumer = KafkaConsumer(bootstrap_servers=base.kafka_bootstrap)
    try:
        tp = TopicPartition(base.frames_topic, DROP_PARTITION)
        assert consumer.end_offsets([tp])[tp] > DROP_OFFSET + 2, "too few frames on the partition"
    finally:
        consumer.close()
    return sent


def _drop_worker(base: Settings, logs: Path, procs: list, files: list, *, topic: str | None = None,
                 partition: int = DROP_PARTITION, mode: str = "drop") -> Path:
    launcher = [sys.executable, str(Path(__file__).with_name("drop_record_worker.py")), topic or base.frames_topic,
                str(partition), str(DROP_OFFSET), mode]
    return _start_worker(base, 0, logs, procs, files, cmd=launcher)


# stage 2's impacts: the fixture fleet's fall 5, 13, 17 and 16 to partitions 0-3 (offline)
@pytest.mark.parametrize("stage,source,partition,mode", [("stage 1", "frames", 0, "drop"),
                                                         ("stage 2", "impacts", 2, "drop"),
                                                         ("stage 1", "frames", 0, "late")],
                         ids=["frames", "impacts", "frames-late"])
def test_a_record_fetched_and_never_handled_stops_the_worker_before_it_is_committed_past(
    stack, offline, fleet_dir, tmp_path_factory, stage, source, partition, mode
):
    """The consumer drops one fetched record of stage 1's or stage 2's source, or hands it
    over after the next one (``drop_record_worker.py``); the worker stops (code 70) when
    that next record reaches the stage, before handling it (a vehicle's frames must be
    handled in order: an earlier frame coming later would be taken for a duplicate). The
    group's offset stays at or before the dropped record, and a restarted worker consumes
    both topics (the dropped record included: nothing commits past it otherwise) and gives
    exactly the offline passes."""
    from pipeline.app import FAIL_STOP_EXIT

    dsn = db.create_database(stack.pg_dsn, "rs_it_hole")
    logs = tmp_path_factory.mktemp("holelogs")
    procs, files = [], []
    base = _group_settings(stack, dsn, "hole", tmp_path_factory.mktemp("hole"))
    topic = getattr(base, f"{source}_topic")
    try:
        sent = _replay_for_a_drop(base, fleet_dir)
        _drop_worker(base, logs, procs, files, topic=topic, partition=partition, mode=mode)
        try:
            rc = procs[0].wait(timeout=180)
        finally:
            _stop_all(procs, files)
        text = (logs / "w0.log").read_text()
        assert rc == FAIL_STOP_EXIT, text[-3000:]
        assert f"{mode} {topic}[{partition}]@{DROP_OFFSET}" in text
        assert f"{stage}: offsets {DROP_OFFSET}..{DROP_OFFSET} of {topic}[{partition}] never reached the agent" in text
        # the log says whether this worker handled the record in an earlier generation: here
        # it never did (one worker; a start-up rebalance may have come before the drop)
        m = re.search(r"never reached the agent; offset \d+ did \(generation \d+; (?:nothing handled here in an "
                      r"earlier generation|handled here up to offset (\d+) in generation \d+)\)", text)
        assert m is not None and (m.group(1) is None or int(m.group(1)) < DROP_OFFSET), text[-3000:]
        committed = _committed(base.kafka_bootstrap, base.app_id, topic, partition)
        assert committed is None or committed <= DROP_OFFSET
        _run_worker_until_consumed(base, sent.messages, logs / "restarted.log", also=(base.impacts_topic,))
        assert sorted(_db_passes(dsn)) == record_rows(offline.passes)
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def test_with_offset_holes_log_the_dropped_record_is_reported_and_committed_past(stack, fleet_dir, tmp_path_factory):
    """``offset_holes="log"`` (for transactional producers) only reports the hole; Faust then
    commits past a single dropped record, so its frame is never processed: why "stop" is
    the default."""
    import json as _json

    logs = tmp_path_factory.mktemp("holeloglogs")
    procs, files = [], []
    dsn = db.create_database(stack.pg_dsn, "rs_it_holelog")
    base = _group_settings(stack, dsn, "holelog", tmp_path_factory.mktemp("holelog"))
    base = base.model_copy(update={"offset_holes": "log"})
    try:
        sent = _replay_for_a_drop(base, fleet_dir)
        stats = _drop_worker(base, logs, procs, files)
        try:
            wait_until_consumed(base.kafka_bootstrap, base.app_id, base.frames_topic, total=sent.messages,
                                proc=procs[0], timeout_s=180, progress=False)
        finally:
            _stop_all(procs, files)
        counted = _json.loads(stats.read_text())
        assert counted["offsets_skipped"] == 1 and counted["offsets_expired"] == 0
        assert counted["frames"] == sent.messages - 1 and counted["samples"] < sent.samples
        assert "never reached the agent" in (logs / "w0.log").read_text()
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def test_records_the_broker_deleted_before_the_group_read_them_are_reported_not_a_stop(
    stack, fleet_dir, tmp_path_factory
):
    """The group has committed a partition to its end; more records arrive and the first
    three are deleted (as retention would) before a worker starts again: the worker goes on
    (a restart would not bring them back), reports them as expired and commits the rest."""
    import json as _json

    from kafka import KafkaAdminClient, TopicPartition

    from simulator.replay import replay

    logs = tmp_path_factory.mktemp("expirelogs")
    dsn = db.create_database(stack.pg_dsn, "rs_it_expire")
    base = _group_settings(stack, dsn, "expire", tmp_path_factory.mktemp("expire"))
    try:
        ensure_topics(base)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
        _run_worker_until_consumed(base, sent.messages, logs / "first.log")
        end = _committed(base.kafka_bootstrap, base.app_id, base.frames_topic, DROP_PARTITION)
        again = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0,
                       progress=False)  # duplicates of frames already handled: no new results
        admin = KafkaAdminClient(bootstrap_servers=base.kafka_bootstrap)
        try:
            admin.delete_records({TopicPartition(base.frames_topic, DROP_PARTITION): end + 3})
        finally:
            admin.close()
        procs, files = [], []
        stats = _start_worker(base, 1, logs, procs, files)
        try:
            wait_until_consumed(base.kafka_bootstrap, base.app_id, base.frames_topic,
                                total=sent.messages + again.messages, proc=procs[0], timeout_s=180, progress=False)
        finally:
            _stop_all(procs, files)
        counted = _json.loads(stats.read_text())
        assert (counted["offsets_expired"], counted["offsets_skipped"]) == (3, 0)
        assert counted["frames"] == again.messages - 3
        assert (f"offsets {end}..{end + 2} of {base.frames_topic}[{DROP_PARTITION}] were deleted by the broker"
                in (logs / "w1.log").read_text())
    finally:
        db.drop_database(stack.pg_dsn, dsn)


def test_ensure_topics_creates_the_changelogs_and_refuses_a_partition_mismatch_and_delete_topics_removes_them(stack):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from pipeline.topics import TopicError, changelog_topics, delete_topics, pipeline_topics

    tag = uuid.uuid4().hex[:8]
    s = Settings(kafka_bootstrap=stack.kafka_bootstrap, pseudonym_key=KEY, app_id=f"rs-topics-{tag}",
                 frames_topic=f"it.{tag}.t.frames", dlq_topic=f"it.{tag}.t.dlq", passes_topic=f"it.{tag}.t.passes",
                 impacts_topic=f"it.{tag}.t.impacts", alerts_topic=f"it.{tag}.t.alerts", partitions=3)
    created = ensure_topics(s)
    logs = changelog_topics(s)
    assert set(logs) <= set(created) and len(logs) == 2
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        desc = {t["name"]: t for t in admin.describe_topics(logs)}
        assert all(len(desc[t]["partitions"]) == 3 for t in logs)
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in logs])["topic"]
        assert all(configs[t]["cleanup.policy"]["value"] == "compact" for t in logs), configs
    finally:
        admin.close()
    assert ensure_topics(s) == []  # idempotent
    with pytest.raises(TopicError, match=r"has 3"):
        ensure_topics(s.model_copy(update={"partitions": 4}))
    # a run that made its own topics removes them all, changelogs included
    mine = pipeline_topics(s)
    assert set(created) < set(mine) and len(mine) == 8  # no worker ran: no assignor topic
    assert delete_topics(s.kafka_bootstrap, [*mine, f"it.{tag}.never-made"]) == sorted(created)
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        deadline = time.monotonic() + 30
        while set(mine) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not set(mine) & set(admin.list_topics())
    finally:
        admin.close()
    assert delete_topics(s.kafka_bootstrap, mine) == []


def test_a_worker_that_cannot_store_a_frame_stops_without_committing_it(stack, fleet_dir, tmp_path_factory):
    """Fail-stop: an event whose state cannot be written (here the state table's changelog
    has the wrong partition count, as a hand-made topic could) is neither acknowledged nor
    skipped; the worker exits (code 70) and the group's offsets stay before it."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from pipeline.app import FAIL_STOP_EXIT
    from pipeline.topics import TopicError, changelog_topics, group_lag
    from simulator.replay import replay

    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=stack.kafka_bootstrap, pg_dsn=stack.pg_dsn, pseudonym_key=KEY, app_id=f"rs-stop-{tag}",
        frames_topic=f"it.{tag}.f.frames", dlq_topic=f"it.{tag}.f.dlq", passes_topic=f"it.{tag}.f.passes",
        impacts_topic=f"it.{tag}.f.impacts", alerts_topic=f"it.{tag}.f.alerts", partitions=4,
        data_dir=tmp_path_factory.mktemp("stop"),
    )
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(changelog_topics(s)[0], 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    with pytest.raises(TopicError, match="changelog"):  # what `roadsense worker` says before starting
        ensure_topics(s)
    sent = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    log = tmp_path_factory.mktemp("stoplog") / "worker.log"
    code = "from pipeline.app import run_worker; from pipeline.settings import Settings; run_worker(Settings())"
    with log.open("ab") as fh:  # run_worker directly: the CLI's topic check would refuse to start
        proc = subprocess.Popen([sys.executable, "-c", code], env=_env(s), cwd=REPO, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=180)
        finally:
            stop_workers(proc)
    text = log.read_text()
    assert rc == FAIL_STOP_EXIT, text[-3000:]
    assert "stopping the worker without committing" in text
    lag, end = group_lag(s.kafka_bootstrap, s.app_id, s.frames_topic)
    assert end == sent.frames and lag == sent.frames  # nothing committed: every frame will be replayed


def test_a_worker_asked_to_stop_while_the_database_is_unreachable_exits_without_committing(
    stack, offline, fleet_dir, tmp_path_factory
):
    """SIGTERM while every database write fails: Faust's stop would wait for the pending
    events' acknowledgements forever; the worker exits (code 70) within seconds instead,
    nothing committed, and a restarted worker with the database gives the offline passes."""
    from pipeline.app import FAIL_STOP_EXIT
    from pipeline.topics import group_lag
    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_dbdown")
    logs = tmp_path_factory.mktemp("dbdownlogs")
    base = _group_settings(stack, dsn, "dbdown", tmp_path_factory.mktemp("dbdown"))
    unreachable = base.model_copy(update={"pg_dsn": dsn.rsplit("/", 1)[0] + f"/no_such_db_{uuid.uuid4().hex[:8]}"})
    procs, files = [], []
    try:
        ensure_topics(base)
        sent = replay([fleet_dir], base.kafka_bootstrap, base.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
        _start_worker(unreachable, 0, logs, procs, files)
        log = logs / "w0.log"
        deadline = time.monotonic() + 120
        while "database write failed" not in log.read_text():
            assert time.monotonic() < deadline and procs[0].poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        t0 = time.monotonic()
        procs[0].send_signal(signal.SIGTERM)
        try:
            rc = procs[0].wait(timeout=30)  # one more attempt at most (connect timeout 10 s)
        finally:
            _stop_all(procs, files)
        text = log.read_text()
        assert rc == FAIL_STOP_EXIT, text[-3000:]
        assert "asked to stop while the database write fails" in text
        print(f"stopped {time.monotonic() - t0:.1f} s after SIGTERM")
        # frames without results need no write and are committed; the others are not
        lag, end = group_lag(base.kafka_bootstrap, base.app_id, base.frames_topic)
        assert end == sent.messages and lag > 0
        _run_worker_until_consumed(base, sent.messages, logs / "restarted.log")
        assert sorted(_db_passes(dsn)) == record_rows(offline.passes)
    finally:
        db.drop_database(stack.pg_dsn, dsn)


# ----------------------------------------------------------------------------- bundles
# Several frames per message (schemas.bundle): the fleet in bundles must give exactly the
# offline passes; a bad frame inside a bundle, a frame on the wrong partition and a
# truncated bundle reach the dead-letter topic with their reasons (the frame's own bytes
# and its index) while the frames around them are processed; the same fleet replayed
# afterwards as plain frames changes nothing, because a vehicle's plain and bundled frames
# share one partition, hence one state.

TINY_FRAME = {
    "schema_version": 1, "seq": 0,
    "t_s": [1.7e9, 1.7e9 + 0.01], "speed_kmh": [30.0, 30.0], "accel_long_mps2": [0.0, 0.1],
    "accel_lat_mps2": [0.0, 0.0], "accel_vert_mps2": [9.8, 9.81],
    "fix_t_s": [1.7e9], "fix_lat_deg": [48.82], "fix_lon_deg": [1.95],
}


def _vehicle_of(partition: int, n_partitions: int, *, other: bool = False) -> str:
    """A vehicle id whose frames belong to ``partition`` (``other``: to any other one)."""
    from schemas.bundle import partition_of

    for i in range(1000):
        vid = f"VF1BUNDLE{i:08d}"
        if (partition_of(vid, n_partitions) == partition) != other:
            return vid
    raise AssertionError("no such vehicle id")


@pytest.fixture(scope="module")
def bundle_run(stack, fleet_dir, tmp_path_factory):
    """Hand-made bundles (good, bad and misrouted frames; a truncated bundle), then the
    fleet as bundles of 4, one worker until everything is consumed."""
    import orjson
    from kafka import KafkaProducer

    from schemas.bundle import encode_bundle
    from simulator.replay import replay

    dsn = db.create_database(stack.pg_dsn, "rs_it_bundles")
    logs = tmp_path_factory.mktemp("bundlelogs")
    s = _group_settings(stack, dsn, "bundles", tmp_path_factory.mktemp("bundles")).model_copy(
        update={"stats_file": logs / "worker.json"})
    ensure_topics(s)
    good = orjson.dumps({**TINY_FRAME, "vehicle_id": _vehicle_of(1, s.partitions)})
    misrouted = orjson.dumps({**TINY_FRAME, "vehicle_id": _vehicle_of(1, s.partitions, other=True)})
    mixed = encode_bundle([good, b"not json", misrouted])
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    producer.send(s.frames_topic, value=mixed, partition=1)
    producer.send(s.frames_topic, value=mixed[:-5], partition=2)  # truncated
    producer.flush(timeout=30)
    producer.close()
    sent = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                  bundle=4)
    total = sent.messages + 2
    _run_worker_until_consumed(s, total, logs / "worker1.log")
    yield {"settings": s, "dsn": dsn, "sent": sent, "total": total, "rows": _db_passes(dsn), "logs": logs,
           "misrouted": misrouted, "stats": orjson.loads(s.stats_file.read_bytes())}
    db.drop_database(stack.pg_dsn, dsn)


def test_a_fleet_in_bundles_gives_exactly_the_offline_passes(bundle_run, offline):
    sent = bundle_run["sent"]
    assert sent.frames == offline.n_frames
    assert sent.messages <= -(-sent.frames // 4) + 4  # full bundles but the last per partition
    assert sorted(bundle_run["rows"]) == record_rows(offline.passes)


def test_bad_frames_in_a_bundle_are_dead_letters_with_their_index_and_bytes(bundle_run):
    import base64

    s = bundle_run["settings"]
    dlq = [DeadLetter.model_validate_json(v) for v in _consume_all(s.kafka_bootstrap, s.dlq_topic, 3)]
    by_index = {d.bundle_index: d for d in dlq}
    assert sorted(by_index, key=str) == [1, 2, None]
    assert "not JSON" in by_index[1].reason and base64.b64decode(by_index[1].original_b64) == b"not json"
    assert by_index[2].error_type == "RoutingError" and "arrived on partition 1" in by_index[2].reason
    assert base64.b64decode(by_index[2].original_b64) == bundle_run["misrouted"]
    assert "bundle truncated" in by_index[None].reason and by_index[None].partition == 2
    assert all(d.source_topic == s.frames_topic for d in dlq)
    # every frame counted once, the good frame of the mixed bundle processed, not lost
    stats = bundle_run["stats"]
    assert stats["dead_letters"] == 3
    assert stats["frames"] == bundle_run["sent"].frames + 4  # the fleet's, the mixed bundle's 3, the truncated one
    assert stats["vehicles"] == 6 + 1


def test_the_same_fleet_as_plain_frames_afterwards_changes_nothing(bundle_run, fleet_dir):
    from simulator.replay import replay

    s = bundle_run["settings"]
    again = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    assert again.messages == again.frames
    _run_worker_until_consumed(s, bundle_run["total"] + again.messages, bundle_run["logs"] / "worker2.log")
    assert _db_passes(bundle_run["dsn"]) == bundle_run["rows"]

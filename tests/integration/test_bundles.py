"""Bundles of frames (``schemas.bundle``) through the real broker, worker and database.

A fleet replayed as bundles must give exactly the offline passes; a bad frame inside a
bundle, a frame on the wrong partition and a truncated bundle reach the dead-letter topic
with their reasons (the frame's own bytes and its index) while the frames around them are
processed; the same fleet replayed afterwards as plain frames changes nothing, because a
vehicle's plain and bundled frames share one partition, hence one state.
"""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from pipeline import db
from pipeline.offline import score_traces
from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import Settings
from pipeline.streamrun import record_rows
from pipeline.topics import ensure_topics
from roadnet import load_network
from schemas.bundle import encode_bundle, partition_of
from schemas.records import DeadLetter

from tests.integration.test_pipeline import _consume_all, _db_passes, _run_worker_until_consumed

pytestmark = pytest.mark.integration

KEY = "integration-test-pseudonym-key-0123456789"
PARTITIONS = 4
FRAME = {
    "schema_version": 1, "seq": 0,
    "t_s": [1.7e9, 1.7e9 + 0.01], "speed_kmh": [30.0, 30.0], "accel_long_mps2": [0.0, 0.1],
    "accel_lat_mps2": [0.0, 0.0], "accel_vert_mps2": [9.8, 9.81],
    "fix_t_s": [1.7e9], "fix_lat_deg": [48.82], "fix_lon_deg": [1.95],
}


@pytest.fixture(scope="module")
def net():
    return load_network()


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory, net):
    from simulator import simulate_fleet, write_fleet

    out = tmp_path_factory.mktemp("fleet")
    fleet = simulate_fleet(net, n_vehicles=6, seed=20261129, trip_km=(2.0, 3.0), departure_spread_s=300)
    write_fleet(fleet, out, format="parquet")
    return out


@pytest.fixture(scope="module")
def test_db(stack, net):
    dsn = db.create_database(stack.pg_dsn, "rs_itb", net=net)
    yield dsn
    db.drop_database(stack.pg_dsn, dsn)


@pytest.fixture(scope="module")
def settings(stack, test_db, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=stack.kafka_bootstrap, pg_dsn=test_db, pseudonym_key=KEY, app_id=f"rs-itb-{tag}",
        frames_topic=f"itb.{tag}.vehicle.frames", dlq_topic=f"itb.{tag}.vehicle.frames.dlq",
        passes_topic=f"itb.{tag}.segment.passes", impacts_topic=f"itb.{tag}.segment.impacts",
        alerts_topic=f"itb.{tag}.road.alerts", partitions=PARTITIONS, data_dir=tmp_path_factory.mktemp("worker"),
        stats_file=tmp_path_factory.mktemp("stats") / "worker.json",
    )


def _vehicle_of(partition: int, other_than: int | None = None) -> str:
    """A vehicle id whose frames belong to ``partition`` (or to any other but ``other_than``)."""
    for i in range(1000):
        vid = f"VF1BUNDLE{i:08d}"
        p = partition_of(vid, PARTITIONS)
        if (other_than is None and p == partition) or (other_than is not None and p != other_than):
            return vid
    raise AssertionError("no such vehicle id")


@pytest.fixture(scope="module")
def run(settings, fleet_dir, test_db, tmp_path_factory):
    """Hand-made bundles (good, bad and misrouted frames; a truncated bundle), then the
    fleet as bundles of 4, one worker until everything is consumed."""
    from kafka import KafkaProducer

    from simulator.replay import replay

    s = settings
    ensure_topics(s)
    here = _vehicle_of(1)
    elsewhere = _vehicle_of(0, other_than=1)
    good = orjson.dumps({**FRAME, "vehicle_id": here})
    misrouted = orjson.dumps({**FRAME, "vehicle_id": elsewhere})
    mixed = encode_bundle([good, b"not json", misrouted])
    truncated = mixed[:-5]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    producer.send(s.frames_topic, value=mixed, partition=1)
    producer.send(s.frames_topic, value=truncated, partition=2)
    producer.flush(timeout=30)
    producer.close()
    sent = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False,
                  bundle=4)
    total = sent.messages + 2
    logs = tmp_path_factory.mktemp("logs")
    _run_worker_until_consumed(s, total, logs / "worker1.log")
    return {"sent": sent, "total": total, "rows": _db_passes(test_db), "logs": logs, "misrouted": misrouted,
            "stats": orjson.loads(s.stats_file.read_bytes())}


def test_a_fleet_in_bundles_gives_exactly_the_offline_passes(run, fleet_dir, net):
    offline = score_traces([fleet_dir], net, pseudonymise=Pseudonymiser(KEY), frame_s=2.0)
    assert offline.passes
    sent = run["sent"]
    assert sent.frames == offline.n_frames
    assert sent.messages <= -(-sent.frames // 4) + PARTITIONS  # full bundles but the last per partition
    assert sorted(run["rows"]) == record_rows(offline.passes)


def test_bad_frames_in_a_bundle_are_dead_letters_with_their_index_and_bytes(run, settings, test_db):
    s = settings
    dlq = [DeadLetter.model_validate_json(v) for v in _consume_all(s.kafka_bootstrap, s.dlq_topic, 3)]
    by_index = {d.bundle_index: d for d in dlq}
    assert sorted(by_index, key=str) == [1, 2, None]
    assert "not JSON" in by_index[1].reason and base64.b64decode(by_index[1].original_b64) == b"not json"
    assert by_index[2].error_type == "RoutingError" and "arrived on partition 1" in by_index[2].reason
    assert base64.b64decode(by_index[2].original_b64) == run["misrouted"]
    assert "bundle truncated" in by_index[None].reason and by_index[None].partition == 2
    assert all(d.source_topic == s.frames_topic for d in dlq)
    # every frame counted once, the good frame of the mixed bundle processed, not lost
    stats = run["stats"]
    assert stats["dead_letters"] == 3
    assert stats["frames"] == run["sent"].frames + 4  # the fleet's, the mixed bundle's 3, the truncated bundle
    assert stats["vehicles"] == 6 + 1


def test_the_same_fleet_as_plain_frames_afterwards_changes_nothing(run, settings, fleet_dir, test_db):
    from simulator.replay import replay

    s = settings
    again = replay([fleet_dir], s.kafka_bootstrap, s.frames_topic, frame_s=2.0, speedup=0.0, progress=False)
    assert again.messages == again.frames
    _run_worker_until_consumed(s, run["total"] + again.messages, run["logs"] / "worker2.log")
    assert _db_passes(test_db) == run["rows"]

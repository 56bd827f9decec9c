"""Stage 2 through the real broker and database: impacts and passes (coverage) in, alerts out.

Records are produced straight onto ``segment.passes`` and ``segment.impacts`` (as stage 1
publishes them) for two segments: on one, most passes over a spot hit it (a pothole); on
the other, three vehicles hit a spot that nine passes drove over (a rough road's random
shocks). The worker's ``road_alerts`` must equal the offline stage 2
(``pipeline.offline.confirm_potholes``) on the same records, and a replay changes nothing.
The passes are consumed before the impacts are sent, so the stream sees the order the
offline run uses (a pass at its entry time, before the impacts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import db
from pipeline.demo import stop_workers, wait_until_consumed
from pipeline.offline import confirm_potholes
from pipeline.settings import Settings, settings_env
from pipeline.topics import ensure_topics
from roadnet import load_network
from schemas.records import PassImpact, SegmentPass

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)


def _pass(veh: str, seg: str, minutes: float) -> SegmentPass:
    t = T0 + timedelta(minutes=minutes, seconds=-5)
    return SegmentPass(vehicle=veh * 16, segment_id=seg, entry_time=t, exit_time=t + timedelta(seconds=10),
                       entry_offset_m=0.0, exit_offset_m=30.0, covered_m=30.0, mean_speed_kmh=36.0, n_samples=1000,
                       fs_hz=100.0, iri_m_per_km=3.0, roughness_rms_mps2=0.5, max_vertical_mps2=6.0,
                       n_harsh_events=0, confidence=1.0)  # fmt: skip


def _impact(veh: str, seg: str, minutes: float, offset: float) -> PassImpact:
    return PassImpact(vehicle=veh * 16, segment_id=seg, time=T0 + timedelta(minutes=minutes), offset_m=offset,
                      peak_mps2=6.0, polarity=-1, slowdown=1.0, n_lobes=3, n_peaks=3, speed_kmh=45.0, severity=9.0,
                      duration_s=0.2, double_hit_m=2.7, kind_score=0.75, fs_hz=100.0)  # fmt: skip


@pytest.fixture(scope="module")
def records():
    net = load_network()
    hole, rough = str(net.segment_id[10]), str(net.segment_id[11])
    passes, impacts = [], []
    for i, v in enumerate("abcd"):  # four of five passes hit the pothole
        passes.append(_pass(v, hole, i))
        impacts.append(_impact(v, hole, i, 12.0 + 0.3 * i))
    passes.append(_pass("e", hole, 5))
    for i, v in enumerate("fghijk"):  # six passes over the rough spot without an impact ...
        passes.append(_pass(v, rough, -30 + i))
    for i, v in enumerate("lmn"):  # ... before three that registered one
        passes.append(_pass(v, rough, i))
        impacts.append(_impact(v, rough, i, 20.0))
    return net, passes, impacts


@pytest.fixture(scope="module")
def settings(stack, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    dsn = db.create_database(stack.pg_dsn, "rs_it_s2")
    yield Settings(
        kafka_bootstrap=stack.kafka_bootstrap, pg_dsn=dsn, pseudonym_key="integration-test-pseudonym-key-0123456789",
        app_id=f"rs-s2-{tag}", frames_topic=f"it.{tag}.s2.frames", dlq_topic=f"it.{tag}.s2.dlq",
        passes_topic=f"it.{tag}.s2.passes", impacts_topic=f"it.{tag}.s2.impacts", alerts_topic=f"it.{tag}.s2.alerts",
        partitions=4, data_dir=tmp_path_factory.mktemp("s2worker"), stage2_coverage=True,
    )  # fmt: skip
    db.drop_database(stack.pg_dsn, dsn)


def _produce(bootstrap: str, topic: str, recs) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for r in recs:
        producer.send(topic, key=r.segment_id.encode(), value=r.model_dump_json().encode())
    producer.flush(timeout=30)
    producer.close()


def _alerts(dsn: str) -> list[tuple]:
    with db.connect(dsn) as conn:
        return conn.execute(
            "SELECT segment_id, position_m, n_vehicles, n_impacts, confidence, revision FROM road_alerts "
            "ORDER BY segment_id, position_m"
        ).fetchall()


def test_stream_stage2_equals_offline_and_replay_changes_nothing(settings, records, tmp_path):
    net, passes, impacts = records
    s = settings
    ensure_topics(s)
    log = tmp_path / "worker.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env={**os.environ, **settings_env(s)},
                                cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            _produce(s.kafka_bootstrap, s.passes_topic, passes)
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.passes_topic, total=len(passes), proc=proc,
                                timeout_s=180, progress=False)  # fmt: skip
            _produce(s.kafka_bootstrap, s.impacts_topic, impacts)
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.impacts_topic, total=len(impacts), proc=proc,
                                timeout_s=120, progress=False)  # fmt: skip
            first = _alerts(s.pg_dsn.get_secret_value())
            # replay of both topics: nothing new (passes and impacts are deduplicated)
            _produce(s.kafka_bootstrap, s.passes_topic, passes)
            _produce(s.kafka_bootstrap, s.impacts_topic, impacts)
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.passes_topic, total=2 * len(passes), proc=proc,
                                timeout_s=120, progress=False)  # fmt: skip
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.impacts_topic, total=2 * len(impacts), proc=proc,
                                timeout_s=120, progress=False)  # fmt: skip
            again = _alerts(s.pg_dsn.get_secret_value())
        except Exception:
            print(log.read_text()[-5000:])
            raise
        finally:
            stop_workers(proc)
    offline = confirm_potholes(impacts, net, passes)
    want = sorted((a.segment_id, a.position_m, a.n_vehicles, a.n_impacts, a.confidence, a.revision) for a in offline)
    assert [a.segment_id for a in offline] == [passes[0].segment_id]  # the pothole, not the rough spot
    assert [tuple(r) for r in first] == want
    assert again == first

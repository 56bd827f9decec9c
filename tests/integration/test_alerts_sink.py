"""pipeline.alerts_sink: idempotent upsert of stage 2's alerts, on both database tiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline import db
from pipeline.alerts_sink import write_alerts
from pipeline.stage2 import handle_impacts
from schemas.records import PassImpact, RoadAlert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
SEG = "-100100951#0"


def _impacts(vehicles: str, offset: float = 42.0) -> list[PassImpact]:
    return [
        PassImpact(vehicle=v * 8, segment_id=SEG, time=T0 + timedelta(minutes=i), offset_m=offset + 0.3 * i,
                   peak_mps2=6.0, polarity=-1, slowdown=1.0, n_lobes=3, n_peaks=3, speed_kmh=45.0,
                   severity=9.0, duration_s=0.2, double_hit_m=2.7, kind_score=0.75, fs_hz=100.0)
        for i, v in enumerate(vehicles)
    ]  # fmt: skip


def _rows(conn):
    return conn.execute(
        "SELECT alert_id, segment_id, kind, position_m, confidence, n_vehicles, n_impacts, revision, "
        "first_seen, last_seen, lat_deg, payload->>'alert_id' FROM road_alerts ORDER BY alert_id"
    ).fetchall()


@pytest.mark.parametrize("name", ("plain", "timescale"))
def test_upsert_is_idempotent_and_keeps_latest_revision(name, db_conns, fresh_schema):
    conn = db_conns[name]
    with fresh_schema(conn):
        db.migrate(conn)
        st, first = handle_impacts(None, _impacts("abc"), T0)
        (a0,) = first
        assert write_alerts(conn, first) == 1
        assert write_alerts(conn, first) == 0  # replay: nothing changes
        st, upd = handle_impacts(st, _impacts("abcd")[3:], T0)
        (a1,) = upd
        assert a1.alert_id == a0.alert_id and a1.revision == 1
        assert write_alerts(conn, upd) == 1
        assert write_alerts(conn, first) == 0  # an older revision never wins
        (row,) = _rows(conn)
        assert row[0] == a0.alert_id and row[1] == SEG and row[2] == "pothole"
        assert row[5] == 4 and row[6] == 4 and row[7] == 1 and row[11] == a0.alert_id
        assert row[8] == T0 and row[9] == T0 + timedelta(minutes=3)
        # one batch with two revisions of one alert: the highest wins
        other = RoadAlert(**{**a1.model_dump(), "alert_id": "pothole-batch00000000", "revision": 2})
        older = RoadAlert(**{**other.model_dump(), "revision": 1, "n_vehicles": 99})
        assert write_alerts(conn, [older, other]) == 1
        got = conn.execute("SELECT n_vehicles, revision FROM road_alerts WHERE alert_id = %s", (other.alert_id,)).fetchone()
        assert got == (4, 2)
        assert write_alerts(conn, []) == 0


@pytest.mark.parametrize("name", ("plain", "timescale"))
def test_potholes_are_read_most_probable_first_with_their_road(name, db_conns, fresh_schema, capsys):
    from pipeline import queries, report
    from roadnet import load_network

    net = load_network()
    i = net.index_of(SEG)

    def alert(key: str, confidence: float, n_vehicles: int, segment_id: str = SEG) -> RoadAlert:
        return RoadAlert(alert_id=f"pothole-{key:0<16}", segment_id=segment_id, position_m=12.5, lat_deg=48.81,
                         lon_deg=1.95, confidence=confidence, n_vehicles=n_vehicles, n_impacts=2 * n_vehicles,
                         first_seen=T0, last_seen=T0 + timedelta(days=1))  # fmt: skip

    conn = db_conns[name]
    with fresh_schema(conn):
        db.migrate(conn)
        db.load_network(conn, net)
        write_alerts(conn, [alert("a", 0.99, 5), alert("b", 0.99, 7), alert("c", 0.4, 3),
                            alert("d", 0.8, 4, segment_id="unknown-segment-xyz")])  # fmt: skip
        got = queries.potholes(conn)
        # the most probable first; at equal confidence, more vehicles
        assert [a.alert_id[8] for a in got] == ["b", "a", "d", "c"]
        b = got[0]
        road = net.ref[i] or f"OSM way {net.osm_way_id[i]}"
        assert b.label == f"{road} ({net.highway[i]}) at 48.81000, 1.95000"
        assert (b.segment_id, b.position_m, b.n_vehicles, b.n_impacts, b.confidence) == (SEG, 12.5, 7, 14, 0.99)
        assert b.last_seen - b.first_seen == timedelta(days=1)
        assert got[2].label == "segment unknown-segment-xyz at 48.81000, 1.95000"  # not in the network
        assert [a.alert_id[8] for a in queries.potholes(conn, min_confidence=0.9)] == ["b", "a"]
        assert len(queries.potholes(conn, limit=1)) == 1
        with pytest.raises(ValueError, match="min_confidence"):
            queries.potholes(conn, min_confidence=1.5)
        with pytest.raises(ValueError, match="limit"):
            queries.potholes(conn, limit=0)
        # what `roadsense top` and the demo print
        report.print_top(conn, limit=2)
        out = capsys.readouterr().out
        holes = out.split("Confirmed potholes")[1].split("Harshest spots")[0].splitlines()[2:]
        assert [line.split()[:4] for line in holes if line.strip()] == [["0.99", "7", "14", "12.5"], ["0.99", "5", "10", "12.5"]]
        assert b.label in holes[0]

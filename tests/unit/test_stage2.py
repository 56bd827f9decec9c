"""pipeline.stage2: pothole confirmation across vehicles per segment, alerts, TTL (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.stage2 import SegmentState, Stage2Params, alert_id_of, handle_impacts
from schemas.records import PassImpact

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
SEG = "-100100951#0"

def imp(vehicle: str, offset: float, *, minutes: float = 0.0, polarity: int = -1, slowdown: float = 1.0,
        fs: float = 100.0, seg: str = SEG, peak: float = 6.0) -> PassImpact:  # fmt: skip
    return PassImpact(
        vehicle=vehicle * 8, segment_id=seg, time=T0 + timedelta(minutes=minutes), offset_m=offset,
        peak_mps2=peak, polarity=polarity, slowdown=slowdown, n_lobes=3, n_peaks=3, speed_kmh=45.0,
        severity=9.0, duration_s=0.2, double_hit_m=2.7, kind_score=0.75, fs_hz=fs,
    )  # fmt: skip

class TestHandleImpacts:
    def test_empty(self):
        st, alerts = handle_impacts(None, [], T0, segment_id=SEG)
        assert alerts == [] and st.impacts == [] and st.segment_id == SEG

    def test_needs_distinct_vehicles(self):
        st, alerts = handle_impacts(None, [imp("a", 20.0, minutes=k) for k in range(5)], T0)
        assert alerts == []  # five hits, one vehicle
        st, alerts = handle_impacts(st, [imp("b", 21.0, minutes=6)], T0)
        assert alerts == []
        st, alerts = handle_impacts(st, [imp("c", 19.5, minutes=7)], T0)
        (a,) = alerts
        assert a.kind == "pothole" and a.n_vehicles == 3 and a.revision == 0
        assert a.position_m == pytest.approx(20.0, abs=1.0)
        assert a.first_seen == T0 and a.last_seen == T0 + timedelta(minutes=7)

    def test_alert_once_then_updates(self):
        batch = [imp(v, 50.0 + i * 0.5, minutes=i) for i, v in enumerate("abc")]
        st, first = handle_impacts(None, batch, T0)
        st, again = handle_impacts(st, batch, T0)  # replay: nothing new
        assert len(first) == 1 and again == []
        st, upd = handle_impacts(st, [imp("d", 50.7, minutes=9)], T0)
        (u,) = upd
        assert u.alert_id == first[0].alert_id and u.revision == 1 and u.n_vehicles == 4

    def test_alert_id_deterministic(self):
        batch = [imp(v, 50.0, minutes=i) for i, v in enumerate("abc")]
        _, a1 = handle_impacts(None, batch, T0)
        _, a2 = handle_impacts(None, list(reversed(batch)), T0)
        assert a1[0].alert_id == a2[0].alert_id == alert_id_of(SEG, a1[0].position_m)

    def test_bumps_never_potholes(self):
        # up-first and slowed-for: a speed bump or a rail crossing
        batch = [imp(v, 80.0, minutes=i, polarity=1, slowdown=0.4) for i, v in enumerate("abcdef")]
        _, alerts = handle_impacts(None, batch, T0)
        assert alerts == []

    def test_pothole_before_a_junction(self):
        # drivers brake for the junction, not for the hole: down-first hits still confirm it
        batch = [imp(v, 8.0, minutes=i, slowdown=0.4) for i, v in enumerate("abcd")]
        _, alerts = handle_impacts(None, batch, T0)
        assert len(alerts) == 1

    def test_weak_repeated_shocks_are_not_potholes(self):
        batch = [imp(v, 8.0, minutes=i, peak=1.5) for i, v in enumerate("abcdef")]
        _, alerts = handle_impacts(None, batch, T0)
        assert alerts == []

    def test_two_places_two_alerts(self):
        batch = [imp(v, p, minutes=i + p / 100) for i, v in enumerate("abc") for p in (10.0, 90.0)]
        _, alerts = handle_impacts(None, batch, T0)
        assert sorted(round(a.position_m) for a in alerts) == [10, 90]
        assert len({a.alert_id for a in alerts}) == 2

    def test_low_rate_impacts_are_not_evidence(self):
        _, hi = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abcd")], T0)
        assert hi and hi[0].confidence > 0.8
        st, lo = handle_impacts(None, [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("abcdef")], T0)
        assert lo == [] and st.impacts == []
        # mixed with 100 Hz impacts they neither count nor lower the cluster's rate
        mixed = [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("defg")]
        st, alerts = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abc")] + mixed, T0)
        (a,) = alerts
        assert a.n_vehicles == 3 and a.n_impacts == 3
        assert {r[2][0] for r in st.impacts} == {"a", "b", "c"}
        # the threshold is a parameter: 10 Hz evidence counts when allowed (lower confidence)
        _, lo = handle_impacts(None, [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("abcd")], T0,
                               params=Stage2Params(min_fs_hz=5.0))  # fmt: skip
        assert lo and lo[0].confidence < hi[0].confidence

    def test_ttl_expires_impacts_and_alerts(self):
        st, alerts = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abc")], T0)
        assert alerts and st.alerts
        later = T0 + timedelta(days=91)
        st, alerts = handle_impacts(st, [], later)
        assert st.impacts == [] and st.alerts == {} and alerts == []
        # old evidence alone no longer confirms
        st, alerts = handle_impacts(st, [imp("x", 30.0, minutes=0)], later)
        assert alerts == [] and st.impacts == []

    def test_state_bounded_and_serialisable(self):
        p = Stage2Params(max_impacts=50)
        st, _ = handle_impacts(None, [imp(f"v{i:03d}", 10.0 + i % 7, minutes=i) for i in range(200)], T0, params=p)
        assert len(st.impacts) == 50
        back = SegmentState.from_bytes(st.to_bytes())
        assert back == st and len(st.to_bytes()) < 20_000

    def test_errors(self):
        with pytest.raises(ValueError, match="segments"):
            handle_impacts(None, [imp("a", 1.0), imp("b", 1.0, seg="other")], T0)
        with pytest.raises(ValueError, match="timezone"):
            handle_impacts(None, [imp("a", 1.0)], datetime(2024, 1, 1))
        with pytest.raises(ValueError, match="version"):
            SegmentState.from_bytes(b'{"v": 99}')

    def test_lat_lon_from_network(self):
        from roadnet import load_network

        net = load_network()
        sid = str(net.segment_id[10])
        batch = [imp(v, 5.0, minutes=i, seg=sid) for i, v in enumerate("abc")]
        _, (a,) = handle_impacts(None, batch, T0, net=net)
        assert 48.0 < a.lat_deg < 49.5 and 1.5 < a.lon_deg < 2.5

class TestAxlePairs:
    """A pothole in the wheel path is hit by the front and then the rear axle."""

    def test_single_hits_do_not_confirm_pairs_do(self):
        single = [imp(v, 40.0, minutes=i) for i, v in enumerate("abcd")]

        pairs = Stage2Params(min_axle_pair_fraction=0.5)
        _, default = handle_impacts(None, [p.model_copy(update={"double_hit_m": None}) for p in single], T0)
        assert default  # the condition is off by default
        st, alerts = handle_impacts(None, [p.model_copy(update={"double_hit_m": None}) for p in single], T0,
                                    params=pairs)  # fmt: skip
        assert alerts == []  # four vehicles, down-first, strong: but nobody's rear axle hit it
        rear = [imp(v, 42.7, minutes=i).model_copy(update={"time": T0 + timedelta(minutes=i, seconds=0.2),
                                                           "double_hit_m": None})
                for i, v in enumerate("ab")]  # fmt: skip
        st, alerts = handle_impacts(st, rear, T0, params=pairs)
        (a,) = alerts
        assert a.n_vehicles == 4 and a.position_m == pytest.approx(40.0, abs=2.0)
        # the rear-axle hit of another day does not pair with the front-axle hit
        late = [imp(v, 42.7, minutes=600 + i).model_copy(update={"double_hit_m": None}) for i, v in enumerate("cd")]
        st2, none = handle_impacts(None, [p.model_copy(update={"double_hit_m": None}) for p in single] + late, T0,
                                   params=pairs)  # fmt: skip
        assert none == []

    def test_version_1_state_is_read(self):
        import orjson

        st, _ = handle_impacts(None, [imp(v, 40.0, minutes=i) for i, v in enumerate("ab")], T0)
        raw = orjson.loads(st.to_bytes())
        v1 = orjson.dumps({**raw, "v": 1, "impacts": [r[:10] for r in raw["impacts"]]})
        old = SegmentState.from_bytes(v1)
        assert all(len(r) == 11 and r[-1] is None for r in old.impacts)
        pairs = Stage2Params(min_axle_pair_fraction=0.5)
        st3, alerts = handle_impacts(old, [imp("c", 40.2, minutes=5)], T0, params=pairs)
        assert alerts == []  # 1 of 3 vehicles seen with both axles (the old rows lost theirs)
        st3, alerts = handle_impacts(st3, [imp("d", 40.1, minutes=6)], T0, params=pairs)
        assert alerts and alerts[0].n_vehicles == 4  # 2 of 4

"""pipeline.stage2: pothole confirmation across vehicles per segment, alerts, TTL (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from agents.potholes import Impact
from pipeline.stage2 import SegmentState, Stage2Params, alert_id_of, handle_impacts, handle_records, impact_record
from schemas.records import PassImpact, SegmentPass

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
SEG = "-100100951#0"

def imp(vehicle: str, offset: float, *, minutes: float = 0.0, polarity: int = -1, slowdown: float = 1.0,
        fs: float = 100.0, seg: str = SEG, peak: float = 6.0, severity: float = 9.0,
        speed_dip: float | None = None, rise: float | None = None) -> PassImpact:  # fmt: skip
    return PassImpact(
        vehicle=vehicle * 8, segment_id=seg, time=T0 + timedelta(minutes=minutes), offset_m=offset,
        peak_mps2=peak, polarity=polarity, slowdown=slowdown, n_lobes=3, n_peaks=3, speed_kmh=45.0,
        severity=severity, duration_s=0.2, double_hit_m=2.7, kind_score=0.75, fs_hz=fs, speed_dip=speed_dip,
        rise_mps2=rise,
    )  # fmt: skip

def row_form(state_bytes: bytes) -> dict:
    """A state's JSON (version 7: columns) with its impacts and passes as rows, vehicles
    as indices: the layout of versions 3 to 6, to build older states from."""
    raw = orjson.loads(state_bytes)
    raw["impacts"] = [list(r) for r in zip(*raw["impacts"])]
    raw["passes"] = [list(r) for r in zip(*raw["passes"])]
    return raw


def axles(vehicle: str, offset: float, *, minutes: float = 0.0, rear_polarity: int = -1, **kw) -> list[PassImpact]:
    """One pass over a spot: the front wheel's impact, then the rear wheel's one wheelbase
    (2.7 m) and 0.2 s later, each detected on its own."""
    front = imp(vehicle, offset, minutes=minutes, **kw)
    rear = imp(vehicle, offset + 2.7, minutes=minutes + 0.2 / 60, **{**kw, "polarity": rear_polarity})
    return [front, rear]


class TestHandleImpacts:
    def test_empty(self):
        st, alerts = handle_impacts(None, [], T0, segment_id=SEG)
        assert alerts == [] and st.impact_rows() == [] and st.segment_id == SEG

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
        # a dip of the random profile that every vehicle feels: weak, and not far above its road
        batch = [x for i, v in enumerate("abcdef") for x in axles(v, 8.0, minutes=i, peak=1.5, severity=4.0)]
        _, alerts = handle_impacts(None, batch, T0)
        assert alerts == []

    def test_shallow_hole_on_a_smooth_road(self):
        # weak in m/s^2 but far above a smooth road's scale, both wheels drop into it: a pothole
        batch = [x for i, v in enumerate("abcd") for x in axles(v, 8.0, minutes=i, peak=1.5, severity=8.0)]
        _, alerts = handle_impacts(None, batch, T0)
        assert len(alerts) == 1 and alerts[0].n_vehicles == 4
        # not below weak_min_peak_mps2, nor with the rule off, nor up-first
        weaker = [x for i, v in enumerate("abcd") for x in axles(v, 8.0, minutes=i, peak=0.8, severity=8.0)]
        assert handle_impacts(None, weaker, T0)[1] == []
        assert handle_impacts(None, batch, T0, params=Stage2Params(weak_min_severity=0.0))[1] == []
        bumps = [x for i, v in enumerate("abcd")
                 for x in axles(v, 8.0, minutes=i, peak=1.5, severity=8.0, polarity=1, rear_polarity=1)]  # fmt: skip
        assert handle_impacts(None, bumps, T0)[1] == []

    def test_a_weak_cluster_needs_both_wheels_dropping_into_it(self):
        # single shocks, or a second shock up-first (a rail crossing: the next rail's ridge),
        # do not make a weak cluster a pothole; with the condition off they did
        single = [imp(v, 8.0, minutes=i, peak=1.5, severity=8.0) for i, v in enumerate("abcd")]
        assert handle_impacts(None, single, T0)[1] == []
        assert len(handle_impacts(None, single, T0, params=Stage2Params(weak_min_drop_pairs=0))[1]) == 1
        rail = [x for i, v in enumerate("abcd") for x in axles(v, 8.0, minutes=i, peak=1.5, severity=8.0, rear_polarity=1)]
        assert handle_impacts(None, rail, T0)[1] == []
        # the pair must be one wheelbase apart, in one pass
        far = [imp(v, 8.0 + k * 6.0, minutes=i + k * 0.2 / 60, peak=1.5, severity=8.0)
               for i, v in enumerate("abcd") for k in (0, 1)]  # fmt: skip
        assert handle_impacts(None, far, T0)[1] == []
        later = [x for i, v in enumerate("abcd") for x in (imp(v, 8.0, minutes=i, peak=1.5, severity=8.0),
                                                          imp(v, 10.7, minutes=i + 1.0, peak=1.5, severity=8.0))]  # fmt: skip
        assert handle_impacts(None, later, T0)[1] == []
        # one vehicle whose two wheels dropped in is enough (the default, 1)
        one = single + axles("e", 8.0, minutes=5, peak=1.5, severity=8.0)
        assert len(handle_impacts(None, one, T0)[1]) == 1
        # strong clusters (median peak >= min_peak_mps2) need no such pair
        strong = [imp(v, 8.0, minutes=i) for i, v in enumerate("abcd")]
        assert len(handle_impacts(None, strong, T0)[1]) == 1

    def test_severities_of_version_3_states_do_not_count(self):
        # before version 4, severity came from the band-passed signal (another scale)
        batch = [x for i, v in enumerate("abc") for x in axles(v, 8.0, minutes=i, peak=1.5, severity=8.0)]
        st, alerts = handle_impacts(None, batch, T0)
        assert len(alerts) == 1
        raw = row_form(SegmentState.from_bytes(st.to_bytes()).to_bytes())
        raw["v"], raw["alerts"] = 3, {}
        old = SegmentState.from_bytes(orjson.dumps(raw))
        assert [r[8] for r in old.impact_rows()] == [0.0] * 6
        _, alerts = handle_impacts(old, axles("d", 8.0, minutes=5, peak=1.5, severity=8.0), T0)
        assert alerts == []  # 2 of 8 impacts far above the road: the median is not
        assert SegmentState.from_bytes(st.to_bytes()) == st  # version 4 keeps them

    def test_two_places_two_alerts(self):
        batch = [imp(v, p, minutes=i + p / 100) for i, v in enumerate("abc") for p in (10.0, 90.0)]
        _, alerts = handle_impacts(None, batch, T0)
        assert sorted(round(a.position_m) for a in alerts) == [10, 90]
        assert len({a.alert_id for a in alerts}) == 2

    def test_low_rate_impacts_are_not_evidence(self):
        _, hi = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abcd")], T0)
        assert hi and hi[0].confidence > 0.8
        st, lo = handle_impacts(None, [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("abcdef")], T0)
        assert lo == [] and st.impact_rows() == []
        # mixed with 100 Hz impacts they neither count nor lower the cluster's rate
        mixed = [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("defg")]
        st, alerts = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abc")] + mixed, T0)
        (a,) = alerts
        assert a.n_vehicles == 3 and a.n_impacts == 3
        assert {r[2][0] for r in st.impact_rows()} == {"a", "b", "c"}
        # the threshold is a parameter: 10 Hz evidence counts when allowed (lower confidence)
        _, lo = handle_impacts(None, [imp(v, 30.0, minutes=i, fs=10.0) for i, v in enumerate("abcd")], T0,
                               params=Stage2Params(min_fs_hz=5.0))  # fmt: skip
        assert lo and lo[0].confidence < hi[0].confidence

    def test_ttl_expires_impacts_and_alerts(self):
        st, alerts = handle_impacts(None, [imp(v, 30.0, minutes=i) for i, v in enumerate("abc")], T0)
        assert alerts and st.alerts
        later = T0 + timedelta(days=91)
        st, alerts = handle_impacts(st, [], later)
        assert st.impact_rows() == [] and st.alerts == {} and alerts == []
        # old evidence alone no longer confirms
        st, alerts = handle_impacts(st, [imp("x", 30.0, minutes=0)], later)
        assert alerts == [] and st.impact_rows() == []

    def test_state_bounded_and_serialisable(self):
        p = Stage2Params(max_impacts=50)
        st, _ = handle_impacts(None, [imp(f"v{i:03d}", 10.0 + i % 7, minutes=i) for i in range(200)], T0, params=p)
        assert len(st.impact_rows()) == 50
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
        singles = [p.model_copy(update={"double_hit_m": None}) for p in single]
        _, without = handle_impacts(None, singles, T0, params=Stage2Params(min_axle_pair_fraction=0.0))
        assert without  # without the condition these confirm
        _, default = handle_impacts(None, singles, T0)
        assert default == []  # the default asks for axle pairs (0.3 of the vehicles)
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

    def test_half_down_first_with_axle_pairs_is_a_pothole(self):
        # on a rough road the first lobe's polarity is close to random: half down-first
        # confirms (default 0.5) when the vehicles' both axles hit the place
        mixed = [imp(v, 40.0, minutes=i, polarity=-1 if i % 2 else 1) for i, v in enumerate("abcd")]
        _, alerts = handle_impacts(None, mixed, T0)
        assert len(alerts) == 1
        _, alerts = handle_impacts(None, mixed, T0, params=Stage2Params(min_pothole_fraction=0.6))
        assert alerts == []

    def test_version_1_state_is_read(self):
        st, _ = handle_impacts(None, [imp(v, 40.0, minutes=i) for i, v in enumerate("ab")], T0)
        v1 = orjson.dumps({"v": 1, "segment_id": SEG, "impacts": [r[:10] for r in st.impact_rows()], "alerts": {}})
        old = SegmentState.from_bytes(v1)
        assert all(len(r) == 13 and r[10] is None and r[11] is None and r[12] is None for r in old.impact_rows())
        pairs = Stage2Params(min_axle_pair_fraction=0.5)
        st3, alerts = handle_impacts(old, [imp("c", 40.2, minutes=5)], T0, params=pairs)
        assert alerts == []  # 1 of 3 vehicles seen with both axles (the old rows lost theirs)
        st3, alerts = handle_impacts(st3, [imp("d", 40.1, minutes=6)], T0, params=pairs)
        assert alerts and alerts[0].n_vehicles == 4  # 2 of 4


def pas(vehicle: str, *, minutes: float = 0.0, lo: float = 0.0, hi: float = 100.0, fs: float = 100.0,
        seg: str = SEG) -> SegmentPass:  # fmt: skip
    """A pass of ``vehicle`` from offset ``lo`` to ``hi`` starting at T0 + minutes (10 s long)."""
    t0 = T0 + timedelta(minutes=minutes, seconds=-5)
    return SegmentPass(
        vehicle=vehicle * 8, segment_id=seg, entry_time=t0, exit_time=t0 + timedelta(seconds=10),
        entry_offset_m=lo, exit_offset_m=hi, covered_m=abs(hi - lo), mean_speed_kmh=36.0, n_samples=1000,
        fs_hz=fs, iri_m_per_km=3.0, roughness_rms_mps2=0.5, max_vertical_mps2=6.0, n_harsh_events=0,
        confidence=1.0,
    )  # fmt: skip


class TestCoverage:
    """Stage 2 counts the passes over a cluster: a pothole is hit by most of them."""

    def test_low_hit_rate_is_not_a_pothole(self):
        hits = [imp(v, 40.0, minutes=i) for i, v in enumerate("abc")]
        own = [pas(v, minutes=i) for i, v in enumerate("abc")]
        misses = [pas(v, minutes=10 + i) for i, v in enumerate("defghij")]
        _, alerts = handle_records(None, hits, own + misses, T0)
        assert alerts == []  # 3 of 10 passes over it
        st, alerts = handle_records(None, hits, own + misses[:2], T0)
        (a,) = alerts  # 3 of 5
        assert a.n_vehicles == 3
        # passes that did not drive over the cluster's position do not count
        away = [pas(v, minutes=10 + i, lo=50.0, hi=100.0) for i, v in enumerate("defghij")]
        _, alerts = handle_records(None, hits, own + away, T0)
        assert len(alerts) == 1
        # the direction of driving does not matter (entry offset > exit offset)
        back = [pas(v, minutes=10 + i, lo=90.0, hi=10.0) for i, v in enumerate("defghij")]
        _, alerts = handle_records(None, hits, own + back, T0)
        assert alerts == []

    def test_order_of_passes_and_impacts_does_not_matter(self):
        hits = [imp(v, 40.0, minutes=i) for i, v in enumerate("abcd")]
        own = [pas(v, minutes=i) for i, v in enumerate("abcd")]
        extra = [pas(v, minutes=10 + i) for i, v in enumerate("ef")]
        st1, a1 = handle_records(None, hits, own + extra, T0)
        st2 = None
        for p in extra + own:
            st2, none = handle_records(st2, [], [p], T0)
            assert none == []  # a pass alone never confirms
        st2, a2 = handle_records(st2, hits, [], T0)
        st3, a3 = handle_records(None, hits, [], T0)  # impacts first: each counts as its pass
        st3, more = handle_records(st3, [], own + extra, T0)
        assert a1 == a2 == a3 and len(a1) == 1 and more == []
        assert sorted(st1.pass_rows()) == sorted(st2.pass_rows()) == sorted(st3.pass_rows())

    def test_two_impacts_of_one_pass_are_one_hit(self):
        # front and rear axle: one pass, two impacts
        hits = [imp(v, 40.0, minutes=i) for i, v in enumerate("abc")]
        rear = [h.model_copy(update={"time": h.time + timedelta(seconds=0.2), "offset_m": 42.7}) for h in hits]
        misses = [pas(v, minutes=10 + i) for i, v in enumerate("defg")]
        _, alerts = handle_records(None, hits + rear, [pas(v, minutes=i) for i, v in enumerate("abc")] + misses, T0)
        assert alerts == []  # 3 passes of 7, not 6 of 10
        _, alerts = handle_records(None, hits + rear, misses[:1], T0)  # without the own passes: still 3 of 4
        assert len(alerts) == 1

    def test_replayed_and_low_rate_passes(self):
        p = pas("a")
        st, _ = handle_records(None, [], [p, p], T0)
        st, _ = handle_records(st, [], [p], T0)
        assert len(st.pass_rows()) == 1
        st, _ = handle_records(st, [], [pas("b", fs=10.0)], T0)
        assert len(st.pass_rows()) == 1  # 10 Hz passes could not have registered a pothole
        with pytest.raises(ValueError, match="segments"):
            handle_records(st, [], [pas("c", seg="other")], T0)

    def test_ttl_and_cap(self):
        p = Stage2Params(max_passes=20)
        st, _ = handle_records(None, [], [pas(f"v{i:03d}", minutes=i) for i in range(50)], T0, params=p)
        assert len(st.pass_rows()) == 20 and st.coverage_from == st.pass_rows()[0][0]
        # impacts older than the kept coverage do not count for the rate
        old = [imp(v, 40.0, minutes=i) for i, v in enumerate("abc")]
        new = [imp(v, 40.0, minutes=45 + i) for i, v in enumerate("xyz")]
        _, alerts = handle_records(st, old + new, [], T0 + timedelta(hours=1), params=p)
        assert alerts == []  # x, y, z: 3 of the 20 kept passes (+ their own)
        st, _ = handle_records(st, [], [], T0 + timedelta(days=91))
        assert st.pass_rows() == [] and st.coverage_from is None

    def test_state_round_trip_and_size(self):
        st, _ = handle_records(None, [imp(v, 40.0, minutes=i) for i, v in enumerate("abc")],
                               [pas(f"v{i % 300:03d}", minutes=i) for i in range(2000)], T0)  # fmt: skip
        raw = st.to_bytes()
        back = SegmentState.from_bytes(raw)
        assert back == st and len(back.pass_rows()) == 2000
        assert raw[:4] == b"RS2Z" and len(raw) < 40_000  # pseudonyms once each, zstd
        small, _ = handle_records(None, [], [pas("a")], T0)
        assert small.to_bytes()[:1] == b"{" and SegmentState.from_bytes(small.to_bytes()) == small

    def test_version_2_state_is_read(self):
        st, _ = handle_impacts(None, [imp(v, 40.0, minutes=i) for i, v in enumerate("ab")], T0)
        v2 = orjson.dumps({"v": 2, "segment_id": SEG, "impacts": st.impact_rows(), "alerts": {}})
        old = SegmentState.from_bytes(v2)
        assert old.impact_rows() == [[*r[:8], 0.0, *r[9:]] for r in st.impact_rows()]  # severity: another scale
        assert old.pass_rows() == [] and old.coverage_from is None
        # its impacts count as their own passes; new passes are added
        st3, alerts = handle_records(old, [imp("c", 40.2, minutes=5)], [pas("c", minutes=5), pas("d", minutes=6)], T0)
        assert len(alerts) == 1 and len(st3.pass_rows()) == 2  # a, b, c hit, of a, b, c, d


class TestSpeedDip:
    def test_slowed_for_spot_needs_the_slowed_share(self):
        # 2 of 3 down-first (0.67): a pothole at a steady speed; where the vehicles slowed down
        # for the spot and sped up after it (a hump, a rail), the slowed-for 0.8 applies
        pols = [-1, -1, 1]
        def at(dip):
            return [imp(v, 40.0 + 0.3 * i, minutes=i, polarity=p, speed_dip=dip)
                    for i, (v, p) in enumerate(zip("abc", pols))]  # fmt: skip

        steady, dipped = at(1.0), at(1.2)
        assert len(handle_impacts(None, steady, T0)[1]) == 1
        assert handle_impacts(None, dipped, T0)[1] == []
        assert len(handle_impacts(None, dipped, T0, params=Stage2Params(dip_slowed_fraction=0.0))[1]) == 1

    def test_version_4_state_reads_dips_as_unknown(self):
        rows = [imp(v, 40.0 + 0.3 * i, minutes=i, polarity=p, speed_dip=1.2)
                for i, (v, p) in enumerate(zip("ab", [-1, 1]))]  # fmt: skip
        st, _ = handle_impacts(None, rows, T0)
        assert [r[11] for r in st.impact_rows()] == [1.2, 1.2]
        assert SegmentState.from_bytes(st.to_bytes()).impact_rows() == st.impact_rows()
        raw = row_form(st.to_bytes())
        v4 = orjson.dumps({**raw, "v": 4, "impacts": [r[:11] for r in raw["impacts"]]})
        old = SegmentState.from_bytes(v4)
        assert all(len(r) == 13 and r[11] is None and r[12] is None for r in old.impact_rows())
        # the old rows' dips are unknown: the third vehicle's steady pass decides alone
        _, alerts = handle_impacts(old, [imp("c", 40.6, minutes=3, speed_dip=1.0)], T0)
        assert len(alerts) == 1

    def test_impact_record_carries_the_dip(self):
        i = Impact(10.0, 5.0, -1, 1.0, 2, 30.0, 9.0, t_s=1.7e9, fs_hz=100.0, speed_dip=1.23456)
        assert impact_record(i, vehicle="v" * 8, segment_id=SEG).speed_dip == 1.2346
        j = Impact(10.0, 5.0, -1, 1.0, 2, 30.0, 9.0, t_s=1.7e9, fs_hz=100.0)
        assert impact_record(j, vehicle="v" * 8, segment_id=SEG).speed_dip is None


class TestRise:
    def test_impact_record_carries_the_rise(self):
        i = Impact(10.0, 5.0, -1, 1.0, 2, 30.0, 9.0, t_s=1.7e9, fs_hz=100.0, rise_mps2=2.123456)
        assert impact_record(i, vehicle="v" * 8, segment_id=SEG).rise_mps2 == 2.1235
        j = Impact(10.0, 5.0, -1, 1.0, 2, 30.0, 9.0, t_s=1.7e9, fs_hz=100.0)
        assert impact_record(j, vehicle="v" * 8, segment_id=SEG).rise_mps2 is None

    def test_risen_cluster_is_no_pothole(self):
        # three vehicles, both axles dropping in at a steady speed: a hole, unless the body
        # was lifted just before each drop (a hump or a cushion driven slowly)
        risen = [r for v, k in zip("abc", range(3)) for r in axles(v, 40.0, minutes=k, rise=3.6)]  # 0.6 x peak
        level = [r for v, k in zip("abc", range(3)) for r in axles(v, 40.0, minutes=k, rise=0.6)]
        assert handle_impacts(None, risen, T0)[1] == []
        assert len(handle_impacts(None, level, T0)[1]) == 1
        assert len(handle_impacts(None, risen, T0, params=Stage2Params(max_rise_ratio=0.0))[1]) == 1

    def test_state_keeps_the_rise_and_reads_version_5(self):
        st, _ = handle_impacts(None, axles("a", 40.0, rise=3.6) + axles("b", 40.0, minutes=1, rise=3.6), T0)
        assert [r[12] for r in st.impact_rows()] == [3.6] * 4
        assert SegmentState.from_bytes(st.to_bytes()).impact_rows() == st.impact_rows()
        raw = row_form(st.to_bytes())
        v5 = orjson.dumps({**raw, "v": 5, "impacts": [r[:12] for r in raw["impacts"]]})
        old = SegmentState.from_bytes(v5)
        assert all(len(r) == 13 and r[12] is None for r in old.impact_rows())
        # the old rows' rises are unknown: the third vehicle's level drops decide alone
        _, alerts = handle_impacts(old, axles("c", 40.0, minutes=2, rise=0.6), T0)
        assert len(alerts) == 1


class TestBusySegment:
    """A segment's state fills up (thousands of passes and impacts): a call reads the
    clusters its new impacts joined, in bounded windows, from their newest impacts."""

    @staticmethod
    def _sizes(monkeypatch) -> list[list[float]]:
        import pipeline.stage2 as s2

        seen: list[list[float]] = []
        real = s2.cluster_impacts

        def spy(impacts, *a, **k):
            seen.append([i.offset_m for i in impacts])
            return real(impacts, *a, **k)

        monkeypatch.setattr(s2, "cluster_impacts", spy)
        return seen

    def test_a_pothole_among_chained_shocks_is_found_where_it_is(self, monkeypatch):
        # random shocks every 2.5 m along the whole segment (one per vehicle, either
        # polarity) chain it into one single-linkage cluster; read whole, its median
        # would be mid-segment and 6 of 86 vehicles' axle pairs no pothole
        shocks = [imp(f"s{k:03d}", 2.5 * k, minutes=k, polarity=(-1) ** k, peak=3.5, severity=5.0)
                  .model_copy(update={"double_hit_m": None}) for k in range(80)]  # fmt: skip
        hole = [x for k in range(6) for x in axles(f"h{k:03d}", 120.0, minutes=100 + k)]
        sizes = self._sizes(monkeypatch)
        st, found = None, []
        for r in shocks + hole:
            st, alerts = handle_impacts(st, [r], T0)
            found += alerts
        assert {a.alert_id for a in found} == {found[0].alert_id}
        assert abs(found[-1].position_m - 121.35) < 3.0
        assert max(max(s) - min(s) for s in sizes) <= Stage2Params().max_cluster_span_m

    def test_a_call_reads_at_most_max_cluster_impacts(self, monkeypatch):
        cap = Stage2Params().max_cluster_impacts
        rows = [x for k in range(200) for x in axles(f"v{k:03d}", 40.0, minutes=k)]
        sizes = self._sizes(monkeypatch)
        st, alerts = handle_impacts(None, rows, T0)
        assert [len(s) for s in sizes] == [cap] and alerts[0].n_impacts == cap
        st, alerts = handle_impacts(st, axles("w000", 40.0, minutes=300), T0)
        assert [len(s) for s in sizes] == [cap, cap] and len(st.impact_rows()) == 402  # the state keeps them all
        assert alerts == []  # its newest 300 impacts say what they said: no new revision

    def test_only_the_clusters_new_impacts_joined_are_read(self, monkeypatch):
        st, alerts = handle_impacts(None, [x for k, v in enumerate("abc") for x in axles(v, 40.0, minutes=k)], T0)
        assert len(alerts) == 1
        sizes = self._sizes(monkeypatch)
        st, alerts = handle_impacts(st, axles("d", 150.0, minutes=5), T0)
        assert alerts == [] and sizes == []  # one vehicle at 150 m: nothing to confirm, 40 m not read
        st, alerts = handle_impacts(st, axles("e", 40.5, minutes=6), T0)
        assert len(sizes) == 1 and min(sizes[0]) >= 40.0 and len(alerts) == 1

    def test_a_capped_cluster_counts_the_passes_of_its_impacts_period(self):
        # 400 passes over the spot before the hole formed, then 160 vehicles hit it: over
        # all passes the rate is 160 / 560, over the period of its 300 newest impacts ~1
        early = [pas(f"p{k:03d}", minutes=k, lo=0.0, hi=100.0) for k in range(400)]

        def run(params: Stage2Params) -> list:
            st, out = None, []
            for q in early:
                st, _ = handle_records(st, [], [q], q.exit_time, params=params)
            for k in range(160):
                q = pas(f"h{k:03d}", minutes=400 + k)
                st, _ = handle_records(st, [], [q], q.exit_time, params=params)
                st, alerts = handle_records(st, axles(f"h{k:03d}", 40.0, minutes=400 + k), [], q.exit_time,
                                            params=params)  # fmt: skip
                out += alerts
            return out

        assert run(Stage2Params(max_cluster_impacts=10_000)) == []
        found = run(Stage2Params())
        assert found and found[0].n_impacts == Stage2Params().max_cluster_impacts

    def test_version_6_state_is_read(self):
        st, _ = handle_records(None, axles("a", 40.0) + axles("b", 41.0, minutes=1),
                               [pas("a"), pas("b", minutes=1)], T0)  # fmt: skip
        v6 = orjson.dumps({**row_form(st.to_bytes()), "v": 6})
        assert SegmentState.from_bytes(v6) == st
        assert orjson.loads(st.to_bytes())["v"] == 7


class TestColumns:
    """The state's columns are shared between a state and the next one: never modified in place."""

    def test_a_call_leaves_the_state_it_was_given_as_it_was(self):
        st, _ = handle_records(None, [x for i, v in enumerate("abc") for x in axles(v, 30.0, minutes=i)],
                               [pas(v, minutes=i) for i, v in enumerate("abc")], T0)  # fmt: skip
        before = st.to_bytes()
        for k in range(30):  # inserted before, among and after the rows; replays; the caps and the TTL cut
            new, _ = handle_records(st, axles("d", 31.0, minutes=k - 10) + axles("a", 30.0, minutes=0),
                                    [pas("e", minutes=k - 10), pas("a", minutes=0)], T0,
                                    params=Stage2Params(max_impacts=4, max_passes=2, ttl_days=0.01))  # fmt: skip
            assert st.to_bytes() == before
            assert new.to_bytes() != before

    def test_rows_come_back_sorted_by_time_then_vehicle(self):
        # version-6 rows kept by time only: read, they are in the arrays' order
        same_t = [imp(v, 10.0 + i, minutes=3) for i, v in enumerate("cab")]
        st, _ = handle_impacts(None, same_t + [imp("z", 5.0, minutes=1)], T0)
        rows = st.impact_rows()
        assert [(r[0], r[2]) for r in rows] == sorted((r[0], r[2]) for r in rows)
        raw = row_form(st.to_bytes())
        raw["v"], raw["impacts"] = 6, list(reversed(raw["impacts"]))
        assert SegmentState.from_bytes(orjson.dumps(raw)).impact_rows() == rows

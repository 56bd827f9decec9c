"""simulator: determinism, physics sanity, ground truth, GPS noise, files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadnet import load_network, to_metric, to_wgs84
from schemas.tracefile import frames_of, infer_rate_hz, read_traces
from simulator import ODBL_ATTRIBUTION, read_truth, simulate_fleet, write_fleet
from simulator.drivers import draw_driver
from simulator.events import HARSH_THRESHOLD_MPS2
from simulator.geometry import route_geometry
from simulator.gps import gps_fixes
from simulator.kinematics import (
    accel_envelope,
    brake_envelope,
    plan_stops,
    sample_motion,
    target_speed_sq,
)
from simulator.routes import TripPlanner


@pytest.fixture(scope="module")
def net():
    return load_network()


@pytest.fixture(scope="module")
def fleet(net):
    return simulate_fleet(net, n_vehicles=6, seed=11, harsh_brakes_per_km=0.5)


def sample_segments(fleet, vid):
    """Network segment of every sample of a vehicle, from the truth passes."""
    tr, p = fleet.traces[vid], fleet.truth.passes_of(vid)
    k = np.clip(np.searchsorted(p["entry_t_s"], tr.t_s, side="right") - 1, 0, len(p["segment"]) - 1)
    return p["segment"][k]


class TestDeterminism:
    def test_same_seed_same_arrays(self, net, fleet):
        again = simulate_fleet(net, n_vehicles=6, seed=11, harsh_brakes_per_km=0.5)
        assert list(again.traces) == list(fleet.traces)
        for vid, tr in fleet.traces.items():
            for name in ("t_s", "speed_kmh", "accel_vert_mps2", "fix_lat_deg"):
                np.testing.assert_array_equal(getattr(tr, name), getattr(again.traces[vid], name))
        np.testing.assert_array_equal(again.truth.iri_m_per_km, fleet.truth.iri_m_per_km)

    def test_other_seed_differs(self, net, fleet):
        other = simulate_fleet(net, n_vehicles=6, seed=12)
        assert set(other.traces).isdisjoint(fleet.traces)
        assert not np.array_equal(other.truth.iri_m_per_km, fleet.truth.iri_m_per_km)

    def test_vehicle_independent_of_fleet_size(self, net, fleet):
        small = simulate_fleet(net, n_vehicles=2, seed=11, harsh_brakes_per_km=0.5)
        vid = next(iter(small.traces))
        np.testing.assert_array_equal(small.traces[vid].accel_long_mps2, fleet.traces[vid].accel_long_mps2)

    def test_same_seed_same_bytes(self, net, tmp_path):
        a = simulate_fleet(net, n_vehicles=2, seed=5, trip_km=(1.0, 1.5))
        b = simulate_fleet(net, n_vehicles=2, seed=5, trip_km=(1.0, 1.5))
        for fmt in ("csv", "parquet"):
            pa_ = write_fleet(a, tmp_path / f"a_{fmt}", format=fmt)
            pb = write_fleet(b, tmp_path / f"b_{fmt}", format=fmt)
            assert pa_.read_bytes() == pb.read_bytes()
            names = ("truth_passes.csv", "truth_events.csv", "manifest.json")
            for name in names:
                assert (pa_.parent / name).read_bytes() == (pb.parent / name).read_bytes()


class TestIds:
    def test_vin_like(self, fleet):
        for vid in fleet.traces:
            assert len(vid) == 17 and vid.startswith("VF1") and vid.isalnum()
            assert not set("IOQ") & set(vid[3:])


class TestPhysics:
    def test_speed_within_limit(self, net, fleet):
        for vid, tr in fleet.traces.items():
            limit = net.maxspeed_kmh[sample_segments(fleet, vid)]
            assert (tr.speed_kmh <= 1.15 * limit + 2.0).all(), vid
            assert (tr.speed_kmh >= 0).all()
            assert tr.speed_kmh[0] < 5 and tr.speed_kmh[-1] < 5

    def test_longitudinal_accel_bounded_except_events(self, fleet):
        ev = fleet.truth.events
        for vid, tr in fleet.traces.items():
            near = np.zeros(len(tr), bool)
            for t0, d in zip(ev["start_t_s"][ev["vehicle_id"] == vid], ev["duration_s"][ev["vehicle_id"] == vid]):
                near |= (tr.t_s > t0 - 3.0) & (tr.t_s < t0 + d + 3.0)
            ax = tr.accel_long_mps2[~near]
            assert ax.max() < 2.4 + 0.4, vid
            assert ax.min() > -(HARSH_THRESHOLD_MPS2 + 0.4), vid

    def test_harsh_events_in_signal(self, fleet):
        ev = fleet.truth.events
        assert len(ev["type"]) >= 3
        assert set(ev["type"]) == {"harsh_brake"}
        assert (ev["peak_mps2"] < -HARSH_THRESHOLD_MPS2).all()
        for vid, t_peak, peak in zip(ev["vehicle_id"], ev["peak_t_s"], ev["peak_mps2"]):
            tr = fleet.traces[vid]
            i = np.searchsorted(tr.t_s, t_peak)
            assert tr.accel_long_mps2[i - 5 : i + 5].min() < -HARSH_THRESHOLD_MPS2

    def test_vertical_mean_is_gravity(self, fleet):
        for tr in fleet.traces.values():
            assert tr.accel_vert_mps2.mean() == pytest.approx(9.81, abs=0.1)

    def test_vertical_grows_with_roughness(self, net, fleet):
        # Per-sample RMS around g, moving samples only, against the true IRI of the segment.
        for vid, tr in fleet.traces.items():
            seg = sample_segments(fleet, vid)
            iri = fleet.truth.iri_m_per_km[seg]
            moving = tr.speed_kmh > 30
            dyn = (tr.accel_vert_mps2 - 9.81)[moving]
            lo, hi = iri[moving] < np.quantile(iri[moving], 0.3), iri[moving] > np.quantile(iri[moving], 0.7)
            if lo.sum() > 500 and hi.sum() > 500:
                assert dyn[hi].std() > dyn[lo].std()

    def test_speed_is_derivative_of_distance(self, net, fleet):
        # The GPS track length matches the integral of the speed (within GPS noise).
        for tr in fleet.traces.values():
            dist = np.trapezoid(tr.speed_kmh / 3.6, tr.t_s)
            x, y = to_metric(tr.fix_lon_deg, tr.fix_lat_deg)
            assert dist > 500
            straight = np.hypot(np.diff(x), np.diff(y)).sum()
            assert straight < 2.5 * dist  # noise adds length, never removes much


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """A one-way counter-clockwise ring road, radius 100 m, in 8 segments."""
    cx, cy = to_metric(2.0, 48.8)
    r = 100.0
    feats = []
    for k in range(8):
        a = np.radians(np.linspace(45 * k, 45 * (k + 1), 12))
        lon, lat = to_wgs84(cx + r * np.cos(a), cy + r * np.sin(a))
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": np.c_[lon, lat].tolist()},
                "properties": {"segment_id": f"ring{k}", "from_node": f"n{k}",
                               "to_node": f"n{(k + 1) % 8}", "highway": "tertiary",
                               "maxspeed_kmh": 50},
            }
        )  # fmt: skip
    path = tmp_path_factory.mktemp("ring") / "ring.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return load_network(path), r


class TestLateral:
    def test_lateral_is_v2_kappa(self, ring):
        net, r = ring
        fl = simulate_fleet(net, n_vehicles=3, seed=2, trip_km=(0.4, 0.5), stop_prob=0.0,
                            harsh_brakes_per_km=0.0, gps_dropouts_per_h=0.0)  # fmt: skip
        for vid, tr in fl.traces.items():
            v = tr.speed_kmh / 3.6
            moving = v > 5.0
            assert moving.sum() > 1000
            kappa = tr.accel_lat_mps2[moving] / v[moving] ** 2
            assert np.median(kappa) == pytest.approx(1.0 / r, rel=0.1)  # left turn: positive
            assert (v <= np.sqrt(3.4 * r) + 0.5).all()  # curvature limit


class TestTruth:
    def test_passes_form_a_connected_path(self, net, fleet):
        p = fleet.truth.passes
        for vid in fleet.traces:
            q = fleet.truth.passes_of(vid)
            segs = q["segment"]
            same_trip = q["trip"][1:] == q["trip"][:-1]
            assert (net.to_node[segs[:-1]][same_trip] == net.from_node[segs[1:]][same_trip]).all()
            assert (q["exit_t_s"] >= q["entry_t_s"]).all()
            np.testing.assert_allclose(q["exit_t_s"][:-1][same_trip], q["entry_t_s"][1:][same_trip])
            assert (q["exit_offset_m"] <= net.length_m[segs] + 1e-6).all()
            tr = fleet.traces[vid]
            assert q["entry_t_s"][0] == tr.t_s[0] and q["exit_t_s"][-1] == tr.t_s[-1]
        assert (p["segment_id"] == net.segment_id[p["segment"]]).all()

    def test_roughness_for_every_segment(self, net, fleet):
        # True ASTM IRI of every driven segment (ISO 8608 classes A-E: ~1 to ~50 m/km),
        # NaN for segments no vehicle drove; ISO class and Gd(n0) for all.
        iri = fleet.truth.iri_m_per_km
        assert iri.shape == (len(net),)
        driven = np.unique(fleet.truth.passes["segment"])
        assert np.isfinite(iri[driven]).all() and (iri[driven] > 0.5).all() and (iri[driven] < 80).all()
        assert np.isnan(np.delete(iri, driven)).all()
        assert fleet.truth.iso_class.shape == (len(net),) and set(fleet.truth.iso_class) <= set("ABCDE")

    def test_trips_are_km_long(self, net, fleet):
        for vid in fleet.traces:
            q = fleet.truth.passes_of(vid)
            km = (q["exit_offset_m"] - q["entry_offset_m"]).sum() / 1000
            assert 1.0 < km < 8.0


class TestRates:
    @pytest.mark.parametrize("fs", [5.0, 10.0, 50.0, 200.0])
    def test_sample_rates(self, net, fs):
        fl = simulate_fleet(net, n_vehicles=1, seed=3, fs_hz=fs, trip_km=(1.0, 1.5))
        tr = next(iter(fl.traces.values()))
        assert infer_rate_hz(tr.t_s) == fs
        assert np.isin(tr.fix_t_s, tr.t_s).all()

    def test_bad_rate(self, net):
        with pytest.raises(ValueError, match="fs_hz"):
            simulate_fleet(net, n_vehicles=1, seed=0, fs_hz=1000.0)


class TestGps:
    @pytest.mark.parametrize("sigma", [2.0, 8.0])
    def test_noise_sigma(self, net, sigma):
        rng = np.random.default_rng(0)
        planner = TripPlanner(net)
        geom = route_geometry(net, planner.plan(rng, trip_m=5000.0))
        driver = draw_driver(rng)
        u = target_speed_sq(net, geom, driver, rng)
        stops = plan_stops(geom, rng, stop_prob=0.0)
        u = accel_envelope(brake_envelope(u, geom.s_m, driver.decel_mps2), geom.s_m, driver.accel_mps2)
        motion = sample_motion(geom, u, stops, fs_hz=10.0)
        fx = gps_fixes(net, geom, motion, rng, rate_hz=5.0, sigma_m=sigma)
        x, y = to_metric(fx.lon_deg, fx.lat_deg)
        err = np.r_[x - fx.true_x_m, y - fx.true_y_m]
        assert len(err) > 2000
        assert err.std() == pytest.approx(sigma, rel=0.08)
        assert abs(err.mean()) < 0.1 * sigma
        slow = motion.v_mps[fx.index] <= 2.0
        assert np.isnan(fx.heading_deg[slow]).all() and not np.isnan(fx.heading_deg[~slow]).any()

    def test_correlated_noise(self, net):
        rng = np.random.default_rng(1)
        planner = TripPlanner(net)
        geom = route_geometry(net, planner.plan(rng, trip_m=6000.0))
        driver = draw_driver(rng)
        u = accel_envelope(brake_envelope(target_speed_sq(net, geom, driver, rng), geom.s_m, 2.5), geom.s_m, 1.5)
        motion = sample_motion(geom, u, plan_stops(geom, rng, stop_prob=0.0), fs_hz=10.0)
        fx = gps_fixes(net, geom, motion, rng, rate_hz=5.0, sigma_m=4.0, correlation_s=2.0)
        x, _ = to_metric(fx.lon_deg, fx.lat_deg)
        ex = x - fx.true_x_m
        assert np.corrcoef(ex[1:], ex[:-1])[0, 1] == pytest.approx(np.exp(-0.2 / 2.0), abs=0.05)
        assert ex.std() == pytest.approx(4.0, rel=0.25)  # few independent samples

    def test_rate_and_dropouts(self, net, fleet):
        for tr in fleet.traces.values():
            gaps = np.diff(tr.fix_t_s)
            assert np.median(gaps) == pytest.approx(1.0, abs=0.02)
        fl = simulate_fleet(net, n_vehicles=2, seed=4, gps_rate_hz=0.2, gps_dropouts_per_h=0.0)
        for tr in fl.traces.values():
            assert np.diff(tr.fix_t_s).max() == pytest.approx(5.0, abs=0.02)


class TestFiles:
    def test_write_fleet(self, fleet, tmp_path):
        path = write_fleet(fleet, tmp_path, format="parquet")
        back = read_traces(tmp_path)
        assert sorted(back) == sorted(fleet.traces)
        for vid, tr in fleet.traces.items():
            np.testing.assert_array_equal(back[vid].accel_lat_mps2, tr.accel_lat_mps2)
            assert back[vid].powertrain == tr.powertrain
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        assert manifest["seed"] == 11 and manifest["network"]["attribution"] == ODBL_ATTRIBUTION
        assert manifest["files"]["traces"] == path.name
        truth = read_truth(tmp_path)
        assert len(truth["passes"]["segment_id"]) == len(fleet.truth.passes["segment_id"])
        assert truth["passes"]["entry_time"][0].endswith("Z")
        assert len(truth["segments"]["iri_m_per_km"]) == len(fleet.truth.iri_m_per_km)

    def test_several_trips_end_frames(self, net):
        fl = simulate_fleet(net, n_vehicles=1, seed=8, trips_per_vehicle=2, trip_km=(1.0, 1.5))
        vid, tr = next(iter(fl.traces.items()))
        frames = frames_of(tr, vid, frame_s=2.0)
        assert sum(f.trip_end for f in frames) == 2 and frames[-1].trip_end
        assert set(fl.truth.passes["trip"]) == {0, 1}

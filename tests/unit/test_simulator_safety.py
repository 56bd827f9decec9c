"""Safety ground truth of the simulator (issue 6): event kinematics, hotspots, confounders."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate_fleet
from simulator.grade import draw_terrain
from simulator.hotspots import EVENT_TYPES, SafetyScenario, choose_hotspots, junction_nodes, roundabouts
from simulator.mounting import apply_mounting, rotation_matrix


@pytest.fixture(scope="module")
def scenario(plaisir_net):
    hs = choose_hotspots(plaisir_net, seed=4, n_pilot_trips=150, fixed_at_s=1.8e9)
    # background rates raised so that a small fleet shows every type
    bg = {"harsh_brake": 0.4, "harsh_accel": 0.4, "swerve": 0.3}
    return SafetyScenario(hotspots=hs, background_per_km=bg, corner_per_turn=0.3)


@pytest.fixture(scope="module")
def fleet(plaisir_net, scenario):
    return simulate_fleet(plaisir_net, n_vehicles=6, seed=4, fs_hz=50.0, safety=scenario)


class TestChooseHotspots:
    def test_kinds_and_separation(self, plaisir_net, scenario):
        hs = scenario.hotspots
        kinds = [h.kind for h in hs]
        assert kinds.count("roundabout") == 2 and kinds.count("school_zone") == 3
        assert kinds.count("junction") == 5
        xy = np.array([(h.x_m, h.y_m) for h in hs])
        d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        assert d[~np.eye(len(hs), dtype=bool)].min() >= 400.0
        jn = junction_nodes(plaisir_net)
        assert all(jn[h.nodes[0]] for h in hs if h.kind == "junction")

    def test_fixed(self, scenario):
        fixed = [h for h in scenario.hotspots if h.fixed_at_s is not None]
        assert len(fixed) == 3
        h = fixed[0]
        assert h.rate_at(h.fixed_at_s - 1) == h.per_pass and h.rate_at(h.fixed_at_s) == h.per_pass * h.fix_factor

    def test_deterministic(self, plaisir_net):
        a = choose_hotspots(plaisir_net, seed=9, n_pilot_trips=50)
        b = choose_hotspots(plaisir_net, seed=9, n_pilot_trips=50)
        assert a == b

    def test_roundabouts(self, plaisir_net):
        rings = roundabouts(plaisir_net)
        assert len(rings) > 10 and all(len(r) >= 3 for r in rings)


class TestSafetyFleet:
    def test_all_types_realistic(self, fleet):
        e = fleet.truth.events
        assert set(e["type"]) == set(EVENT_TYPES)
        clear = e["clear"]
        assert clear.mean() > 0.9
        d = e["duration_s"][clear]
        assert d.min() >= 0.3 and d.max() <= 3.0
        peak = np.abs(e["peak_mps2"][clear])
        assert peak.max() < 9.0
        for t, lo in (("harsh_brake", 3.3), ("harsh_accel", 2.8), ("harsh_corner", 3.8), ("swerve", 3.3)):
            assert (np.abs(e["peak_mps2"][clear & (e["type"] == t)]) >= lo).all(), t
        assert (e["peak_mps2"][e["type"] == "harsh_brake"] < 0).all()

    def test_deterministic(self, plaisir_net, scenario, fleet):
        again = simulate_fleet(plaisir_net, n_vehicles=6, seed=4, fs_hz=50.0, safety=scenario)
        for k in ("start_t_s", "peak_mps2", "segment"):
            np.testing.assert_array_equal(again.truth.events[k], fleet.truth.events[k])
        vid = next(iter(fleet.traces))
        np.testing.assert_array_equal(again.traces[vid].accel_long_mps2, fleet.traces[vid].accel_long_mps2)

    def test_brake_in_signal_and_speed(self, fleet):
        e = fleet.truth.events
        for k in np.flatnonzero((e["type"] == "harsh_brake") & e["clear"])[:10]:
            tr = fleet.traces[e["vehicle_id"][k]]
            i = np.searchsorted(tr.t_s, e["start_t_s"][k])
            j = np.searchsorted(tr.t_s, e["start_t_s"][k] + e["duration_s"][k])
            assert tr.speed_kmh[j] < tr.speed_kmh[i] - 3.0  # the speed really drops
            assert tr.accel_long_mps2[i:j].mean() < -2.5

    def test_confounders_present(self, fleet):
        imp = fleet.truth.impacts
        assert {"pothole", "speed_bump"} <= set(imp["kind"])
        angles = np.array(list(fleet.truth.mounting_rad.values()))
        assert np.abs(angles).max() > np.radians(0.5)
        # a pothole at speed shows in the vertical axis
        k = int(np.flatnonzero((imp["kind"] == "pothole") & (imp["speed_kmh"] > 30))[0])
        tr = fleet.traces[imp["vehicle_id"][k]]
        i = np.searchsorted(tr.t_s, imp["t_s"][k])
        assert np.abs(tr.accel_vert_mps2[i : i + 10] - 9.81).max() > 2.0

    def test_ordinary_driving_stays_clear_of_thresholds(self, fleet):
        """Outside injected events, the driver's own accelerations stay below the harsh levels
        (the signals read here include grade, mounting, noise: only a loose bound)."""
        e = fleet.truth.events
        for vid, tr in fleet.traces.items():
            near = np.zeros(len(tr.t_s), bool)
            m = e["vehicle_id"] == vid
            for t0, d in zip(e["start_t_s"][m], e["duration_s"][m]):
                near |= (tr.t_s > t0 - 4) & (tr.t_s < t0 + d + 4)
            dv = np.gradient(tr.speed_kmh / 3.6, tr.t_s)
            assert np.abs(dv[~near & (tr.speed_kmh > 5)]).max() < 3.2, vid


class TestGradeAndMounting:
    def test_terrain_slopes(self):
        t = draw_terrain(np.random.default_rng(0))
        x, y = np.meshgrid(np.arange(0, 5000, 10.0), np.arange(0, 5000, 10.0))
        z = t.elevation_m(x, y)
        gx = np.abs(np.diff(z, axis=1)) / 10.0
        assert 0.01 < gx.max() < 0.10

    def test_rotation(self):
        r = rotation_matrix(np.radians([2.0, -3.0, 4.0]))
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        f = apply_mounting(np.array([[0.0], [0.0], [9.81]]), np.radians([0.0, 3.0, 0.0]))
        assert abs(f[0, 0]) == pytest.approx(9.81 * np.sin(np.radians(3.0)))

"""agents.harsh_events: thresholds, hysteresis, checks, compensation, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.harsh_events import DetectedEvent, HarshDetectorState, HarshParams, detect_harsh_events

G = 9.81


def drive(
    *, fs=50.0, duration_s=40.0, v0_kmh=50.0, long=(), lat=(), grade=0.0, pitch_deg=0.0, roll_deg=0.0,
    noise=0.05, seed=0, stand_s=2.0,
):  # fmt: skip
    """A trip: ``stand_s`` at rest, then driving at ``v0_kmh`` with longitudinal pulses
    ``(t0, dur, amp)`` and lateral shapes ``(t0, dur, amp, kind)`` (kind 'flat' or 'sine'),
    on a grade (rad) with a sensor pitched/rolled; returns (ax, ay, t, speed_kmh) as read."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration_s, 1.0 / fs)
    a = np.zeros_like(t)
    for t0, dur, amp in long:
        a[(t >= t0) & (t < t0 + dur)] += amp
    # stand, then pull away at 1.8 m/s² up to v0 (done by 10 s at 50 km/h)
    ramp = (t >= stand_s) & (t < stand_s + v0_kmh / 3.6 / 1.8)
    a = a + np.where(ramp, 1.8, 0.0)
    v = np.maximum(np.cumsum(a) / fs, 0.0)
    ay = np.zeros_like(t)
    for t0, dur, amp, kind in lat:
        m = (t >= t0) & (t < t0 + dur)
        ay[m] += amp * (np.sin(2 * np.pi * (t[m] - t0) / dur) if kind == "sine" else 1.0)
    ax_read = a + G * np.sin(grade) - G * np.sin(np.radians(pitch_deg)) + noise * rng.standard_normal(t.size)
    ay_read = ay + G * np.sin(np.radians(roll_deg)) + noise * rng.standard_normal(t.size)
    return ax_read, ay_read, 1.7e9 + t, np.round(v * 3.6, 2)


def detect(ax, ay, t, v=None, fs=50.0, **kw):
    ev, _ = detect_harsh_events(ax, ay, t, fs, speed_kmh=v, final=True, **kw)
    return ev


class TestDetectHarshEvents:
    def test_empty(self):
        ev, st = detect_harsh_events([], [], [], 50.0)
        assert ev == [] and isinstance(st, HarshDetectorState)
        ev, st = detect_harsh_events([], [], [], 50.0, state=st, final=True)
        assert ev == []

    def test_quiet_drive(self):
        ax, ay, t, v = drive()
        assert detect(ax, ay, t, v) == []

    def test_brake(self):
        ax, ay, t, v = drive(long=[(14.0, 1.5, -5.0)])
        (e,) = detect(ax, ay, t, v)
        assert isinstance(e, DetectedEvent)
        assert e.type == "harsh_brake"
        assert 14.0 < e.start_t_s - t[0] < 14.4
        assert 1.2 < e.duration_s < 1.9
        assert -5.6 < e.peak_mps2 < -4.6
        assert 45 < e.speed_kmh < 52
        assert not e.abs_engaged

    def test_accel(self):
        ax, ay, t, v = drive(v0_kmh=15.0, long=[(14.0, 1.5, 3.5)])
        assert [e.type for e in detect(ax, ay, t, v)] == ["harsh_accel"]

    def test_corner_and_swerve(self):
        ax, ay, t, v = drive(lat=[(12.0, 1.5, 4.5, "flat"), (22.0, 2.0, 5.0, "sine")])
        ev = detect(ax, ay, t, v)
        assert [e.type for e in ev] == ["harsh_corner", "swerve"]
        assert ev[0].peak_mps2 > 4.0
        assert 1.5 < ev[1].duration_s < 2.5

    def test_slowest_weakest_swerve_is_one_swerve(self):
        # the gentlest lane change the swerve definition admits (4 m/s², 2.5 s period)
        # stays ~0.54 s inside the release level between its lobes: one swerve, not two corners
        for amp in (4.0, -4.0):
            ax, ay, t, v = drive(lat=[(14.0, 2.5, amp, "sine")], v0_kmh=60.0)
            assert [e.type for e in detect(ax, ay, t, v)] == ["swerve"]

    def test_strong_swerve_at_low_speed_is_one_swerve(self):
        # 6.5 m/s² over 2.5 s at 25 km/h turns the car by ~43° each way, and back
        ax, ay, t, v = drive(lat=[(14.0, 2.5, 6.5, "sine")], v0_kmh=25.0)
        assert [e.type for e in detect(ax, ay, t, v)] == ["swerve"]

    def test_a_turn_then_a_longer_opposite_turn_is_two_corners(self):
        # opposite lobes back to back, but the car ends ~30° off its first heading: a bend
        # sequence (e.g. a roundabout's exit), not a lane change
        ax, ay, t, v = drive(lat=[(14.0, 0.8, 4.5, "flat"), (14.9, 2.5, -4.5, "flat")])
        assert [e.type for e in detect(ax, ay, t, v)] == ["harsh_corner", "harsh_corner"]

    def test_right_corner_is_negative(self):
        ax, ay, t, v = drive(lat=[(12.0, 1.5, -4.5, "flat")])
        (e,) = detect(ax, ay, t, v)
        assert e.type == "harsh_corner" and e.peak_mps2 < -4.0

    def test_below_trigger_or_too_short(self):
        # -2.7 m/s² for 2 s: firm but ordinary; -6 m/s² for 0.1 s: an impact
        ax, ay, t, v = drive(long=[(12.0, 2.0, -2.7)])
        assert detect(ax, ay, t, v) == []
        ax, ay, t, v = drive(long=[(12.0, 0.1, -6.0)])
        assert detect(ax, ay, t, v) == []

    def test_min_duration_boundary(self):
        ax, ay, t, v = drive(long=[(12.0, 0.6, -4.5)], noise=0.0)
        assert len(detect(ax, ay, t, v)) == 1
        p = HarshParams(min_duration_s=1.0)
        assert detect(ax, ay, t, v, params=p) == []

    def test_speed_check_rejects_artefact(self):
        # the accelerometer reads -4 m/s² for 1 s but the speed does not change
        ax, ay, t, v = drive()
        ax = ax.copy()
        ax[(t - t[0] > 14) & (t - t[0] < 15)] -= 4.0
        assert detect(ax, ay, t, v) == []
        # without a speed signal nothing can tell: it is counted
        assert [e.type for e in detect(ax, ay, t, None)] == ["harsh_brake"]

    def test_downhill_and_pitch_compensated(self):
        # an ordinary -2.4 m/s² stop on a 7 % downhill, sensor pitched 3°: reads ~ -3.6
        kw = dict(long=[(14.0, 3.0, -2.4)], grade=-0.07, pitch_deg=3.0)
        ax, ay, t, v = drive(**kw)
        assert ax[(t - t[0] > 15) & (t - t[0] < 16)].mean() < -3.3
        assert detect(ax, ay, t, v) == []
        # and a real harsh brake there keeps its true size
        ax, ay, t, v = drive(long=[(14.0, 1.5, -5.0)], grade=-0.07, pitch_deg=3.0)
        (e,) = detect(ax, ay, t, v)
        assert -5.6 < e.peak_mps2 < -4.5

    def test_roll_compensated(self):
        # an ordinary 3.0 m/s² corner read through a 4° roll (+0.68 m/s²)
        ax, ay, t, v = drive(lat=[(14.0, 3.0, 3.0, "flat")], roll_deg=4.0)
        assert detect(ax, ay, t, v) == []

    def test_abs(self):
        ax, ay, t, v = drive(long=[(14.0, 1.0, -2.8)])
        abs_on = (t - t[0] > 14.2) & (t - t[0] < 14.6)
        (e,) = detect(ax, ay, t, v, abs_engaged=abs_on)
        assert e.type == "harsh_brake" and e.abs_engaged

    def test_standing_lateral_is_not_a_corner(self):
        ax, ay, t, v = drive(v0_kmh=0.0)
        ay = ay + np.where((t - t[0] > 14) & (t - t[0] < 16), 5.0, 0.0)
        assert detect(ax, ay, t, np.zeros_like(v)) == []

    @pytest.mark.parametrize("fs", [10.0, 25.0, 100.0])
    def test_sample_rates(self, fs):
        ax, ay, t, v = drive(fs=fs, long=[(14.0, 1.5, -5.0)], lat=[(22.0, 1.5, 4.5, "flat")])
        assert [e.type for e in detect(ax, ay, t, v, fs=fs)] == ["harsh_brake", "harsh_corner"]

    def test_read_only_input(self):
        arrays = drive(long=[(14.0, 1.5, -5.0)])
        for a in arrays:
            a.setflags(write=False)
        assert len(detect(*arrays)) == 1

    def test_state_not_modified(self):
        ax, ay, t, v = drive(long=[(14.0, 1.5, -5.0)])
        _, st = detect_harsh_events(ax[:500], ay[:500], t[:500], 50.0, speed_kmh=v[:500])
        before = json.dumps(st.to_dict())
        detect_harsh_events(ax[500:], ay[500:], t[500:], 50.0, speed_kmh=v[500:], state=st, final=True)
        assert json.dumps(st.to_dict()) == before

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_chunked_equals_one_pass(self, seed):
        rng = np.random.default_rng(seed)
        ax, ay, t, v = drive(
            duration_s=60.0, seed=seed,
            long=[(14.0, 1.5, -5.0), (34.0, 0.1, -7.0), (44.0, 1.2, 3.2)],
            lat=[(24.0, 1.5, 4.5, "flat"), (54.0, 2.0, 5.0, "sine")],
        )  # fmt: skip
        abs_on = (t - t[0] > 14.5) & (t - t[0] < 14.8)
        one = detect(ax, ay, t, v, abs_engaged=abs_on)
        assert len(one) == 4
        cuts = np.sort(rng.choice(np.arange(1, t.size), 40, replace=False))
        bounds = np.r_[0, cuts, t.size]
        st, many = None, []
        for a, b in zip(bounds[:-1], bounds[1:]):
            ev, st = detect_harsh_events(
                ax[a:b], ay[a:b], t[a:b], 50.0, speed_kmh=v[a:b], abs_engaged=abs_on[a:b],
                state=None if st is None else HarshDetectorState.from_dict(json.loads(json.dumps(st.to_dict()))),
                final=b == t.size,
            )  # fmt: skip
            many += ev

        def key(e):
            return e.type, e.start_t_s, e.duration_s, e.peak_mps2, e.speed_kmh, e.abs_engaged

        assert [key(e) for e in many] == [key(e) for e in one]

    def test_state_survives_orjson_without_speed(self):
        import orjson

        ax, ay, t, _ = drive(long=[(14.0, 1.5, -5.0)])
        one = detect(ax, ay, t, None)
        _, st = detect_harsh_events(ax[:730], ay[:730], t[:730], 50.0)  # cut inside the brake
        st = HarshDetectorState.from_dict(orjson.loads(orjson.dumps(st.to_dict())))
        ev, _ = detect_harsh_events(ax[730:], ay[730:], t[730:], 50.0, state=st, final=True)
        assert [(e.type, e.start_t_s) for e in ev] == [(e.type, e.start_t_s) for e in one]

    def test_exceptions(self):
        with pytest.raises(ValueError, match="equal length"):
            detect_harsh_events([0.0, 1.0], [0.0], [0.0, 1.0], 50.0)
        with pytest.raises(ValueError, match="fs=0"):
            detect_harsh_events([0.0], [0.0], [0.0], 0)
        with pytest.raises(ValueError, match="1-D"):
            detect_harsh_events(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), 50.0)
        with pytest.raises(TypeError, match="numeric"):
            detect_harsh_events(["a"], [0.0], [0.0], 50.0)
        with pytest.raises(ValueError, match="speed_kmh"):
            detect_harsh_events([0.0, 1.0], [0.0, 1.0], [0.0, 1.0], 50.0, speed_kmh=[1.0])
        with pytest.raises(ValueError, match="release"):
            HarshParams(brake_release_mps2=-4.0)


def with_impacts(ax, t, v_kmh, features, fs=50.0):
    """``ax`` plus the fore-aft shocks of the simulator's impact model (simulator.impacts)
    for features ``(kind, distance along the trip (m), height (m), length (m))``."""
    from simulator.impacts import Impacts, impact_signals

    v = v_kmh / 3.6
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) / fs)])
    k = len(features)
    imp = Impacts(
        segment=np.zeros(k, np.int64), offset_m=np.array([f[1] for f in features], float),
        kind=np.array([f[0] for f in features], object), height_m=np.array([f[2] for f in features], float),
        length_m=np.array([f[3] for f in features], float),
    )  # fmt: skip
    dax, daz, t_cross = impact_signals(t - t[0], s, v, imp.offset_m, imp, np.arange(k), fs)
    assert np.isfinite(t_cross).all() and np.abs(daz).max() > 1.0  # the features were crossed
    return ax + dax, t[0] + t_cross


class TestImpactsAreNotEvents:
    """A deep pothole crossed during a firm ordinary stop: its fore-aft hub shock leaks
    through the 2 Hz low-pass and pushed the stop beyond the braking trigger (the bench's
    impacts counted as events); the shock rule judges such runs on the speed alone."""

    def stop_with_pothole(self, decel=-2.8, dur=3.0, depth=0.09, at_s=16.5):
        # a firm ordinary stop (-2.8 m/s², under the -3.0 trigger) from 65 km/h, the
        # pothole crossed at ``at_s`` (the bench's cases: 9-10 cm holes at 58-82 km/h)
        ax, ay, t, v = drive(v0_kmh=65.0, duration_s=40.0, long=[(16.0, dur, decel)])
        i = int(at_s * 50)
        s_at = float(np.sum(v[:i] / 3.6) / 50.0)
        ax2, t_cross = with_impacts(ax, t, v, [("pothole", s_at, -depth, 0.8)])
        return ax, ax2, ay, t, v, t_cross

    @pytest.mark.parametrize("at_s", [16.3, 16.5, 17.0])
    def test_ordinary_stop_with_pothole_is_not_harsh(self, at_s):
        ax, ax2, ay, t, v, _ = self.stop_with_pothole(at_s=at_s)
        assert detect(ax, ay, t, v) == []  # the stop alone is ordinary
        # without the shock rule the pothole makes it a "harsh brake" (what the bench saw)
        off = HarshParams(shock_jerk_mps3=np.inf)
        assert [e.type for e in detect(ax2, ay, t, v, params=off)] == ["harsh_brake"]
        assert detect(ax2, ay, t, v) == []

    def test_true_harsh_brake_over_a_pothole_is_kept(self):
        _, ax2, ay, t, v, t_cross = self.stop_with_pothole(decel=-4.5, dur=1.2)
        (e,) = detect(ax2, ay, t, v)
        assert e.type == "harsh_brake" and e.start_t_s <= t_cross[0] <= e.start_t_s + e.duration_s

    def test_hump_at_low_speed_is_not_an_event(self):
        ax, ay, t, v = drive(v0_kmh=25.0, duration_s=30.0)
        i = int(20.0 * 50)
        s_at = float(np.sum(v[:i] / 3.6) / 50.0)
        ax2, _ = with_impacts(ax, t, v, [("speed_bump", s_at, 0.10, 3.0)])
        assert detect(ax2, ay, t, v) == []

    @pytest.mark.parametrize("fs", [25.0, 100.0])
    def test_pothole_at_other_rates(self, fs):
        ax, ay, t, v = drive(fs=fs, v0_kmh=65.0, duration_s=40.0, long=[(16.0, 3.0, -2.8)])
        i = int(16.5 * fs)
        s_at = float(np.sum(v[:i] / 3.6) / fs)
        ax2, _ = with_impacts(ax, t, v, [("pothole", s_at, -0.09, 0.8)], fs=fs)
        assert detect(ax2, ay, t, v, fs=fs) == []
